"""Settings of the JoJoGAN method: one frozen dataclass per stage and the official constants.

Every default reproduces the original JoJoGAN code: 300 iterations of Adam (lr 2e-3, betas (0, 0.99)) on
all generator parameters, style mixing with the W+ swap indices ``range(7, 18)`` at full strength, and an
L1 loss on discriminator blocks 1, 3, 4 and 5.

Two names are never mixed up: ``mix_strength`` is the training-time blend towards random style codes
(the original notebook's slider, which its code flipped with ``alpha = 1 - alpha``), and ``alpha`` is the
inference-time interpolation between the features of the original and the fine-tuned generator.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

from jojogan.cleanup.cleaners import CLEANERS
from jojogan.cleanup.restore import DEFAULT_FIDELITY
from jojogan.inversion.encoders import ENCODERS, INVERSION_DISTANCES, encoder_options
from jojogan.inversion.images import DEFAULT_MAX_PIXELS
from jojogan.op.precision import check_precision
from jojogan.stylegan2.config import D_FEATURE_BLOCKS, MEAN_LATENT_SAMPLES

if TYPE_CHECKING:
    import torch

__all__ = [
    "D_FEATURE_BLOCKS",
    "DEFAULT_SWAP_W_PLUS",
    "MASK_GROUPS",
    "MASK_MAPPING_KEYS",
    "MASK_PRESETS",
    "MEAN_LATENT_SAMPLES",
    "PRESERVE_COLOR_SWAP_W_PLUS",
    "REFERENCE_CODES",
    "AlphaSpec",
    "FACE_CHOICES",
    "SAMPLES",
    "SLIDER_STEPS",
    "STYLED_SUFFIX",
    "TILE",
    "TRUNCATION",
    "FinetuneConfig",
    "INVERSION_DISTANCES",
    "MaskSpec",
    "StylizeConfig",
    "check_alpha",
    "check_mask_spec",
]

DEFAULT_SWAP_W_PLUS: tuple[int, ...] = tuple(range(7, 18))
"""W+ indices the original code replaced by random latents: the "default" preset at 1024 px (the preset is
defined by resolution in :mod:`jojogan.mixing`; a test pins it to this list)."""

PRESERVE_COLOR_SWAP_W_PLUS: tuple[int, ...] = (9, 11, 15, 16, 17)
"""W+ indices the original code replaced with ``preserve_color=True``: "preserve-color" at 1024 px."""

MASK_PRESETS: tuple[str, ...] = ("default", "preserve-color", "preserve-colour")
"""Preset names of the training mask; they reproduce the original code's swap lists."""

MASK_GROUPS: tuple[str, ...] = ("colour", "color", "structure", "coarse", "middle", "fine", "all", "none")
"""Named groups of style layers (see :func:`jojogan.mixing.resolve_mask` for their exact contents)."""

MASK_MAPPING_KEYS: tuple[str, ...] = ("layers", "resolutions", "w_plus")
"""Keys a mapping mask spec may hold: S-layer indices, resolutions in px, W+ indices (all to swap)."""

REFERENCE_CODES: tuple[str, ...] = ("invert", "mean", "blend")
"""Where the reference's style code comes from: its inversion, the mean code, or a blend of the two."""

# torch.Tensor by name: the settings are read in processes that never import torch (the command line's
# help, batch drivers), and importing it only for this alias would cost each of them a CPU-second.
MaskSpec = Union[str, Sequence[int], Mapping[str, Sequence[int]], "torch.Tensor"]
"""A training mask: a preset or group name, S-layer indices to swap, a mapping with keys in
:data:`MASK_MAPPING_KEYS`, or a resolved boolean keep-mask ``[num_styles]``."""


def check_mask_spec(spec: object, name: str = "mask") -> None:
    """Check the form of a mask spec (the indices are range-checked once the model size is known).

    Raises:
        ValueError: ``spec`` is not one of the forms of :data:`MaskSpec`.
    """
    if isinstance(spec, str):
        if spec not in MASK_PRESETS + MASK_GROUPS:
            raise ValueError(f"{name} must be one of {', '.join(MASK_PRESETS + MASK_GROUPS)}, got {spec!r}")
        return
    if _is_tensor(spec):
        import torch  # already loaded: spec is a tensor

        if spec.dtype != torch.bool or spec.ndim != 1:
            raise ValueError(
                f"{name} given as a tensor must be a 1-D bool keep-mask [num_styles], "
                f"got dtype {spec.dtype} shape {tuple(spec.shape)}"
            )
        return
    if isinstance(spec, Mapping):
        unknown = [key for key in spec if key not in MASK_MAPPING_KEYS]
        if unknown or not spec:
            raise ValueError(
                f"{name} given as a mapping needs keys among {', '.join(MASK_MAPPING_KEYS)}, got {list(spec)}"
            )
        for key, values in spec.items():
            _check_int_list(values, f"{name}[{key!r}]")
        return
    _check_int_list(spec, name)


