"""Encoder4Editing (e4e): an image → W+ encoder for the FFHQ StyleGAN2, loading the official checkpoint.

e4e (Tov et al., "Designing an Encoder for StyleGAN Image Manipulation", 2021) maps an aligned 256×256
face to 18 W+ vectors. It is an IR-SE50 backbone with a small feature pyramid: the coarsest features feed
one style head that predicts a single code ``w0``, and every other head predicts an offset from it, so
all 18 entries stay close to one W vector (which is what makes the codes editable):

    codes[:, 0] = latent_avg[0] + w0
    codes[:, i] = latent_avg[i] + w0 + delta_i          (i = 1 .. 17)

Heads 0-2 read the 16×16 backbone output ``c3``, heads 3-6 the 32×32 pyramid level ``p2`` and heads 7-17
the 64×64 level ``p1``. ``latent_avg`` (the generator's mean W, stored in the checkpoint) is added because
the official model was trained with ``start_from_latent_avg``.

Module and parameter names are those of the official ``e4e_ffhq_encode.pt`` (``encoder.*`` there), so it
loads with ``strict=True``. :func:`load_e4e` reads it without executing pickled code.
"""

from __future__ import annotations

import argparse
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from jojogan.inversion.errors import CheckpointError
from jojogan.inversion.ir_se import IRSEBottleneck, SqueezeExcitation, ir_se_body, ir_se_input_layer
from jojogan.op.shapes import check_shape
from jojogan.stylegan2.checkpoint import layout_problems, read_weights_file
from jojogan.stylegan2.layers import EqualLinear
from jojogan.stylegan2.model import Generator

__all__ = [
    "COARSE_STYLES",
    "E4EConfig",
    "E4EInverter",
    "E4E_INPUT_SIZE",
    "Encoder4Editing",
    "GradualStyleBlock",
    "IRSEBottleneck",
    "MIDDLE_STYLES",
    "SqueezeExcitation",
    "load_e4e",
    "to_e4e_input",
]

E4E_INPUT_SIZE = 256
"""Side of the square image the official encoder reads."""

COARSE_STYLES = range(0, 3)
"""W+ indices predicted from the coarsest features ``c3`` (1/16 of the input side)."""

MIDDLE_STYLES = range(3, 7)
"""W+ indices predicted from the middle pyramid level ``p2`` (1/8 of the input side); the rest read ``p1``."""

# Options of the official training run that change what the weights mean; a checkpoint whose ``opts``
# says otherwise (a pSp GradualStyleEncoder has the very same tensor names) must not load as e4e.
_EXPECTED_ENCODER_TYPE = "Encoder4Editing"


@dataclass(frozen=True)
class E4EConfig:
    """Architecture of an :class:`Encoder4Editing`. The defaults are the official FFHQ encoder.

    Attributes:
        input_size: side of the square input image; the style heads halve the feature maps down to 1×1.
        stem_channels: channels of the input convolution.
        stage_channels: output channels of the four IR-SE stages (64, 128, 256, 512 for IR-SE50).
        stage_units: bottleneck units per stage (3, 4, 14, 3 for IR-SE50); the first unit of each stage
            halves the resolution.
        style_dim: width of a W vector.
        n_styles: number of W+ entries (18 for a 1024 px generator).
        se_reduction: channel reduction inside the squeeze-and-excitation gates.
    """

    input_size: int = E4E_INPUT_SIZE
    stem_channels: int = 64
    stage_channels: tuple[int, int, int, int] = (64, 128, 256, 512)
    stage_units: tuple[int, int, int, int] = (3, 4, 14, 3)
    style_dim: int = 512
    n_styles: int = 18
    se_reduction: int = 16

    def __post_init__(self) -> None:
        size = self.input_size
        if not isinstance(size, int) or size < 32 or size & (size - 1):
            raise ValueError(f"input_size must be a power of two >= 32, got {size!r}")
        if len(self.stage_channels) != 4 or len(self.stage_units) != 4:
            raise ValueError(
                f"stage_channels and stage_units need 4 entries each, got {self.stage_channels!r} and "
                f"{self.stage_units!r}"
            )
        if min(self.stage_units) < 1:
            raise ValueError(f"every stage needs at least one unit, got stage_units={self.stage_units!r}")
        widths = (self.stem_channels, *self.stage_channels, self.style_dim, self.se_reduction)
        if min(widths) < 1:
            raise ValueError(f"channel counts and se_reduction must be positive, got {widths!r}")
        if min(self.stage_channels) < self.se_reduction:
            raise ValueError(
                f"se_reduction {self.se_reduction} leaves no channels in the gate of a "
                f"{min(self.stage_channels)}-channel stage"
            )
        if self.n_styles <= MIDDLE_STYLES.stop:
            raise ValueError(
                f"n_styles must exceed {MIDDLE_STYLES.stop} (coarse + middle heads), got {self.n_styles}"
            )

    @property
    def feature_taps(self) -> tuple[int, int, int]:
        """Indices into ``body`` whose outputs are ``c1``, ``c2``, ``c3``: the ends of stages 2, 3, 4.

        ``(6, 20, 23)`` for IR-SE50.
        """
        ends = [end - 1 for end in itertools.accumulate(self.stage_units)]
        return ends[1], ends[2], ends[3]


