"""The generator's configuration and its synthesis plan: the one owner of the style-layer order.

A StyleGAN2 generator of ``size`` px has ``2 + 3 * (log2(size) - 2)`` modulated layers (26 at 1024 px).
In synthesis order they are ``conv1`` and ``to_rgb1`` at 4 px, then for each resolution 8 … size the
up-sampling conv, the second conv and its to_rgb. :func:`synthesis_plan` lists them once, with the W+
entry each reads, its resolution, its channels and its noise input; the generator builds its modules
from it, and every other question about the layers (how many, which W+ entry, which resolution, which
are to_rgb) is a view of that table.

:class:`GeneratorConfig` is what a generator is built from and keeps as ``generator.config``: checkpoint
loaders and style files read and write it instead of rebuilding it by hand.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "D_FEATURE_BLOCKS",
    "DEFAULT_BLUR_KERNEL",
    "LR_MLP",
    "MEAN_LATENT_SAMPLES",
    "GeneratorConfig",
    "StyleLayer",
    "default_channels",
    "num_latents",
    "num_style_layers",
    "style_layer_is_rgb",
    "style_layer_latent_index",
    "style_layer_resolution",
    "synthesis_plan",
]

DEFAULT_BLUR_KERNEL = (1, 3, 3, 1)
"""FIR taps of the resampling filters in every official StyleGAN2 model."""

LR_MLP = 0.01
"""Learning-rate multiplier of the mapping network: 0.01 in every official model. The weights cannot
tell it (it scales the stored weights at run time), so a file without a configuration gets this one."""

# The two constants below belong to the model (:mod:`jojogan.stylegan2.model` re-exports them) but live
# here, beside the other torch-free facts, because the settings (``jojogan.config``) take their defaults
# from them in processes that never build a network.
D_FEATURE_BLOCKS: tuple[int, ...] = (1, 3, 4, 5)
"""Discriminator ``convs`` blocks whose outputs JoJoGAN's loss compares (and optimisation inversion)."""

MEAN_LATENT_SAMPLES = 10_000
"""How many mapped z a mean latent averages by default (the JoJoGAN paper's N)."""


def default_channels(channel_multiplier: int = 2) -> dict[int, int]:
    """The official channel table ``{resolution: channels}`` (config-f: ``channel_multiplier=2``)."""
    return {
        4: 512,
        8: 512,
        16: 512,
        32: 512,
        64: 256 * channel_multiplier,
        128: 128 * channel_multiplier,
        256: 64 * channel_multiplier,
        512: 32 * channel_multiplier,
        1024: 16 * channel_multiplier,
    }


def log2_size(size: int) -> int:
    """``log2(size)`` of a generator resolution (a power of two ≥ 8); ``ValueError`` otherwise."""
    log_size = int(math.log2(size)) if isinstance(size, int) and size > 0 else 0
    if size < 8 or 2**log_size != size:
        raise ValueError(f"size must be a power of two >= 8, got {size}")
    return log_size


@dataclass(frozen=True)
class StyleLayer:
    """One modulated layer of the synthesis network: a row of :func:`synthesis_plan`.

    Attributes:
        module: its name in the state dict (``"conv1"``, ``"to_rgb1"``, ``"convs.2"``, ``"to_rgbs.1"``).
        w_index: the W+ entry its style vector is computed from.
        resolution: the side of its output in px.
        in_channels: channels of the feature map it reads (the length of its style vector).
        out_channels: channels it writes (3 for a to_rgb layer).
        noise: the index of its noise input (``noises.noise_i``); ``None`` for a to_rgb layer.
        upsample: a conv that doubles the resolution, or a to_rgb that up-samples the skip image.
    """

    module: str
    w_index: int
    resolution: int
    in_channels: int
    out_channels: int
    noise: int | None
    upsample: bool

    @property
    def is_rgb(self) -> bool:
        """A to_rgb layer (it updates the RGB skip image and reads no noise)."""
        return self.noise is None


