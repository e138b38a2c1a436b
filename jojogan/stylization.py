"""Stylizing with a fine-tuned generator: the paper's feature interpolation ``alpha``.

The original and the fine-tuned generator run in lockstep on the same latent; after every modulated
layer and on the RGB skip path their features are combined as ``(1 - alpha) * f_orig + alpha * f_ft``
(:func:`synthesize_blend`). ``alpha = 0`` is the original generator's image,
``alpha = 1`` the fine-tuned one's, exactly; ``alpha`` may also be given per style layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from jojogan.config import TRUNCATION, AlphaSpec, check_alpha
from jojogan.stylegan2.model import Generator, SynthesisLayer

__all__ = [
    "TRUNCATION",
    "alpha_coefficients",
    "sample_styled",
    "stylize_latents",
    "stylize_styles",
    "synthesize_blend",
]


def alpha_coefficients(alpha: AlphaSpec, num_styles: int) -> list[list[float]]:
    """Blend weights ``[num_styles][2]`` = ``(1 - alpha_k, alpha_k)`` for (original, fine-tuned).

    Raises:
        ValueError: ``alpha`` outside [0, 1] or a per-layer sequence not of length ``num_styles``.
    """
    alpha = check_alpha(alpha, num_styles)
    per_layer = [alpha] * num_styles if isinstance(alpha, float) else list(alpha)
    return [[1.0 - a, a] for a in per_layer]


def _check_pair(original: Generator, finetuned: Generator) -> None:
    if (original.size, original.style_dim, original.channels) != (
        finetuned.size,
        finetuned.style_dim,
        finetuned.channels,
    ):
        raise ValueError(
            f"the fine-tuned generator ({finetuned.size} px, style_dim {finetuned.style_dim}) does not match "
            f"the original ({original.size} px, style_dim {original.style_dim}); was the style made from "
            f"another base checkpoint?"
        )


@torch.no_grad()
def stylize_styles(
    original: Generator,
    finetuned: Generator,
    styles_original: Sequence[torch.Tensor],
    styles_finetuned: Sequence[torch.Tensor],
    alpha: AlphaSpec = 1.0,
    noise: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Blend the two generators with each one's own style vectors (no gradients).

    Args:
        original, finetuned: generators of one architecture.
        styles_original, styles_finetuned: ``num_styles`` tensors ``[batch, channels_k]`` each.
        alpha: a number in [0, 1] or one per style layer.
        noise: per-layer noise ``[batch or 1, 1, res, res]``; ``None`` uses each generator's stored noise.

    Returns:
        Images ``[batch, 3, size, size]`` (not clamped).
    """
    _check_pair(original, finetuned)
    coefficients = alpha_coefficients(alpha, original.num_styles)
    return synthesize_blend(
        [original, finetuned], [list(styles_original), list(styles_finetuned)], coefficients, noise
    )