class GradualStyleBlock(nn.Module):
    """Style head: stride-2 3×3 convs with leaky ReLU (slope 0.01) down to 1×1, then an equalized linear.

    Parameters ``convs.{0,2,4,...}.weight/bias`` (the odd indices are the activations) and
    ``linear.weight`` ``[out_channels, out_channels]``, ``linear.bias``.

    Args:
        in_channels: channels of the feature map read.
        out_channels: width of the predicted vector (``style_dim``).
        spatial: side of the feature map read (a power of two); ``log2(spatial)`` convs reduce it to 1×1.
    """

    def __init__(self, in_channels: int, out_channels: int, spatial: int):
        super().__init__()
        n_convs = int(math.log2(spatial))
        assert 2**n_convs == spatial and n_convs >= 1, f"spatial must be a power of two >= 2, got {spatial}"
        self.spatial = spatial
        layers: list[nn.Module] = []
        for i in range(n_convs):
            layers.append(
                nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, stride=2, padding=1)
            )
            layers.append(nn.LeakyReLU(0.01))
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_channels, out_channels, lr_mul=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, in_channels, spatial, spatial]`` → ``[batch, out_channels]``."""
        x = self.convs(x)
        assert x.shape[-2:] == (1, 1), (
            f"style head expected a {self.spatial}px map, reduced to {x.shape[-2:]}"
        )
        return self.linear(x.flatten(1))

    def extra_repr(self) -> str:
        return f"spatial={self.spatial}"


def _upsample_add(top: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    # Bilinear with align_corners=True, as the original FPN merge (the weights were trained with it).
    return F.interpolate(top, size=lateral.shape[-2:], mode="bilinear", align_corners=True) + lateral


class Encoder4Editing(nn.Module):
    """The e4e encoder: aligned face → W+ offsets from ``latent_avg`` (not including it).

    State-dict names and order are those of the ``encoder.`` part of ``e4e_ffhq_encode.pt``:
    ``input_layer.{0,1,2}`` (conv 3×3, BN, PReLU), ``body.{0..23}`` (:class:`IRSEBottleneck`),
    ``styles.{0..17}`` (:class:`GradualStyleBlock`), ``latlayer1`` and ``latlayer2`` (1×1 pyramid convs).

    Args:
        config: architecture; the default is the official IR-SE50 FFHQ encoder.
    """

    def __init__(self, config: E4EConfig | None = None):
        super().__init__()
        self.config = config = config or E4EConfig()
        self.input_layer = ir_se_input_layer(config.stem_channels)
        self.body = ir_se_body(
            config.stem_channels, config.stage_channels, config.stage_units, config.se_reduction
        )

        top = config.stage_channels[3]
        size = config.input_size
        self.styles = nn.ModuleList()
        for i in range(config.n_styles):
            if i in COARSE_STYLES:
                spatial = size // 16
            elif i in MIDDLE_STYLES:
                spatial = size // 8
            else:
                spatial = size // 4
            self.styles.append(GradualStyleBlock(top, config.style_dim, spatial))
        self.latlayer1 = nn.Conv2d(config.stage_channels[2], top, kernel_size=1)
        self.latlayer2 = nn.Conv2d(config.stage_channels[1], top, kernel_size=1)
        self._tap_c1, self._tap_c2, tap_c3 = config.feature_taps
        assert tap_c3 == len(self.body) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode faces.

        Args:
            x: ``[batch, 3, 256, 256]`` RGB in [-1, 1] (see :func:`to_e4e_input`).

        Returns:
            ``[batch, 18, 512]``: ``w0`` in entry 0 and ``w0 + delta_i`` in entry i, still without
            ``latent_avg`` (:class:`E4EInverter` adds it).

        Raises:
            ValueError: ``x`` does not have the shape above.
        """
        check_shape(x, "batch 3 size size", "images", size=self.config.input_size)
        x = self.input_layer(x)
        c1 = c2 = x
        for index, unit in enumerate(self.body):
            x = unit(x)
            if index == self._tap_c1:
                c1 = x
            elif index == self._tap_c2:
                c2 = x
        c3 = x

        w0 = self.styles[0](c3)
        # Entry 0 is w0 itself: a zero offset keeps one stack + one broadcast add for all 18 entries.
        offsets = [torch.zeros_like(w0)]
        offsets += [self.styles[i](c3) for i in COARSE_STYLES[1:]]
        p2 = _upsample_add(c3, self.latlayer1(c2))
        offsets += [self.styles[i](p2) for i in MIDDLE_STYLES]
        p1 = _upsample_add(p2, self.latlayer2(c1))
        offsets += [self.styles[i](p1) for i in range(MIDDLE_STYLES.stop, len(self.styles))]
        return torch.stack(offsets, dim=1) + w0.unsqueeze(1)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"input_size={c.input_size}, stages={c.stage_channels}x{c.stage_units}, "
            f"style_dim={c.style_dim}, n_styles={c.n_styles}"
        )


