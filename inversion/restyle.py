"""ReStyle: iterative image → W+ encoders (Alaluf et al., ICCV 2021), loading the official checkpoints.

A ReStyle encoder sees the photo and the generator's current reconstruction of it, stacked into 6 channels,
and predicts a correction of the current W+ code. The official inference (``run_on_batch`` of
yuval-alaluf/restyle-encoder) runs, for a photo ``x`` at 256 px:

    ŷ₀ = pool₂₅₆(G(latent_avg))                          (the "average image", computed once)
    w₁ = latent_avg + E([x, ŷ₀])
    w_{t+1} = w_t + E([x, ŷ_t]),   ŷ_t = pool₂₅₆(G(w_t))

where ``G`` is the checkpoint's own decoder run on W+ with its stored noise buffers (``randomize_noise=
False``) and ``pool₂₅₆`` the adaptive average pool to 256 × 256. Cars are 4:3 pictures: their encoders read
rows 32-224 of both images (the picture band of a 512 px car generator after pooling), see
:attr:`RestyleConfig.picture_rows`.

Four encoders, all of which take every style from the final 16 × 16 feature map through the
:class:`~jojogan.inversion.e4e.GradualStyleBlock` heads ``styles.{i}``:

* :class:`BackboneEncoder` (ReStyle-pSp, faces): IR-SE50 stem and body (the ones e4e and the identity
  network use, :mod:`jojogan.inversion.ir_se`); head ``i`` predicts W+ entry ``i``;
* :class:`ProgressiveBackboneEncoder` (ReStyle-e4e, faces): the same body; head 0 predicts ``w0`` and head
  ``i`` an offset from it, ``w0 + delta_i``;
* :class:`ResNetBackboneEncoder` and :class:`ResNetProgressiveBackboneEncoder` (cars, churches, horses,
  AFHQ wild): a ResNet-34 body in torchvision's tensor layout (``body.{0..15}`` = its ``layer1..layer4``
  blocks) behind a 7 × 7 stride-2 stem with a PReLU and no max pool.

A checkpoint is ``{"state_dict": {"encoder.*", "decoder.*"}, "latent_avg", "opts", ...}``; ``opts`` (a plain
dict) names the encoder type and the decoder's size; optimiser and discriminator entries are ignored.
:func:`load_restyle` reads it without executing pickled code and checks every tensor by name and shape.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from jojogan.inversion.e4e import E4E_INPUT_SIZE, GradualStyleBlock, to_e4e_input
from jojogan.inversion.errors import CheckpointError
from jojogan.inversion.ir_se import IR_SE_STAGE_CHANNELS, IR_SE_STAGE_UNITS, ir_se_body, ir_se_input_layer
from jojogan.stylegan2.checkpoint import (
    generator_from_state,
    infer_generator_config,
    layout_problems,
    read_weights_file,
)
from jojogan.stylegan2.model import Generator

__all__ = [
    "BackboneEncoder",
    "DEFAULT_ITERATIONS",
    "ENCODER_TYPES",
    "ProgressiveBackboneEncoder",
    "RESNET34_STAGE_UNITS",
    "RESTYLE_INPUT_SIZE",
    "ResNetBackboneEncoder",
    "ResNetBasicBlock",
    "ResNetProgressiveBackboneEncoder",
    "RestyleConfig",
    "RestyleInverter",
    "load_restyle",
]

RESTYLE_INPUT_SIZE = E4E_INPUT_SIZE
"""Side of the square images the encoders read (photo and reconstruction), as in the official code."""

DEFAULT_ITERATIONS = 5
"""Refinement steps the ReStyle paper and the official inference use for photos."""

RESNET34_STAGE_UNITS = (3, 4, 6, 3)
"""Basic blocks per stage of ResNet-34 (torchvision's ``layer1`` .. ``layer4``)."""

CARS_PICTURE_ROWS = (32, 224)
"""Rows of a 256 px square holding a car picture (the official cars encoders read 192 × 256 images)."""

_HEAD_SPATIAL = RESTYLE_INPUT_SIZE // 16  # the official heads are GradualStyleBlock(512, 512, 16)


@dataclass(frozen=True)
class RestyleConfig:
    """Architecture of a ReStyle encoder. The defaults are the official FFHQ ReStyle-pSp encoder.

    Attributes:
        encoder_type: the official class name (a key of :data:`ENCODER_TYPES`).
        n_styles: W+ entries (``2 * log2(output_size) - 2``: 18 at 1024 px).
        input_channels: channels of the encoder input (6: photo then reconstruction).
        stem_channels: channels of the stem convolution.
        stage_channels: output channels of the four body stages.
        style_dim: width of a W vector (and of the heads).
        se_reduction: channel reduction of the IR-SE gates (unused by the ResNet-34 body).
        picture_rows: ``(top, bottom)`` rows of the 256 px images the encoder reads, or ``None`` for all of
            them (``CARS_PICTURE_ROWS`` for the cars encoders).
    """

    encoder_type: str = "BackboneEncoder"
    n_styles: int = 18
    input_channels: int = 6
    stem_channels: int = 64
    stage_channels: tuple[int, int, int, int] = IR_SE_STAGE_CHANNELS
    style_dim: int = 512
    se_reduction: int = 16
    picture_rows: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.encoder_type not in ENCODER_TYPES:
            raise ValueError(
                f"encoder_type must be one of {sorted(ENCODER_TYPES)}, got {self.encoder_type!r}"
            )
        if self.n_styles < 2 or self.n_styles % 2:
            raise ValueError(f"n_styles must be an even number >= 2, got {self.n_styles}")
        widths = (self.input_channels, self.stem_channels, *self.stage_channels, self.style_dim)
        if len(self.stage_channels) != 4 or min(widths) < 1 or self.se_reduction < 1:
            raise ValueError(f"need 4 positive stage widths and positive sizes, got {self!r}")
        rows = self.picture_rows
        if rows is not None and not 0 <= rows[0] < rows[1] <= RESTYLE_INPUT_SIZE:
            raise ValueError(f"picture_rows must be (top, bottom) inside 0..{RESTYLE_INPUT_SIZE}, got {rows}")

    @property
    def backbone(self) -> str:
        """``"ir_se50"`` or ``"resnet34"``."""
        return ENCODER_TYPES[self.encoder_type][0]

    @property
    def progressive(self) -> bool:
        """Whether heads 1.. predict offsets from head 0's ``w0`` (the e4e variants)."""
        return ENCODER_TYPES[self.encoder_type][1]

    @property
    def stage_units(self) -> tuple[int, int, int, int]:
        """Units per body stage: IR-SE50's ``(3, 4, 14, 3)`` or ResNet-34's ``(3, 4, 6, 3)``."""
        return IR_SE_STAGE_UNITS[50] if self.backbone == "ir_se50" else RESNET34_STAGE_UNITS

    @property
    def output_size(self) -> int:
        """Side of the decoder's images (1024 for 18 styles)."""
        return 2 ** ((self.n_styles + 2) // 2)


class ResNetBasicBlock(nn.Module):
    """torchvision's ``BasicBlock``: conv3×3 (stride) → BN → ReLU → conv3×3 → BN, plus the shortcut, → ReLU.

    Parameters ``conv1.weight``, ``bn1.*``, ``conv2.weight``, ``bn2.*`` and, where the stride or width
    changes, ``downsample.0.weight`` (1×1 conv carrying the stride) and ``downsample.1.*`` (BN); no conv has
    a bias.

    Args:
        in_channels: input channels.
        channels: output channels.
        stride: 1, or 2 to halve the resolution.
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, in_channels, h, w]`` → ``[batch, channels, h / stride, w / stride]``."""
        shortcut = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + shortcut)


def resnet34_body(stem_channels: int, stage_channels: Sequence[int]) -> nn.Sequential:
    """ResNet-34's ``layer1`` .. ``layer4`` as one flat ``body`` (``body.0`` = ``layer1.0``, ...,
    ``body.15`` = ``layer4.2``); every stage but the first starts with a stride-2 block."""
    blocks: list[nn.Module] = []
    in_channels = stem_channels
    for stage, (channels, units) in enumerate(zip(stage_channels, RESNET34_STAGE_UNITS, strict=True)):
        for unit in range(units):
            stride = 2 if stage > 0 and unit == 0 else 1
            blocks.append(ResNetBasicBlock(in_channels, channels, stride))
            in_channels = channels
    return nn.Sequential(*blocks)


class _RestyleEncoder(nn.Module):
    """What the four encoders share: the style heads on the body's output and the way they combine."""

    def __init__(self, config: RestyleConfig):
        super().__init__()
        if config.encoder_type != type(self).__name__:
            raise ValueError(f"{type(self).__name__} cannot be built from a {config.encoder_type!r} config")
        self.config = config

    def _add_styles(self) -> None:
        # Registered after the stem and body: the state-dict order follows the official files.
        c = self.config
        self.styles = nn.ModuleList(
            GradualStyleBlock(c.stage_channels[-1], c.style_dim, _HEAD_SPATIAL) for _ in range(c.n_styles)
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and body: ``[batch, input_channels, h, w]`` → ``[batch, stage_channels[-1], h/16, w/16]``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """W+ correction for a photo stacked with its current reconstruction.

        Args:
            x: ``[batch, 6, h, w]``: the photo's RGB in [-1, 1], then the reconstruction's (h = w = 256, or
                the picture band of it for the cars encoders).

        Returns:
            ``[batch, n_styles, style_dim]``, without the code it corrects.
        """
        if x.ndim != 4 or x.shape[1] != self.config.input_channels:
            raise ValueError(
                f"expected [batch, {self.config.input_channels}, h, w] (photo + reconstruction), "
                f"got {list(x.shape)}"
            )
        features = self.features(x)
        if not self.config.progressive:
            return torch.stack([head(features) for head in self.styles], dim=1)
        w0 = self.styles[0](features)
        return torch.stack([w0] + [w0 + head(features) for head in self.styles[1:]], dim=1)

    def extra_repr(self) -> str:
        c = self.config
        return f"{c.encoder_type}, n_styles={c.n_styles}, stages={c.stage_channels}, style_dim={c.style_dim}"


class BackboneEncoder(_RestyleEncoder):
    """ReStyle-pSp on IR-SE50: ``input_layer.{0,1,2}``, ``body.{0..23}``, ``styles.{0..n-1}``.

    Args:
        config: architecture; its ``encoder_type`` must be this class's name (the default config is the
            official FFHQ one).
    """

    def __init__(self, config: RestyleConfig | None = None):
        super().__init__(config or RestyleConfig(encoder_type=type(self).__name__))
        config = self.config
        self.input_layer = ir_se_input_layer(config.stem_channels, config.input_channels)
        self.body = ir_se_body(
            config.stem_channels, config.stage_channels, config.stage_units, config.se_reduction
        )
        self._add_styles()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.input_layer(x))


class ProgressiveBackboneEncoder(BackboneEncoder):
    """ReStyle-e4e on IR-SE50: the tensors of :class:`BackboneEncoder`; W+ entry ``i`` is ``w0 + delta_i``."""


class ResNetBackboneEncoder(_RestyleEncoder):
    """ReStyle-pSp on ResNet-34: ``conv1`` (7×7, stride 2), ``bn1``, ``relu`` (a PReLU), ``body.{0..15}``,
    ``styles.{0..n-1}``.

    Args:
        config: architecture; its ``encoder_type`` must be this class's name.
    """

    def __init__(self, config: RestyleConfig | None = None):
        super().__init__(config or RestyleConfig(encoder_type=type(self).__name__))
        config = self.config
        stem = config.stem_channels
        self.conv1 = nn.Conv2d(config.input_channels, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.PReLU(stem)
        self.body = resnet34_body(stem, config.stage_channels)
        self._add_styles()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.relu(self.bn1(self.conv1(x))))


class ResNetProgressiveBackboneEncoder(ResNetBackboneEncoder):
    """ReStyle-e4e on ResNet-34: the tensors of :class:`ResNetBackboneEncoder`; entry ``i`` is
    ``w0 + delta_i``."""


ENCODER_TYPES: dict[str, tuple[str, bool]] = {
    "BackboneEncoder": ("ir_se50", False),
    "ProgressiveBackboneEncoder": ("ir_se50", True),
    "ResNetBackboneEncoder": ("resnet34", False),
    "ResNetProgressiveBackboneEncoder": ("resnet34", True),
}
"""Official ``opts["encoder_type"]`` names → (body, progressive heads)."""

_ENCODER_CLASSES: dict[str, type[_RestyleEncoder]] = {
    cls.__name__: cls
    for cls in (
        BackboneEncoder,
        ProgressiveBackboneEncoder,
        ResNetBackboneEncoder,
        ResNetProgressiveBackboneEncoder,
    )
}
assert set(_ENCODER_CLASSES) == set(ENCODER_TYPES)


def build_encoder(config: RestyleConfig) -> _RestyleEncoder:
    """The encoder class ``config.encoder_type`` names, built for ``config``."""
    return _ENCODER_CLASSES[config.encoder_type](config)


# ------------------------------------------------------------------------------------------- inference


class RestyleInverter(nn.Module):
    """A ReStyle encoder with its decoder and ``latent_avg``: 256 px photos → W+ after N refinement steps.

    State dict: ``encoder.*`` and ``decoder.*`` (the names of the official checkpoint's ``state_dict``) and
    ``latent_avg``. The image of ``latent_avg`` (``average_image``) is computed once, here.

    Args:
        encoder: one of the four ReStyle encoders.
        decoder: the StyleGAN2 generator the encoder was trained with; run on W+ with its stored noise.
        latent_avg: ``[n_styles, style_dim]`` (or ``[style_dim]``, used for every entry): the code the first
            step corrects.

    Raises:
        ValueError: the decoder or ``latent_avg`` does not fit the encoder.
    """

    def __init__(self, encoder: _RestyleEncoder, decoder: Generator, latent_avg: torch.Tensor):
        super().__init__()
        config = encoder.config
        if (decoder.n_latent, decoder.style_dim) != (config.n_styles, config.style_dim):
            raise ValueError(
                f"the decoder takes W+ [{decoder.n_latent}, {decoder.style_dim}], the encoder predicts "
                f"[{config.n_styles}, {config.style_dim}]"
            )
        expected = (config.n_styles, config.style_dim)
        if latent_avg.ndim == 1 and latent_avg.shape[0] == config.style_dim:
            latent_avg = latent_avg.expand(expected)
        if tuple(latent_avg.shape) != expected:
            raise ValueError(f"latent_avg must have shape {list(expected)}, got {list(latent_avg.shape)}")
        self.encoder = encoder
        self.decoder = decoder
        self.register_buffer("latent_avg", latent_avg.detach().clone(memory_format=torch.contiguous_format))
        with torch.no_grad():
            average = self.reconstruct(self.latent_avg.unsqueeze(0))
        self.register_buffer("average_image", average, persistent=False)

    @property
    def config(self) -> RestyleConfig:
        return self.encoder.config

    def reconstruct(self, w_plus: torch.Tensor) -> torch.Tensor:
        """The image the encoder sees for a code: the decoder's image with its stored noise, pooled to 256.

        Args:
            w_plus: ``[batch, n_styles, style_dim]``.

        Returns:
            ``[batch, 3, 256, 256]`` in about [-1, 1] (only ``picture_rows`` of it for the cars encoders).
        """
        image = self.decoder.synthesis(w_plus)
        image = F.adaptive_avg_pool2d(image, (RESTYLE_INPUT_SIZE, RESTYLE_INPUT_SIZE))
        return self._picture(image)

    def _picture(self, image: torch.Tensor) -> torch.Tensor:
        rows = self.config.picture_rows
        return image if rows is None else image[:, :, rows[0] : rows[1]]

    def steps(self, x: torch.Tensor, iterations: int = DEFAULT_ITERATIONS) -> list[torch.Tensor]:
        """Every step's W+ for a batch of photos.

        Args:
            x: ``[batch, 3, 256, 256]`` RGB in [-1, 1] (see :func:`~jojogan.inversion.e4e.to_e4e_input`).
            iterations: refinement steps, >= 1.

        Returns:
            ``iterations`` tensors ``[batch, n_styles, style_dim]``; the first corrects ``latent_avg``, each
            later one the one before it.

        Raises:
            ValueError: ``x`` has another shape, or ``iterations`` is not a positive integer.
        """
        size = RESTYLE_INPUT_SIZE
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, size, size):
            raise ValueError(f"expected photos of shape [batch, 3, {size}, {size}], got {list(x.shape)}")
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
        photo = self._picture(x)
        reconstruction = self.average_image.expand(x.shape[0], -1, -1, -1)
        codes = []
        w_plus = self.latent_avg
        for step in range(iterations):
            w_plus = w_plus + self.encoder(torch.cat([photo, reconstruction], dim=1))
            codes.append(w_plus)
            if step + 1 < iterations:
                reconstruction = self.reconstruct(w_plus)
        return codes

    def forward(self, x: torch.Tensor, iterations: int = DEFAULT_ITERATIONS) -> torch.Tensor:
        """W+ ``[batch, n_styles, style_dim]`` after ``iterations`` steps (see :meth:`steps`)."""
        return self.steps(x, iterations)[-1]

    def invert(
        self, images: Image.Image | Sequence[Image.Image], iterations: int = DEFAULT_ITERATIONS
    ) -> torch.Tensor:
        """Encode aligned crops (no gradients): PIL images → W+ ``[batch, n_styles, style_dim]``.

        Raises:
            ValueError: no image, an image that is not square, or a bad ``iterations``.
            TypeError: an item is not a PIL image.
        """
        images = [images] if isinstance(images, Image.Image) else list(images)
        if not images:
            raise ValueError("invert needs at least one image, got an empty sequence")
        batch = torch.stack([to_e4e_input(image, RESTYLE_INPUT_SIZE) for image in images])
        with torch.no_grad():
            return self(batch.to(device=self.latent_avg.device, dtype=self.latent_avg.dtype), iterations)

    def extra_repr(self) -> str:
        c = self.config
        return f"{c.encoder_type}, output_size={c.output_size}, picture_rows={c.picture_rows}"