def stylize_latents(
    original: Generator,
    finetuned: Generator,
    w_plus: torch.Tensor,
    alpha: AlphaSpec = 1.0,
    noise: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Stylize inverted faces: both generators read the same latent (no gradients).

    Args:
        original: the base generator.
        finetuned: the fine-tuned generator of a style.
        w_plus: ``[batch, n_latent, style_dim]`` (or w ``[batch, style_dim]``), e.g. from e4e.
        alpha: 0 = original image, 1 = fully stylized; one number or ``num_styles`` numbers.
        noise: per-layer noise ``[batch or 1, 1, res, res]``; ``None`` uses the stored noise buffers.

    Returns:
        Images ``[batch, 3, size, size]`` in about [-1, 1] (not clamped).
    """
    _check_pair(original, finetuned)
    with torch.no_grad():
        styles_original = original.styles(w_plus)
        styles_finetuned = finetuned.styles(w_plus)
    return stylize_styles(original, finetuned, styles_original, styles_finetuned, alpha, noise)


@torch.no_grad()
def sample_styled(
    original: Generator,
    finetuned: Generator,
    n: int,
    truncation: float = TRUNCATION,
    latent_avg: torch.Tensor | None = None,
    seed: int = 0,
    alpha: AlphaSpec = 1.0,
    batch: int = 8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random faces and their stylized versions.

    As in the original notebook, each generator maps the same ``z`` through its own mapping network and
    both are truncated towards the base model's mean latent; noise is the stored buffers, so a seed
    always gives the same images.

    Args:
        original, finetuned: base and fine-tuned generator.
        n: number of samples.
        truncation: in [0, 1]; 1 = no truncation.
        latent_avg: truncation centre ``[style_dim]`` (the checkpoint's ``latent_avg``); ``None`` uses
            ``original.mean_latent()``.
        seed: seeds ``z`` (drawn on the CPU, so results do not depend on the device).
        alpha: feature interpolation for the stylized images (see :func:`stylize_latents`).
        batch: samples per forward pass.

    Returns:
        ``(original_images, styled_images)``, each ``[n, 3, size, size]``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not 0.0 <= truncation <= 1.0:
        raise ValueError(f"truncation must be in [0, 1], got {truncation}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    _check_pair(original, finetuned)
    check_alpha(alpha, original.num_styles)
    device = original.input.input.device
    if latent_avg is None:
        latent_avg = original.mean_latent()
    center = latent_avg.reshape(-1).to(device)
    if center.shape != (original.style_dim,):
        raise ValueError(f"latent_avg must have {original.style_dim} entries, got {tuple(latent_avg.shape)}")
    z = torch.randn(n, original.style_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    originals, styled = [], []
    for start in range(0, n, batch):
        z_part = z[start : start + batch]
        w_original = center + truncation * (original.get_latent(z_part) - center)
        w_finetuned = center + truncation * (finetuned.get_latent(z_part) - center)
        styles_original = original.styles(w_original)
        originals.append(original.synthesis_from_styles(styles_original))
        styled.append(
            stylize_styles(original, finetuned, styles_original, finetuned.styles(w_finetuned), alpha)
        )
    return torch.cat(originals), torch.cat(styled)


def _blend_layer(
    layers: Sequence[SynthesisLayer],
    weights: Sequence[float],
    inputs: Sequence[torch.Tensor],
    styles: Sequence[Sequence[torch.Tensor]],
    extra: Sequence[torch.Tensor | None],
) -> torch.Tensor:
    """``sum_g weights[g] * layers[g](inputs[g], style_g, extra[g])``, skipping generators of weight 0."""
    out = None
    for layer, weight, x_in, gen_styles, gen_extra in zip(
        layers, weights, inputs, styles, extra, strict=True
    ):
        if weight == 0:
            continue
        term = layer.module(x_in, gen_styles[layer.style], gen_extra)
        if term.requires_grad:
            term = term if weight == 1 else term * weight
            out = term if out is None else out + term
            continue
        # no gradient: each term is its module's own new tensor, so scale and sum in place
        term = term if weight == 1 else term.mul_(weight)
        out = term if out is None else out.add_(term)
    if out is None:
        raise ValueError(f"blend coefficients of layer {layers[0].style} are all zero")
    return out


def synthesize_blend(
    generators: Sequence[Generator],
    styles: Sequence[Sequence[torch.Tensor]],
    coefficients: Sequence[Sequence[float]] | None = None,
    noise: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run generators of one architecture in lockstep, blending their features after every layer.

    At every modulated layer ``k`` each generator applies its own layer to the shared (blended) input,
    and the outputs are combined as ``sum_g coefficients[k][g] * f_g``; the RGB skip path is blended the
    same way at each to_rgb. With the original and the fine-tuned generator and coefficients
    ``(1 - alpha, alpha)`` this is JoJoGAN's feature interpolation. A generator whose coefficient at a
    layer is 0 is not evaluated there, so the endpoints are exact.

    Args:
        generators: generators with identical structure.
        styles: for each generator, its ``num_styles`` style vectors ``[batch, channels]``.
        coefficients: ``[num_styles][len(generators)]`` blend weights (default: all weight on the first).
        noise: per-layer noise as in :meth:`Generator.synthesis`; ``None`` gives each generator its own
            stored buffers.

    Returns:
        Images ``[batch, 3, size, size]``.
    """
    head = generators[0]
    for gen in generators:
        if gen.size != head.size or gen.channels != head.channels:
            raise ValueError("generators in a blend must share size and channel table")
    noises = [gen.check_synthesis_inputs(s, noise) for gen, s in zip(generators, styles, strict=True)]
    if coefficients is None:
        coefficients = [[1.0] + [0.0] * (len(generators) - 1)] * head.num_styles
    batch = styles[0][0].shape[0]
    inputs = [gen.input(batch) for gen in generators]  # each generator's own constant input
    skip = None
    for layers in zip(*(gen.synthesis_layers() for gen in generators), strict=True):
        k = layers[0].style
        if layers[0].is_rgb:
            skip = _blend_layer(layers, coefficients[k], inputs, styles, [skip] * len(layers))
        else:
            x = _blend_layer(layers, coefficients[k], inputs, styles, [n[layers[0].noise] for n in noises])
            inputs = [x] * len(layers)
    return skip
