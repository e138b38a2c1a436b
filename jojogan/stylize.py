"""Stylizing with a fine-tuned generator: the paper's feature interpolation ``alpha``.

The original and the fine-tuned generator run in lockstep on the same latent; after every modulated
layer and on the RGB skip path their features are combined as ``(1 - alpha) * f_orig + alpha * f_ft``
(:func:`jojogan.stylegan2.model.synthesize_blend`). ``alpha = 0`` is the original generator's image,
``alpha = 1`` the fine-tuned one's, exactly; ``alpha`` may also be given per style layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from jojogan.config import AlphaSpec, check_alpha
from jojogan.mixing import mean_latent_code
from jojogan.op.memory import cpu_memory_reuse
from jojogan.stylegan2.model import Generator, synthesize_blend

__all__ = ["alpha_coefficients", "sample_styled", "stylize_latents", "stylize_styles"]


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
    with cpu_memory_reuse(original.input.input.device):
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
    truncation: float = 0.7,
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
        latent_avg: truncation centre ``[style_dim]`` (the checkpoint's ``latent_avg``); ``None`` uses the
            mean of 10,000 mapped z of ``original``.
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
        latent_avg = mean_latent_code(original)
    center = latent_avg.reshape(-1).to(device)
    if center.shape != (original.style_dim,):
        raise ValueError(f"latent_avg must have {original.style_dim} entries, got {tuple(latent_avg.shape)}")
    z = torch.randn(n, original.style_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    originals, styled = [], []
    with cpu_memory_reuse(device):
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
