"""Style mixing over all modulated layers: the training codes of JoJoGAN.

Every modulated layer ``k`` of StyleGAN2 reads a style vector ``s_k = A_k(w_k)``, where ``A_k`` is the
layer's affine ``modulation`` and ``w_k`` the W+ entry it reads (:func:`style_layer_latent_index`). A
training code for a reference with code ``s`` and a fresh ``z`` is

    s_mix_k = s_k                                       where the keep-mask M_k is True,
    s_mix_k = (1 - m) * s_k + m * A_k(mapping(z))       elsewhere,

with ``m = mix_strength``. Because ``A_k`` is affine, the blend is computed on the per-layer latent
``w_k`` before the affine map, which gives the same ``s_mix`` with one affine per layer and, for the
presets, the very arithmetic of the original code, which mixed whole W+ entries:
``in_latent[:, swap] = (1 - m) * latents[:, swap] + m * mapping(z)``. The reference codes pass through
the generator's current affine layers, so, as in the original, every generator parameter (mapping and
modulations included) receives gradients.

A reference code is therefore held as *per-layer latents* ``[batch, num_styles, style_dim]``: entry ``k``
is the w that layer ``k`` reads. :func:`layer_latents` builds them from W+, and
:func:`reference_layer_latents` from an inversion, the mean code, or a blend of the two.

Presets are defined by resolution, not by layer index at 1024 px, so that a preset names the same spatial
scale on a model of any size (a 4×4 layer sees the image as 4×4 blocks at 256 px as at 1024 px). Every
layer has a *style resolution*: a convolution's is its output resolution; a to-RGB layer reads the W+ entry
of the next level's up-sampling convolution, so its style resolution is twice its own. Karras et al.'s
bands split style resolutions into coarse (4–8 px: pose, shape), middle (16–32 px: features) and fine
(64 px and up: colour scheme, micro-structure) (:data:`RESOLUTION_BANDS`). At 1024 px the presets are
exactly the original code's W+ swap lists; on smaller models they are those lists without the entries the
model does not have.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch

from jojogan.config import (
    MASK_PRESETS,
    MEAN_LATENT_SAMPLES,
    REFERENCE_CODES,
    MaskSpec,
    check_mask_spec,
)
from jojogan.stylegan2.model import (
    Generator,
    num_style_layers,
    style_layer_is_rgb,
    style_layer_latent_index,
    style_layer_resolution,
)

__all__ = [
    "RESOLUTION_BANDS",
    "MeanLatentCache",
    "band_of",
    "layer_latents",
    "layer_styles",
    "mean_style_code",
    "mix_styles",
    "reference_layer_latents",
    "resolve_mask",
    "style_layer_kinds",
    "style_resolutions",
    "swapped_layers",
    "w_plus_swap_layers",
]

RESOLUTION_BANDS: dict[str, tuple[int, int]] = {"coarse": (4, 8), "middle": (16, 32), "fine": (64, 1 << 30)}
"""Style-resolution bands ``name: (lowest, highest)`` in px (Karras et al.'s coarse / middle / fine)."""

# Beyond this resolution a conv layer counts as "fine" (colour scheme, micro-structure) rather than
# "structure" (pose, face shape, features): Karras et al.'s coarse + middle styles end at 32 px.
_STRUCTURE_MAX_RESOLUTION = RESOLUTION_BANDS["middle"][1]
# preserve-color keeps these style resolutions' up-sampling entries (the up-sampling conv and the to-RGB
# below it) and every layer from this style resolution up; the rest of the fine band is swapped no more.
_PRESERVE_COLOR_UP_ENTRIES = (128, 256)
_PRESERVE_COLOR_FROM = 1024


def style_layer_kinds(size: int) -> list[str]:
    """For each modulated layer in synthesis order: ``"up"`` (2× up-sampling), ``"conv"`` or ``"rgb"``."""
    is_rgb = style_layer_is_rgb(size)
    return ["rgb" if rgb else ("up" if k >= 2 and is_rgb[k - 1] else "conv") for k, rgb in enumerate(is_rgb)]


def style_resolutions(size: int) -> list[int]:
    """For each modulated layer, its style resolution (a to-RGB layer's is twice its output's: it reads the
    W+ entry of the next level's up-sampling conv)."""
    return [
        r * 2 if rgb else r
        for r, rgb in zip(style_layer_resolution(size), style_layer_is_rgb(size), strict=True)
    ]


def band_of(resolution: int) -> str:
    """The :data:`RESOLUTION_BANDS` name of a style resolution."""
    return next(name for name, (low, high) in RESOLUTION_BANDS.items() if low <= resolution <= high)


def _preset_layers(name: str, size: int) -> list[int]:
    """S layers swapped by a preset, from the layers' style resolutions (see the module docstring)."""
    found = zip(style_layer_kinds(size), style_resolutions(size), strict=True)
    if name == "default":  # the fine band: the original code's W+ range(7, 18) at 1024 px
        return [k for k, (_, res) in enumerate(found) if band_of(res) == "fine"]
    # preserve-color: the original code's W+ (9, 11, 15, 16, 17) at 1024 px
    return [
        k
        for k, (kind, res) in enumerate(found)
        if (kind != "conv" and res in _PRESERVE_COLOR_UP_ENTRIES) or res >= _PRESERVE_COLOR_FROM
    ]


def w_plus_swap_layers(w_plus_indices: Sequence[int], size: int) -> list[int]:
    """The S layers fed by the given W+ indices (indices ≥ ``n_latent`` are ignored).

    The original code swapped W+ entries; this turns such a list into the S layers it changes. At
    1024 px ``range(7, 18)`` gives layers 10…25; at 256 px ``n_latent`` is 14, so it means 7…13.

    Args:
        w_plus_indices: W+ indices (non-negative).
        size: generator resolution.

    Returns:
        Sorted S-layer indices.
    """
    if any(i < 0 for i in w_plus_indices):
        raise ValueError(f"W+ indices must be non-negative, got {list(w_plus_indices)}")
    wanted = set(w_plus_indices)
    return [k for k, idx in enumerate(style_layer_latent_index(size)) if idx in wanted]


def _group_layers(name: str, size: int) -> list[int]:
    resolution = style_layer_resolution(size)
    is_rgb = style_layer_is_rgb(size)
    count = num_style_layers(size)
    if name in RESOLUTION_BANDS:
        return [k for k, res in enumerate(style_resolutions(size)) if band_of(res) == name]
    structure = [k for k in range(count) if not is_rgb[k] and resolution[k] <= _STRUCTURE_MAX_RESOLUTION]
    if name == "structure":
        return structure
    if name in ("colour", "color"):
        return [k for k in range(count) if k not in structure]
    if name == "all":
        return list(range(count))
    assert name == "none", name
    return []


def _check_layer_indices(indices: Sequence[int], count: int, what: str) -> None:
    bad = [i for i in indices if not 0 <= i < count]
    if bad:
        raise ValueError(f"{what} must lie in [0, {count - 1}], got {bad}")


def _mapping_layers(spec: Mapping, size: int) -> list[int]:
    """The S layers a ``{"layers", "resolutions", "w_plus"}`` mask spec swaps (the union)."""
    count = num_style_layers(size)
    layers = list(spec.get("layers", ()))
    _check_layer_indices(layers, count, f"mask layers at {size} px")
    resolution = style_layer_resolution(size)
    resolutions = list(spec.get("resolutions", ()))
    valid = sorted(set(resolution))
    bad = [r for r in resolutions if r not in valid]
    if bad:
        raise ValueError(f"mask resolutions must be among {valid} at {size} px, got {bad}")
    layers += [k for k in range(count) if resolution[k] in resolutions]
    w_plus = list(spec.get("w_plus", ()))
    n_latent = max(style_layer_latent_index(size)) + 1
    _check_layer_indices(w_plus, n_latent, f"mask W+ indices at {size} px")
    return layers + w_plus_swap_layers(w_plus, size)


def resolve_mask(spec: MaskSpec, size: int) -> torch.Tensor:
    """Turn a mask spec into the keep-mask of the style layers (True = keep the reference's code).

    Specs name the layers to *swap* (replace by random codes during training):

    * ``"default"``: the fine band (style resolution 64 px and up), at 1024 px the S layers fed by W+
      ``range(7, 18)`` (the original code; 10…25).
    * ``"preserve-color"`` (or ``"preserve-colour"``): the up-sampling entries of the 128 and 256 px levels
      and every layer of style resolution 1024 px and up, at 1024 px those fed by W+ 9, 11, 15, 16, 17 (the
      original ``preserve_color=True``; 13, 14, 16, 17, 22…25).
    * ``"coarse"``, ``"middle"``, ``"fine"``: the layers of one :data:`RESOLUTION_BANDS` band.
    * ``"structure"``: the conv layers (not to_rgb) whose output is at most 32 px: pose, face shape and
      features (0, 2, 3, 5, 6, 8, 9 at any size ≥ 32).
    * ``"colour"`` (or ``"color"``): every other layer, i.e. all to_rgb layers plus every layer above
      32 px: colour scheme and micro-structure. ``"structure"`` and ``"colour"`` partition the layers.
    * ``"all"`` / ``"none"``: every layer / no layer.
    * a sequence of S-layer indices in ``[0, num_styles)``.
    * a mapping whose keys are among ``"layers"`` (S-layer indices), ``"resolutions"`` (every layer
      whose output has one of these sizes in px) and ``"w_plus"`` (W+ indices in ``[0, n_latent)``); the
      union is swapped.
    * a bool tensor ``[num_styles]``: already a keep-mask, returned as a copy.

    Args:
        spec: the mask spec.
        size: generator resolution.

    Returns:
        Bool tensor ``[num_styles]`` on the CPU, True where the reference's code is kept.

    Raises:
        ValueError: an unknown name, an index or resolution outside the model, or a wrong-length tensor.
    """
    check_mask_spec(spec)
    count = num_style_layers(size)
    if isinstance(spec, torch.Tensor):
        if spec.numel() != count:
            raise ValueError(f"a keep-mask tensor at {size} px needs {count} entries, got {spec.numel()}")
        return spec.detach().to("cpu", copy=True)
    if isinstance(spec, str):
        if spec in MASK_PRESETS:
            swap = _preset_layers("default" if spec == "default" else "preserve-color", size)
        else:
            swap = _group_layers(spec, size)
    elif isinstance(spec, Mapping):
        swap = _mapping_layers(spec, size)
    else:
        swap = list(spec)
        _check_layer_indices(swap, count, f"mask layer indices at {size} px")
    keep = torch.ones(count, dtype=torch.bool)
    keep[sorted(set(swap))] = False
    return keep


def swapped_layers(keep: torch.Tensor) -> list[int]:
    """The S layers a keep-mask swaps, as a sorted list (what style files record)."""
    return [int(k) for k in torch.nonzero(~keep.cpu()).flatten()]


def layer_latents(w_plus: torch.Tensor, size: int) -> torch.Tensor:
    """Per-layer latents from W+: entry ``k`` is the W+ entry that style layer ``k`` reads.

    Args:
        w_plus: ``[batch, n_latent, style_dim]``.
        size: generator resolution.

    Returns:
        ``[batch, num_styles, style_dim]``.
    """
    index = style_layer_latent_index(size)
    n_latent = max(index) + 1
    if w_plus.ndim != 3 or w_plus.shape[1] != n_latent:
        raise ValueError(
            f"expected W+ [batch, {n_latent}, style_dim] at {size} px, got {tuple(w_plus.shape)}"
        )
    return w_plus[:, index]


def layer_styles(generator: Generator, latents: torch.Tensor) -> list[torch.Tensor]:
    """Style vectors from per-layer latents through the generator's affine layers.

    Args:
        generator: supplies the ``modulation`` of every layer.
        latents: ``[batch, num_styles, style_dim]``.

    Returns:
        ``num_styles`` tensors ``[batch, channels_k]``.
    """
    convs = generator.modulated_convs()
    if latents.ndim != 3 or latents.shape[1:] != (len(convs), generator.style_dim):
        raise ValueError(
            f"expected per-layer latents [batch, {len(convs)}, {generator.style_dim}], "
            f"got {tuple(latents.shape)}"
        )
    return [conv.modulation(latents[:, k]) for k, conv in enumerate(convs)]


def mix_styles(
    generator: Generator,
    latents: torch.Tensor,
    keep: torch.Tensor,
    mix_strength: float,
    z: torch.Tensor,
) -> list[torch.Tensor]:
    """Training style codes: the reference codes with the swapped layers moved towards ``S(mapping(z))``.

    Runs inside autograd: gradients reach the mapping network and every affine layer.

    Args:
        generator: the generator being trained.
        latents: reference per-layer latents ``[batch, num_styles, style_dim]``.
        keep: keep-mask ``[num_styles]`` from :func:`resolve_mask`.
        mix_strength: in [0, 1]; 1 replaces the swapped layers, 0 leaves the reference codes unchanged.
        z: fresh Gaussian samples ``[batch, style_dim]``, one per reference.

    Returns:
        ``num_styles`` tensors ``[batch, channels_k]``.
    """
    if not 0.0 <= mix_strength <= 1.0:
        raise ValueError(f"mix_strength must be in [0, 1], got {mix_strength}")
    if keep.dtype != torch.bool or keep.shape != (generator.num_styles,):
        raise ValueError(
            f"keep must be a bool tensor [{generator.num_styles}], got {keep.dtype} {tuple(keep.shape)}"
        )
    if z.ndim != 2 or z.shape[0] != latents.shape[0]:
        raise ValueError(
            f"z must be [{latents.shape[0]}, style_dim] (one per reference), got {tuple(z.shape)}"
        )
    random_w = generator.get_latent(z).unsqueeze(1)
    # Same expression as the original W+ mixing, so the presets reproduce it bit for bit.
    blended = (1 - mix_strength) * latents + mix_strength * random_w
    mixed = torch.where(keep.to(latents.device).view(1, -1, 1), latents, blended)
    return layer_styles(generator, mixed)


def reference_layer_latents(
    size: int,
    w_plus: torch.Tensor | None,
    reference_code: str = "invert",
    *,
    mean_latent: torch.Tensor | None = None,
    blend_mask: MaskSpec = "colour",
    batch: int | None = None,
) -> torch.Tensor:
    """The per-layer latents JoJoGAN trains towards, for each reference.

    Args:
        size: generator resolution.
        w_plus: inverted references ``[refs, n_latent, style_dim]`` (or w ``[refs, style_dim]``); may be
            ``None`` for ``"mean"``.
        reference_code: ``"invert"`` uses the inversions; ``"mean"`` the mean latent for every layer (its
            style code is the mean style code, the affine layers being linear); ``"blend"`` takes the
            layers selected by ``blend_mask`` from the mean and the rest from the inversion (the paper's
            virtual inverter for references too far from faces).
        mean_latent: mean w ``[style_dim]`` (see :meth:`Generator.mean_latent`), needed by "mean" and "blend".
        blend_mask: mask spec (as in :func:`resolve_mask`) of the layers "blend" takes from the mean.
        batch: number of references when ``w_plus`` is ``None``.

    Returns:
        ``[refs, num_styles, style_dim]``.
    """
    if reference_code not in REFERENCE_CODES:
        raise ValueError(
            f"reference_code must be one of {', '.join(REFERENCE_CODES)}, got {reference_code!r}"
        )
    count = num_style_layers(size)
    inverted = None
    if w_plus is not None:
        if w_plus.ndim == 2:
            w_plus = w_plus.unsqueeze(1).expand(-1, max(style_layer_latent_index(size)) + 1, -1)
        inverted = layer_latents(w_plus, size)
        batch = inverted.shape[0]
    if reference_code == "invert":
        if inverted is None:
            raise ValueError('reference_code="invert" needs the inverted W+ of the references')
        return inverted
    if mean_latent is None:
        raise ValueError(f'reference_code="{reference_code}" needs mean_latent (see Generator.mean_latent)')
    mean_latent = mean_latent.reshape(-1)
    if batch is None:
        raise ValueError('reference_code="mean" without w_plus needs batch (the number of references)')
    device = inverted.device if inverted is not None else mean_latent.device
    mean = mean_latent.to(device).view(1, 1, -1).expand(batch, count, -1)
    if reference_code == "mean":
        return mean.clone()
    if inverted is None:
        raise ValueError('reference_code="blend" needs the inverted W+ of the references')
    if mean.shape[2] != inverted.shape[2]:
        raise ValueError(f"mean_latent has {mean.shape[2]} entries, the W+ style_dim is {inverted.shape[2]}")
    from_mean = ~resolve_mask(blend_mask, size).to(device)
    return torch.where(from_mean.view(1, -1, 1), mean, inverted)


@torch.no_grad()
def mean_style_code(
    generator: Generator, n: int = MEAN_LATENT_SAMPLES, seed: int = 0, batch: int = 2048
) -> list[torch.Tensor]:
    """Mean of ``S(mapping(z))`` over ``n`` seeded random z: ``num_styles`` tensors ``[1, channels_k]``.

    Averaged in style space, over the same z as :meth:`Generator.mean_latent`; since every affine layer
    is linear it equals ``generator.styles(generator.mean_latent(n, seed))`` up to rounding.
    """
    totals: list[torch.Tensor] | None = None
    for w in generator.sample_latents(n, seed, batch):
        parts = [s.double().sum(0, keepdim=True) for s in generator.styles(w)]
        totals = parts if totals is None else [t + p for t, p in zip(totals, parts, strict=True)]
    assert totals is not None
    return [(t / n).float() for t in totals]


class MeanLatentCache:
    """Small in-memory cache of :meth:`Generator.mean_latent`, keyed by a caller-chosen name of the model.

    Computing the mean of 10,000 mapped z is cheap next to fine-tuning but not free; a pipeline that
    fine-tunes several styles from one base checkpoint keys this cache by the checkpoint's sha256.

    Args:
        max_entries: how many means to keep (least recently used ones are dropped).
    """

    def __init__(self, max_entries: int = 8):
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    def get(
        self, key: str, generator: Generator, n: int = MEAN_LATENT_SAMPLES, seed: int = 0, batch: int = 2048
    ) -> torch.Tensor:
        """The mean latent ``[style_dim]`` of ``generator`` (computed on the first request for ``key``).

        Args:
            key: identifies the generator's weights (e.g. the checkpoint's sha256); the caller guarantees
                that one key always names the same weights.
            generator: used only when the entry is missing.
            n, seed, batch: as in :meth:`Generator.mean_latent` (``n`` and ``seed`` are part of the key).
        """
        entry = (key, n, seed)
        if entry in self._entries:
            self._entries.move_to_end(entry)
        else:
            self._entries[entry] = generator.mean_latent(n=n, seed=seed, batch=batch)[0].cpu()
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return self._entries[entry].to(generator.input.input.device)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