def synthesis_plan(size: int, channels: Mapping[int, int] | None = None) -> tuple[StyleLayer, ...]:
    """Every modulated layer of a ``size`` px generator, in synthesis order (the style index order).

    Args:
        size: generator resolution (a power of two ≥ 8).
        channels: ``{resolution: channels}``; ``None``: the official config-f table.

    Returns:
        ``2 + 3 * (log2(size) - 2)`` rows: conv1 (W+ 0), to_rgb1 (W+ 1), then for level ``j`` (0-based,
        resolution ``2 ** (j + 3)``) the up-sampling conv (W+ ``1 + 2j``), the conv (``2 + 2j``) and
        the to_rgb (``3 + 2j``). Noise inputs are numbered in the order of the convs.
    """
    ch = default_channels() if channels is None else channels
    rows = [
        StyleLayer("conv1", 0, 4, ch[4], ch[4], noise=0, upsample=False),
        StyleLayer("to_rgb1", 1, 4, ch[4], 3, noise=None, upsample=False),
    ]
    for j in range(log2_size(size) - 2):
        res = 2 ** (j + 3)
        in_ch, out_ch = ch[res // 2], ch[res]
        rows += [
            StyleLayer(f"convs.{2 * j}", 1 + 2 * j, res, in_ch, out_ch, noise=1 + 2 * j, upsample=True),
            StyleLayer(f"convs.{2 * j + 1}", 2 + 2 * j, res, out_ch, out_ch, noise=2 + 2 * j, upsample=False),
            StyleLayer(f"to_rgbs.{j}", 3 + 2 * j, res, out_ch, 3, noise=None, upsample=True),
        ]
    return tuple(rows)


# Views of the plan for code that knows only the resolution (masks, per-layer latents).
def num_style_layers(size: int) -> int:
    """Number of modulated layers (26 at 1024 px, 20 at 256 px)."""
    return len(synthesis_plan(size))


def style_layer_latent_index(size: int) -> list[int]:
    """For each modulated layer in synthesis order, the W+ index it reads."""
    return [layer.w_index for layer in synthesis_plan(size)]


def style_layer_resolution(size: int) -> list[int]:
    """For each modulated layer in synthesis order, the resolution of its output."""
    return [layer.resolution for layer in synthesis_plan(size)]


def num_latents(size: int) -> int:
    """Number of W+ entries the modulated layers read (18 at 1024 px, 14 at 256 px)."""
    return max(layer.w_index for layer in synthesis_plan(size)) + 1


def style_layer_is_rgb(size: int) -> list[bool]:
    """For each modulated layer in synthesis order, whether it is a to_rgb layer."""
    return [layer.is_rgb for layer in synthesis_plan(size)]


def _channel_pairs(size: int, channels: object) -> tuple[tuple[int, int], ...]:
    """The channel table as sorted ``(resolution, channels)`` pairs for the resolutions 4 … size."""
    table = dict(channels) if channels else default_channels()
    table = {int(res): int(ch) for res, ch in table.items()}
    wanted = [2**i for i in range(2, log2_size(size) + 1)]
    missing = [res for res in wanted if res not in table]
    if missing:
        raise ValueError(f"channels table has no entry for resolutions {missing}")
    bad = {res: table[res] for res in wanted if table[res] < 1}
    if bad:
        raise ValueError(f"channels must be positive, got {bad}")
    return tuple((res, table[res]) for res in wanted)


@dataclass(frozen=True)
class GeneratorConfig:
    """What a :class:`~jojogan.stylegan2.model.Generator` is built from, kept as ``generator.config``.

    Attributes:
        size: output resolution (a power of two ≥ 8).
        style_dim: dimension of z, w and of each W+ entry (512 for the official models).
        n_mlp: depth of the mapping network.
        lr_mlp: learning-rate multiplier of the mapping network (:data:`LR_MLP`).
        channels: ``(resolution, channels)`` pairs for the resolutions 4 … size; given as a mapping or
            pairs (entries above ``size`` are dropped), empty for the official config-f table.
        blur_kernel: FIR taps of the resampling filters.
        conv_clamp: every synthesis and to-RGB layer's output is clamped to ``±conv_clamp`` (NVIDIA's
            stylegan2-ada and stylegan3 models: 256); ``None`` clamps nothing (the official StyleGAN2 files).
    """

    size: int
    style_dim: int = 512
    n_mlp: int = 8
    lr_mlp: float = LR_MLP
    channels: tuple[tuple[int, int], ...] = field(default=())
    blur_kernel: tuple[int, ...] = DEFAULT_BLUR_KERNEL
    conv_clamp: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", _channel_pairs(self.size, self.channels))
        object.__setattr__(self, "blur_kernel", tuple(int(tap) for tap in self.blur_kernel))
        if self.style_dim < 1 or self.n_mlp < 1:
            raise ValueError(f"style_dim and n_mlp must be >= 1, got {self.style_dim}, {self.n_mlp}")
        if not 0 < self.lr_mlp <= 1:
            raise ValueError(f"lr_mlp must be in (0, 1], got {self.lr_mlp}")
        if self.conv_clamp is not None:
            if isinstance(self.conv_clamp, bool) or not 0 < self.conv_clamp < math.inf:
                raise ValueError(f"conv_clamp must be a positive number or None, got {self.conv_clamp!r}")
            object.__setattr__(self, "conv_clamp", float(self.conv_clamp))

    @property
    def channel_table(self) -> dict[int, int]:
        """``{resolution: channels}`` for the resolutions 4 … size (a new dict)."""
        return dict(self.channels)

    @functools.cached_property
    def plan(self) -> tuple[StyleLayer, ...]:
        """The :func:`synthesis_plan` of this generator."""
        return synthesis_plan(self.size, self.channel_table)

    @property
    def n_latent(self) -> int:
        """Number of W+ entries (18 at 1024 px)."""
        return num_latents(self.size)

    def to_dict(self) -> dict:
        """JSON form (what style files and converted checkpoints record): channel keys as strings, the
        kernel as a list."""
        return {
            "size": self.size,
            "style_dim": self.style_dim,
            "n_mlp": self.n_mlp,
            "channels": {str(res): ch for res, ch in self.channels},
            "lr_mlp": self.lr_mlp,
            "blur_kernel": list(self.blur_kernel),
            "conv_clamp": self.conv_clamp,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> GeneratorConfig:
        """Inverse of :meth:`to_dict`; keys it lacks take their defaults (older files have no kernel).

        Raises:
            ValueError: a key is not a field, or a value is out of range.
        """
        unknown = sorted(set(data) - {f for f in cls.__dataclass_fields__})
        if unknown:
            raise ValueError(f"unknown generator configuration keys {unknown}")
        fields = dict(data)
        if "channels" in fields:
            fields["channels"] = {int(res): int(ch) for res, ch in dict(fields["channels"]).items()}
        return cls(**fields)