# --------------------------------------------------------------------------------------------- loading


def load_restyle(path: str | Path, device: str | torch.device = "cpu") -> RestyleInverter:
    """Load an official ReStyle checkpoint (``restyle_psp_ffhq_encode.pt``, ``restyle_e4e_*.pt``, ...).

    The file is read with ``torch.load(weights_only=True)`` (``argparse.Namespace`` options are accepted as
    plain data). ``opts["encoder_type"]`` picks the encoder, ``opts["output_size"]`` the decoder's size and
    so the number of W+ entries, ``opts["dataset_type"] == "cars_encode"`` the cars picture band; the widths
    are read from the tensors, whose names and shapes must then match that architecture exactly (the
    encoder's under ``encoder.``, the StyleGAN2 decoder's under ``decoder.``). Top-level entries other than
    ``state_dict``, ``latent_avg`` and ``opts`` (optimiser, discriminator) are ignored.

    Args:
        path: the checkpoint file.
        device: where the returned module lives.

    Returns:
        A :class:`RestyleInverter` in eval mode, parameters frozen.

    Raises:
        CheckpointError: the file is missing or unsafe, or is not a ReStyle checkpoint in the official layout
            (one line naming the first keys that differ).
    """
    path = Path(path)
    checkpoint = read_weights_file(path, safe_globals=(argparse.Namespace,))
    state = checkpoint.get("state_dict")
    if not isinstance(state, Mapping):
        found = ", ".join(map(repr, list(checkpoint)[:10])) or "nothing"
        raise CheckpointError(
            f"{path} is not a ReStyle checkpoint: no 'state_dict' dict (top-level keys: {found})"
        )
    opts = _read_opts(checkpoint.get("opts"), path)
    stray = [key for key in state if not key.startswith(("encoder.", "decoder."))]
    if stray:
        raise CheckpointError(
            f"{path} does not have the ReStyle layout: {len(stray)} 'state_dict' keys outside 'encoder.' and "
            f"'decoder.' ({', '.join(stray[:5])})"
        )
    encoder_state = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    config = config_from_checkpoint(opts, encoder_state)
    decoder_state = {k.removeprefix("decoder."): v for k, v in state.items() if k.startswith("decoder.")}
    generator = _decoder_config(decoder_state, config, path)
    with torch.device("meta"):
        encoder = build_encoder(config)
    problems = layout_problems(encoder_state, encoder.state_dict(), "encoder.")
    if problems:
        raise CheckpointError(
            f"{path} does not have the layout of an official {config.encoder_type}: " + "; ".join(problems)
        )
    expected = encoder.state_dict()
    encoder.load_state_dict(
        {k: encoder_state[k].to(v.dtype).contiguous() for k, v in expected.items()}, strict=True, assign=True
    )
    decoder = _load_decoder(decoder_state, generator, path)
    latent_avg = _read_latent_avg(checkpoint.get("latent_avg"), config, path)
    inverter = RestyleInverter(encoder, decoder, latent_avg)
    return inverter.requires_grad_(False).eval().to(device)