def _is_tensor(value: object) -> bool:
    """Whether ``value`` is a torch tensor, without importing torch: a process that has not imported torch
    holds no tensors."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _check_int_list(values: object, name: str) -> None:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{name} must be a sequence of integers, got {type(values).__name__}")
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int)]
    if bad:
        raise ValueError(
            f"{name} must hold integers (booleans are not indices; pass a bool tensor as a keep-mask), "
            f"got {bad[:3]}"
        )


def _freeze_mask_spec(spec: MaskSpec) -> MaskSpec:
    """Copy a mask spec so later edits of the caller's list or dict cannot change a frozen config."""
    if isinstance(spec, str):
        return spec
    if _is_tensor(spec):
        return spec.detach().clone()
    if isinstance(spec, Mapping):
        return {key: tuple(values) for key, values in spec.items()}
    return tuple(spec)


def _check_fraction(value: float, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


def _check_inversion_options(options: object) -> dict[str, object]:
    """``options`` checked (every key a setting some encoder declares, every value valid) and without the
    settings at their defaults, so that equal settings make equal configs (and equal batch fingerprints)
    whether a default was spelled out or not."""
    if not isinstance(options, Mapping):
        raise ValueError(f"inversion_options must be a mapping, got {type(options).__name__}")
    known = encoder_options()
    for key in options:
        if key not in known:
            raise ValueError(
                f"inversion_options has no setting {key!r}; the encoders read {', '.join(known) or 'none'}"
            )
    checked = {key: known[key].check(value) for key, value in options.items()}
    return {key: value for key, value in checked.items() if value != known[key].default}


def _check_count(value: int, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of :func:`jojogan.finetune.finetune`.

    Attributes:
        iterations: optimisation steps (each uses every reference once).
        lr: Adam learning rate.
        betas: Adam betas.
        mask: which style layers are replaced by random codes during training (:data:`MaskSpec`);
            "default" and "preserve-color" reproduce the original code.
        mix_strength: how far the swapped layers move towards the random codes, in [0, 1]; 1 replaces
            them (the original default), 0 keeps the reference's code everywhere.
        d_blocks: discriminator blocks whose features the loss compares.
        identity_weight: weight of the identity term (needs a face-recognition network); 0 disables it.
        seed: seeds the random codes and noise of every step.
        micro_batch: references per forward/backward pass; ``None`` chooses (one on the CPU; all on a
            GPU, halved whenever a step runs out of memory). The loss and gradients do not depend on it
            (gradients are accumulated).
        save_state_every: hand a resume state to ``on_resume_state`` every N steps; 0 never.
        preview_every: pass a preview image to the callback every N steps; 0 never.
        reference_code: "invert" trains towards the inverted reference codes, "mean" towards the mean
            style code (for references too far from faces to invert), "blend" takes the layers selected
            by ``blend_mask`` from the mean code and the others from the inversion.
        blend_mask: for "blend", the layers taken from the mean code (:data:`MaskSpec`); by default the
            colour layers, so pose and face structure come from the inversion.
        mean_code_samples: how many mapped z the mean code averages.
        precision: arithmetic of the convolutions and matrix products, one of
            :data:`jojogan.op.precision.PRECISIONS` ("auto": the device's measured default; "fp32" strict
            float32; "tf32"; "bf16" autocast with float32 parameters, styles, loss and optimiser). It is a
            speed setting: the loss of the first steps agrees closely across settings, the bits do not.
    """

    iterations: int = 300
    lr: float = 2e-3
    betas: tuple[float, float] = (0.0, 0.99)
    mask: MaskSpec = "default"
    mix_strength: float = 1.0
    d_blocks: tuple[int, ...] = D_FEATURE_BLOCKS
    identity_weight: float = 0.0
    seed: int = 0
    micro_batch: int | None = None
    save_state_every: int = 0
    preview_every: int = 0
    reference_code: str = "invert"
    blend_mask: MaskSpec = "colour"
    mean_code_samples: int = MEAN_LATENT_SAMPLES
    precision: str = "auto"

    def __post_init__(self) -> None:
        _check_count(self.iterations, "iterations", 0)
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not (0 < self.lr <= 1):
            # above 1 an Adam step moves each weight by more than its own scale (and past 3.4e38 the step
            # overflows float32): the run can only diverge
            raise ValueError(f"lr must be a number in (0, 1] (the recipe's is 0.002), got {self.lr!r}")
        betas = tuple(self.betas) if isinstance(self.betas, Sequence) else ()
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        object.__setattr__(self, "betas", (float(betas[0]), float(betas[1])))
        check_mask_spec(self.mask, "mask")
        object.__setattr__(self, "mask", _freeze_mask_spec(self.mask))
        _check_fraction(self.mix_strength, "mix_strength")
        if (
            isinstance(self.d_blocks, (str, bytes))
            or not isinstance(self.d_blocks, Sequence)
            or not self.d_blocks
        ):
            raise ValueError(f"d_blocks must be a non-empty sequence of block indices, got {self.d_blocks!r}")
        if not all(isinstance(b, int) and not isinstance(b, bool) and b >= 0 for b in self.d_blocks):
            raise ValueError(f"d_blocks must hold non-negative integers, got {self.d_blocks!r}")
        object.__setattr__(self, "d_blocks", tuple(self.d_blocks))
        if (
            isinstance(self.identity_weight, bool)
            or not isinstance(self.identity_weight, (int, float))
            or not (0 <= self.identity_weight < math.inf)
        ):
            raise ValueError(f"identity_weight must be a finite number >= 0, got {self.identity_weight!r}")
        _check_count(self.seed, "seed", 0)
        if self.micro_batch is not None:
            _check_count(self.micro_batch, "micro_batch", 1)
        _check_count(self.save_state_every, "save_state_every", 0)
        _check_count(self.preview_every, "preview_every", 0)
        if self.reference_code not in REFERENCE_CODES:
            raise ValueError(
                f"reference_code must be one of {', '.join(REFERENCE_CODES)}, got {self.reference_code!r}"
            )
        check_mask_spec(self.blend_mask, "blend_mask")
        object.__setattr__(self, "blend_mask", _freeze_mask_spec(self.blend_mask))
        _check_count(self.mean_code_samples, "mean_code_samples", 1)
        check_precision(self.precision)


SLIDER_STEPS = 5
"""α values of an alpha strip by default (``jojogan slider``, the UI)."""

TILE = 256
"""Side of one picture in a strip or grid, in px (``slider``, ``sample``, the UI)."""

SAMPLES = 4
"""Random pictures shown in a style by default (``jojogan sample``, the UI)."""

TRUNCATION = 0.7
"""How far random samples stay from the mean latent (the original notebook's ψ)."""

STYLED_SUFFIX = "_styled.png"
"""What a stylized photo's file name appends to the input's stem when results go into a folder."""

AlphaSpec = float | Sequence[float]
"""Inference-time interpolation: one number, or one per style layer (``num_styles`` of them)."""


def check_alpha(alpha: AlphaSpec, num_styles: int | None = None) -> float | tuple[float, ...]:
    """Validate ``alpha`` and return it as a float or a tuple of floats.

    Args:
        alpha: a number in [0, 1], or a sequence of them, one per style layer.
        num_styles: the number of style layers a sequence must have (``None``: not checked).

    Raises:
        ValueError: a value outside [0, 1] or not a number, or a sequence of the wrong length.
    """
    if _is_tensor(alpha):
        alpha = alpha.tolist()
    if isinstance(alpha, (int, float)) and not isinstance(alpha, bool):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        return float(alpha)
    if isinstance(alpha, (str, bytes)) or not isinstance(alpha, Sequence):
        raise ValueError(f"alpha must be a number or a sequence of numbers, got {type(alpha).__name__}")
    values = tuple(alpha)
    if num_styles is not None and len(values) != num_styles:
        raise ValueError(
            f"per-layer alpha needs {num_styles} values (one per style layer), got {len(values)}"
        )
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0]
    if bad or not values:
        raise ValueError(f"per-layer alpha values must be numbers in [0, 1], got {bad[:3] or 'none'}")
    return tuple(float(v) for v in values)


FACE_CHOICES: tuple[str, ...] = ("largest", "all")
"""Which faces of a photo are stylized, besides an index from the left (negative: from the right)."""


@dataclass(frozen=True)
class StylizeConfig:
    """Every setting of stylizing one photo: the one owner of their names, defaults and rules.

    :meth:`jojogan.api.JoJoGAN.stylize` and its siblings take one (keyword arguments of the same names
    are turned into one at the door), batch settings hold one, and the command-line options and the web
    UI's controls are built from its fields. It is validated once, here.

    Attributes:
        alpha: 0 = the original face, 1 = fully stylized; or one value per style layer.
        inversion: how a face becomes a W+ code, a name of :data:`jojogan.inversion.encoders.ENCODERS`;
            ``None``: the base's domain profile chooses (e4e for FFHQ faces).
        inversion_steps: optimisation steps for ``inversion="optimize"`` (``None``: its default).
        distance: what optimisation inversion minimises (:data:`INVERSION_DISTANCES`).
        aligned: the inputs are already aligned crops (no detection).
        face: ``"largest"``, ``"all"`` (every face, each pasted back) or an index from the left.
        paste: blend the result back into the photo (a feathered mask from the face's landmarks).
        match_colour: with ``paste``, give the face the photo's colour and lighting.
        cleanup: a name of :data:`jojogan.cleanup.CLEANERS` run on the stylized face, or ``None``.
        fidelity: the cleaner's fidelity ``w`` in [0, 1] (0: most restoration, 1: most faithful).
        restore_input: run the cleaner on the aligned input face before inversion.
        identity: measure how much of the person survived with this face-recognition network (a name of
            :data:`jojogan.identity.RECOGNIZERS`, or a loaded recognizer); ``"auto"``: the default network
            when the domain is faces; ``None``: not measured.
        identity_weights: the recognizer's weights file (``None``: the cache or the package).
        max_pixels: refuse larger images before decoding them (``None``: no limit).
        inversion_options: encoder-specific settings by name, each declared by an encoder
            (:class:`~jojogan.inversion.encoders.EncoderOption`, e.g. ReStyle's ``iterations``); a setting
            the chosen encoder does not read is ignored.
    """

    alpha: AlphaSpec = 1.0
    inversion: str | None = None
    inversion_steps: int | None = None
    distance: str = INVERSION_DISTANCES[0]
    aligned: bool = False
    face: str | int = "largest"
    paste: bool = False
    match_colour: bool = False
    cleanup: str | None = None
    fidelity: float = DEFAULT_FIDELITY
    restore_input: bool = False
    identity: object = None
    identity_weights: Path | None = None
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    inversion_options: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", check_alpha(self.alpha))
        if self.inversion is not None and self.inversion not in ENCODERS:
            raise ValueError(f"inversion must be one of {', '.join(ENCODERS)}, got {self.inversion!r}")
        if self.inversion_steps is not None:
            _check_count(self.inversion_steps, "inversion_steps", 3)
        if self.distance not in INVERSION_DISTANCES:
            raise ValueError(
                f"distance must be one of {', '.join(INVERSION_DISTANCES)}, got {self.distance!r}"
            )
        self._check_face()
        if self.cleanup == "none":
            object.__setattr__(self, "cleanup", None)
        if self.cleanup is not None and self.cleanup not in CLEANERS:
            raise ValueError(f"cleanup must be None or one of {', '.join(CLEANERS)}, got {self.cleanup!r}")
        _check_fraction(self.fidelity, "fidelity")
        if self.paste and self.aligned:
            raise ValueError("paste needs the photo's alignment, which aligned=True inputs do not have")
        if self.match_colour and not self.paste:
            raise ValueError("match_colour applies to pasted results; set paste=True")
        if self.max_pixels is not None:
            _check_count(self.max_pixels, "max_pixels", 1)
        if self.identity_weights is not None:
            object.__setattr__(self, "identity_weights", Path(self.identity_weights))
        object.__setattr__(self, "inversion_options", _check_inversion_options(self.inversion_options))

    def _check_face(self) -> None:
        face = self.face
        if isinstance(face, bool) or not (face in FACE_CHOICES or isinstance(face, int)):
            raise ValueError(f"face must be {' or '.join(map(repr, FACE_CHOICES))} or an index, got {face!r}")

    @property
    def cleaner_runs(self) -> bool:
        """A cleaner is needed (cleanup of the result or restoration of the input)."""
        return self.cleanup is not None or self.restore_input

    @property
    def cleaner(self) -> str | None:
        """The cleaner the settings use: ``cleanup``'s, else the first (for ``restore_input``)."""
        if self.cleanup is not None:
            return self.cleanup
        return next(iter(CLEANERS)) if self.restore_input else None