class E4EInverter(nn.Module):
    """An e4e encoder plus the ``latent_avg`` it was trained around: aligned faces → W+ codes.

    State dict: ``latent_avg``, ``encoder.*`` and, when a decoder is given, ``decoder.*``, the names of
    the official checkpoint.

    Args:
        encoder: the encoder.
        latent_avg: ``[n_styles, style_dim]`` mean W+ of the generator.
        decoder: optional StyleGAN2 generator the encoder was trained with (only kept, never run here).

    Raises:
        ValueError: ``latent_avg`` does not match the encoder.
    """

    def __init__(self, encoder: Encoder4Editing, latent_avg: torch.Tensor, decoder: Generator | None = None):
        super().__init__()
        expected = (encoder.config.n_styles, encoder.config.style_dim)
        if tuple(latent_avg.shape) != expected:
            raise ValueError(f"latent_avg must have shape {list(expected)}, got {list(latent_avg.shape)}")
        self.encoder = encoder
        self.register_buffer("latent_avg", latent_avg.detach())
        self.decoder = decoder

    @property
    def input_size(self) -> int:
        """Side of the square input image (256 for the official model)."""
        return self.encoder.config.input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode a batch of preprocessed faces.

        Args:
            x: ``[batch, 3, 256, 256]`` RGB in [-1, 1].

        Returns:
            ``[batch, 18, 512]`` W+ codes for the generator (``latent_avg`` included).
        """
        return self.encoder(x) + self.latent_avg

    def invert(self, images: Image.Image | Sequence[Image.Image]) -> torch.Tensor:
        """Encode aligned face crops (no gradients; call ``.eval()`` first if the module was trained).

        Args:
            images: one aligned, square face crop or a sequence of them (PIL, any size and mode).

        Returns:
            ``[batch, 18, 512]`` W+ codes on this module's device, one row per image.

        Raises:
            ValueError: no image, or an image that is not square.
            TypeError: an item is not a PIL image.
        """
        images = [images] if isinstance(images, Image.Image) else list(images)
        if not images:
            raise ValueError("invert needs at least one image, got an empty sequence")
        batch = torch.stack([to_e4e_input(image, self.input_size) for image in images])
        # no_grad rather than inference_mode: inference tensors refuse later in-place edits (such as
        # the style-mixing swaps done on these codes) outside inference mode.
        with torch.no_grad():
            return self(batch.to(device=self.latent_avg.device, dtype=self.latent_avg.dtype))

    def extra_repr(self) -> str:
        return f"n_styles={self.latent_avg.shape[0]}, style_dim={self.latent_avg.shape[1]}"


def to_e4e_input(image: Image.Image, size: int = E4E_INPUT_SIZE) -> torch.Tensor:
    """Turn an aligned face crop into the encoder's input, as the official pSp/e4e transform does.

    The official transform (torchvision ``Resize`` → ``ToTensor`` → ``Normalize(0.5, 0.5)``; JoJoGAN's
    ``Resize(256)`` + ``CenterCrop(256)`` is the same for a square crop) resizes a PIL image with PIL's own
    bilinear filter; this does the same without torchvision:
    ``image.resize((size, size), BILINEAR)``, scale to [0, 1], then ``(x - 0.5) / 0.5``. Bilinear in PIL
    widens its kernel when shrinking (antialiasing), so a 1024 px crop is averaged, not point-sampled.

    Args:
        image: a square face crop (e.g. the aligner's output); converted to RGB if it is in another mode.
        size: output side.

    Returns:
        ``[3, size, size]`` float32 in [-1, 1].

    Raises:
        TypeError: ``image`` is not a PIL image.
        ValueError: ``image`` is not square (an aligned crop always is; resizing would distort the face).
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(image).__name__}")
    if image.width != image.height:
        raise ValueError(f"expected a square aligned face crop, got {image.width}x{image.height}")
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)
    return pixels.float().div(255).sub(0.5).div(0.5)