def _read_opts(opts: object, path: Path) -> dict:
    if isinstance(opts, argparse.Namespace):
        opts = vars(opts)
    if not isinstance(opts, Mapping):
        raise CheckpointError(
            f"{path} is not a ReStyle checkpoint: 'opts' should be a dict of training options, got "
            f"{type(opts).__name__}"
        )
    encoder_type = opts.get("encoder_type")
    if encoder_type not in ENCODER_TYPES:
        raise CheckpointError(
            f"{path} holds a {encoder_type!r} encoder; ReStyle encoders are {', '.join(ENCODER_TYPES)}"
        )
    if opts.get("input_nc") != 6:
        raise CheckpointError(
            f"{path}: a ReStyle encoder reads 6 channels (photo + reconstruction), its opts say input_nc="
            f"{opts.get('input_nc')!r}"
        )
    size = opts.get("output_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 8 or size & (size - 1):
        raise CheckpointError(f"{path}: opts 'output_size' must be a power of two >= 8, got {size!r}")
    return dict(opts)


def config_from_checkpoint(opts: Mapping[str, object], encoder_state: Mapping[str, object]) -> RestyleConfig:
    """The architecture a checkpoint describes: type and size from ``opts``, widths from the tensors.

    A width whose tensor is missing or odd keeps the official value, so the layout check that follows names
    the tensor rather than failing here.
    """
    config = RestyleConfig(
        encoder_type=str(opts["encoder_type"]),
        n_styles=2 * int(math.log2(int(opts["output_size"]))) - 2,
        picture_rows=CARS_PICTURE_ROWS if opts.get("dataset_type") == "cars_encode" else None,
    )
    resnet = config.backbone == "resnet34"
    stem = _width(encoder_state, "conv1.weight" if resnet else "input_layer.0.weight", 0)
    firsts = [sum(config.stage_units[:stage]) for stage in range(4)]
    key = "body.{}.conv1.weight" if resnet else "body.{}.res_layer.1.weight"
    stages = tuple(_width(encoder_state, key.format(first), 0) for first in firsts)
    style_dim = _width(encoder_state, "styles.0.linear.weight", 0)
    gate = _width(encoder_state, "body.0.res_layer.5.fc1.weight", 0)
    widths = {"stem_channels": stem, "style_dim": style_dim}
    if all(stages):
        widths["stage_channels"] = stages
        if gate and not resnet and stages[0] % gate == 0:
            widths["se_reduction"] = stages[0] // gate
    return replace(config, **{name: value for name, value in widths.items() if value})


def _width(state: Mapping[str, object], key: str, dim: int) -> int | None:
    value = state.get(key)
    return int(value.shape[dim]) if isinstance(value, torch.Tensor) and value.ndim > dim else None


def _decoder_config(found: Mapping[str, object], config: RestyleConfig, path: Path) -> dict:
    """The decoder's ``Generator`` arguments, read from its tensors and checked against the encoder's."""
    if not found:
        raise CheckpointError(
            f"{path} has no 'decoder.' tensors (the StyleGAN2 generator ReStyle refines with)"
        )
    generator = infer_generator_config(dict(found), f"{path.name} (decoder.)")
    if generator["size"] != config.output_size or generator["style_dim"] != config.style_dim:
        raise CheckpointError(
            f"{path}: the decoder is a {generator['size']} px generator with {generator['style_dim']}-d "
            f"styles, the encoder predicts W+ [{config.n_styles}, {config.style_dim}] for a "
            f"{config.output_size} px one (opts output_size)"
        )
    return generator


def _load_decoder(found: Mapping[str, torch.Tensor], generator: dict, path: Path) -> Generator:
    with torch.device("meta"):
        expected = Generator(**generator).state_dict()
    problems = layout_problems(found, expected, "decoder.")
    if problems:
        raise CheckpointError(
            f"{path} does not have the StyleGAN2 layout under 'decoder.': " + "; ".join(problems)
        )
    return generator_from_state(dict(found), f"{path.name} (decoder.)")


def _read_latent_avg(latent_avg: object, config: RestyleConfig, path: Path) -> torch.Tensor:
    shapes = [[config.n_styles, config.style_dim], [config.style_dim]]
    if not isinstance(latent_avg, torch.Tensor):
        raise CheckpointError(f"{path} has no 'latent_avg' tensor (expected shape {shapes[0]})")
    if list(latent_avg.shape) not in shapes:
        raise CheckpointError(
            f"{path}: 'latent_avg' has shape {list(latent_avg.shape)}, expected {shapes[0]} or {shapes[1]}"
        )
    if not torch.isfinite(latent_avg).all():
        raise CheckpointError(f"{path}: 'latent_avg' holds NaN or infinite values")
    return latent_avg.to(torch.float32)