# --------------------------------------------------------------------------------------------- loading


def load_e4e(
    path: str | Path,
    device: str | torch.device = "cpu",
    with_decoder: bool = False,
    config: E4EConfig | None = None,
) -> E4EInverter:
    """Load an e4e checkpoint in the official ``e4e_ffhq_encode.pt`` layout, strictly.

    The file is read with ``torch.load(weights_only=True)``; ``argparse.Namespace`` (a plain attribute
    container the official training code may store as ``opts``) is the only class allowed besides tensors
    and containers. Every ``encoder.`` tensor must match the architecture by name and shape; the
    ``decoder.`` tensors are only read when ``with_decoder`` is set. The encoder is built on the meta
    device and takes the file's tensors directly, so no random initialisation is spent on it.

    Args:
        path: the checkpoint file: a dict with ``state_dict`` (``encoder.*``, ``decoder.*``),
            ``latent_avg`` ``[18, 512]`` and optionally ``opts``.
        device: where the returned module lives.
        with_decoder: also build the StyleGAN2 ``Generator(1024, 512, 8, 2)`` from ``decoder.*`` and keep it
            as ``.decoder``.
        config: architecture to expect; the default is the official one.

    Returns:
        An :class:`E4EInverter` in eval mode, parameters frozen (``requires_grad=False``).

    Raises:
        CheckpointError: the file is missing, is not a torch checkpoint, holds disallowed objects, lacks
            ``state_dict`` or ``latent_avg``, has missing, unexpected or misshapen tensors, or its ``opts``
            describe a different model (another encoder type, no ``start_from_latent_avg``).
    """
    config = config or E4EConfig()
    path = Path(path)
    checkpoint = _read_checkpoint(path)
    state = checkpoint.get("state_dict")
    if not isinstance(state, Mapping):
        found = ", ".join(map(repr, list(checkpoint)[:10])) or "nothing"
        raise CheckpointError(
            f"{path} is not an e4e checkpoint: it has no 'state_dict' dict (top-level keys: {found})"
        )
    _check_opts(checkpoint.get("opts"), config, path)
    latent_avg = _read_latent_avg(checkpoint, config, path)

    # Both layouts are checked before the encoder's ~1 GB is materialised, so a bad file fails fast.
    with torch.device("meta"):
        encoder = Encoder4Editing(config)
    encoder_state = _layout_checked(state, "encoder.", encoder.state_dict(), path)
    decoder = decoder_state = None
    if with_decoder:
        decoder = Generator(2 ** ((config.n_styles + 2) // 2), config.style_dim, 8, 2)
        decoder_state = _layout_checked(state, "decoder.", decoder.state_dict(), path)

    encoder.load_state_dict(_as_expected(encoder_state, encoder.state_dict()), strict=True, assign=True)
    if decoder is not None:
        decoder.load_state_dict(decoder_state, strict=True)

    inverter = E4EInverter(encoder, latent_avg, decoder)
    return inverter.requires_grad_(False).eval().to(device)


def _read_checkpoint(path: Path) -> dict:
    return read_weights_file(path, safe_globals=(argparse.Namespace,))


def _check_opts(opts: object, config: E4EConfig, path: Path) -> None:
    if opts is None:
        return
    if isinstance(opts, argparse.Namespace):
        opts = vars(opts)
    if not isinstance(opts, Mapping):
        raise CheckpointError(f"{path}: 'opts' should be a dict or Namespace, got {type(opts).__name__}")
    encoder_type = opts.get("encoder_type", _EXPECTED_ENCODER_TYPE)
    if encoder_type != _EXPECTED_ENCODER_TYPE:
        raise CheckpointError(
            f"{path} holds a {encoder_type!r} encoder, not {_EXPECTED_ENCODER_TYPE!r} (e4e); its tensors "
            "would load but mean something else"
        )
    if not opts.get("start_from_latent_avg", True):
        raise CheckpointError(
            f"{path} was trained without start_from_latent_avg; this loader only supports the official "
            "setting, where latent_avg is added to the encoder's output"
        )
    expected_size = 2 ** ((config.n_styles + 2) // 2)
    stylegan_size = opts.get("stylegan_size", expected_size)
    if stylegan_size != expected_size:
        raise CheckpointError(
            f"{path} encodes for a {stylegan_size} px generator; expected {expected_size} px "
            f"({config.n_styles} W+ entries)"
        )


def _read_latent_avg(checkpoint: Mapping, config: E4EConfig, path: Path) -> torch.Tensor:
    latent_avg = checkpoint.get("latent_avg")
    expected = [config.n_styles, config.style_dim]
    if not isinstance(latent_avg, torch.Tensor):
        raise CheckpointError(f"{path} has no 'latent_avg' tensor (expected shape {expected})")
    if list(latent_avg.shape) != expected:
        raise CheckpointError(f"{path}: 'latent_avg' has shape {list(latent_avg.shape)}, expected {expected}")
    return latent_avg.to(torch.float32).contiguous()


def _layout_checked(
    state: Mapping[str, object], prefix: str, expected: Mapping[str, torch.Tensor], path: Path
) -> dict[str, torch.Tensor]:
    """The ``prefix`` part of ``state`` without the prefix, after checking it name for name and shape for
    shape against ``expected``; raises CheckpointError listing what differs."""
    found = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    problems = layout_problems(found, expected, prefix)
    if problems:
        raise CheckpointError(
            f"{path} does not have the official e4e layout under '{prefix}': " + "; ".join(problems)
        )
    return found


def _as_expected(
    found: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    # assign=True makes these tensors the parameters themselves: give them the module's dtypes and a
    # plain contiguous layout (a no-op for an ordinary float32 file).
    return {name: found[name].to(ref.dtype).contiguous() for name, ref in expected.items()}
