"""The table of encoders: every way a face (or any picture) becomes a W+ code, behind one protocol.

An encoder is a class with three facts and two methods::

    class MyEncoder(Encoder):
        name = "my-encoder"          # what --inversion and StylizeConfig.inversion say
        weights = "my-weights-row"   # the weights-registry row of its file, or None
        domains = ("ffhq",)          # the domain profiles it was trained for, or None for any

        def __init__(self, context, path): ...        # load the file (``path``, resolved by the caller)
        def invert(self, faces, request): ...         # aligned crops -> W+ [n, n_latent, style_dim]

and one line, :func:`register_encoder`, puts it in :data:`ENCODERS`. Optionally, ``options`` declares the
settings it reads from ``request.options`` (:class:`EncoderOption`: the front ends offer each one, e.g.
``--restyle-iterations``) and :meth:`Encoder.weights_for` names another file per domain profile.

The pipeline resolves the weights (download, verify), builds the encoder once and keeps it; the front ends
list :data:`ENCODERS` for their choices. No front end names a concrete encoder.

This module sits in the ``inversion`` layer: it knows the generator and the images, not the weights cache
or the CLI (those are :mod:`jojogan.api`'s).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from jojogan.errors import JojoganError

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from torch import nn

# torch and the networks are imported where an encoder runs: the settings and the front ends read this
# table (names and options) in processes that never invert a face, and torch costs them a CPU-second.

__all__ = [
    "ENCODERS",
    "INVERSION_DISTANCES",
    "RESTYLE_ITERATIONS",
    "E4EEncoder",
    "Encoder",
    "EncoderContext",
    "EncoderOption",
    "InversionRequest",
    "OptimizeEncoder",
    "RestyleE4EEncoder",
    "RestylePSPEncoder",
    "check_codes",
    "encoder_names",
    "encoder_options",
    "register_encoder",
]

INVERSION_DISTANCES: tuple[str, ...] = ("discriminator", "lpips")
"""What optimisation inversion minimises: the base discriminator's features, or LPIPS (VGG)."""


@dataclass
class EncoderContext:
    """What an encoder may use of the pipeline that holds it.

    Attributes:
        generator: the base generator (its ``n_latent``, ``style_dim`` and ``size`` are the target).
        discriminator: the base discriminator, or ``None`` when the checkpoint has none.
        latent_avg: the base's mean latent ``[style_dim]``, or ``None``.
        device: where the models run.
        component: loads another component of the pipeline by name on first use (``"lpips"``).
    """

    generator: nn.Module
    discriminator: nn.Module | None
    latent_avg: torch.Tensor | None
    device: torch.device
    component: Callable[[str], nn.Module]


@dataclass(frozen=True)
class InversionRequest:
    """How one call inverts.

    Attributes:
        steps: optimisation steps in total (``None``: the encoder's default).
        seed: seeds anything random.
        show_progress: a progress bar; a string labels it (e.g. the image's name).
        distance: what optimisation minimises, one of :data:`INVERSION_DISTANCES`.
        options: encoder-specific settings by name (e.g. ``{"iterations": 5}``).
    """

    steps: int | None = None
    seed: int = 0
    show_progress: bool | str = False
    distance: str = INVERSION_DISTANCES[0]
    options: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class EncoderOption:
    """An integer setting an encoder reads from ``InversionRequest.options``.

    Attributes:
        key: its name in ``InversionRequest.options`` and ``StylizeConfig.inversion_options``.
        flag: the command-line option that sets it, without the dashes.
        default: its value when none is given.
        minimum: the smallest value allowed.
        help: what it does, for the front ends.
    """

    key: str
    flag: str
    default: int
    minimum: int
    help: str

    def check(self, value: object) -> int:
        """``value`` if it is an integer >= ``minimum``; else ``ValueError`` naming the setting."""
        if isinstance(value, bool) or not isinstance(value, int) or value < self.minimum:
            raise ValueError(f"{self.key} must be an integer >= {self.minimum}, got {value!r}")
        return value

    def value(self, options: Mapping[str, object]) -> int:
        """Its value in ``options`` (checked), or the default."""
        return self.check(options.get(self.key, self.default))


class Encoder:
    """Base of every encoder: see the module's docstring for the protocol."""

    name: ClassVar[str]
    weights: ClassVar[str | None] = None
    domains: ClassVar[tuple[str, ...] | None] = None
    options: ClassVar[tuple[EncoderOption, ...]] = ()
    """The settings it reads from ``request.options``."""
    batched: ClassVar[bool] = True
    """Several faces may be inverted in one call without changing any face's code."""

    @classmethod
    def weights_for(cls, profile: str) -> tuple[str, ...]:
        """The weights-registry rows of its file for a domain profile, in order of preference (the first
        one given as a path or already cached is used, else the first that can be downloaded)."""
        return (cls.weights,) if cls.weights is not None else ()

    def __init__(self, context: EncoderContext, path: Path | None = None):
        self.context = context

    def invert(self, faces: Sequence[Image.Image], request: InversionRequest) -> torch.Tensor:
        """W+ codes ``[n, n_latent, style_dim]`` of aligned square crops, on the pipeline's device."""
        raise NotImplementedError

    def to(self, device: torch.device) -> Encoder:
        """Follow the pipeline to another device (modules an encoder holds move with it)."""
        from torch import nn

        for value in vars(self).values():
            if isinstance(value, nn.Module):
                value.to(device)
        return self


ENCODERS: dict[str, type[Encoder]] = {}
"""Every encoder by name, in the order they were registered (the first is the default)."""


def register_encoder(cls: type[Encoder]) -> type[Encoder]:
    """Add an encoder to :data:`ENCODERS` (usable as a class decorator)."""
    ENCODERS[cls.name] = cls
    return cls


def encoder_names() -> tuple[str, ...]:
    """The choices of ``--inversion``."""
    return tuple(ENCODERS)


def encoder_options() -> dict[str, EncoderOption]:
    """Every setting the encoders declare, by key (encoders that share a setting share its object)."""
    found: dict[str, EncoderOption] = {}
    for cls in ENCODERS.values():
        for option in cls.options:
            if found.setdefault(option.key, option) is not option:
                raise AssertionError(f"two encoder settings are called {option.key!r}")
    return found


def check_codes(codes: torch.Tensor, method: str) -> torch.Tensor:
    """Refuse NaN or infinite codes in one line (damaged weights, invalid pixels)."""
    import torch

    if not torch.isfinite(codes).all():
        raise JojoganError(
            f"{method} inversion produced NaN or infinite codes; the weights file may be damaged "
            "(re-download it) or the image may hold invalid values"
        )
    return codes


@register_encoder
class E4EEncoder(Encoder):
    """encoder4editing (Tov et al. 2021): one forward pass of an IR-SE50 encoder, FFHQ faces only."""

    name = "e4e"
    weights = "e4e"
    domains = ("ffhq",)

    def __init__(self, context: EncoderContext, path: Path | None = None):
        from jojogan.inversion.e4e import E4EConfig, load_e4e

        super().__init__(context)
        # The official architecture fixes the codes' shape (the loader refuses any other file), so a base
        # that cannot take them is refused before the ~1 GB encoder is read and materialised.
        expected = E4EConfig()
        n_latent, style_dim = expected.n_styles, expected.style_dim
        generator = context.generator
        if (n_latent, style_dim) != (generator.n_latent, generator.style_dim):
            raise JojoganError(
                f"the e4e encoder produces W+ codes [{n_latent}, {style_dim}] but the base generator "
                f"needs [{generator.n_latent}, {generator.style_dim}]; use the FFHQ 1024 px "
                "base or --inversion optimize"
            )
        self.model = load_e4e(path, config=expected, device=context.device)

    def invert(self, faces: Sequence[Image.Image], request: InversionRequest) -> torch.Tensor:
        return check_codes(self.model.invert(list(faces)).to(self.context.device), "e4e")


def _check_code_shape(n_latent: int, style_dim: int, generator: nn.Module, name: str) -> None:
    if (n_latent, style_dim) != (generator.n_latent, generator.style_dim):
        raise JojoganError(
            f"the {name} encoder produces W+ codes [{n_latent}, {style_dim}] but the base generator needs "
            f"[{generator.n_latent}, {generator.style_dim}]; use the base it was trained for or "
            "--inversion optimize"
        )


@register_encoder
class OptimizeEncoder(Encoder):
    """Optimisation against the generator itself (any domain, no file of its own; slower)."""

    name = "optimize"
    # its random noise is drawn per batch, so a face's code would depend on the faces beside it
    batched = False

    def invert(self, faces: Sequence[Image.Image], request: InversionRequest) -> torch.Tensor:
        import torch

        from jojogan.inversion.images import from_pil
        from jojogan.inversion.project import ProjectionConfig, project

        context = self.context
        if request.distance not in INVERSION_DISTANCES:
            raise ValueError(f"distance must be one of {INVERSION_DISTANCES}, got {request.distance!r}")
        if context.discriminator is None and request.distance != "lpips":
            raise JojoganError(
                "optimisation inversion measures distance with the discriminator, but the base checkpoint "
                "has none ('d'); use the official stylegan2-ffhq-config-f.pt, --distance lpips or "
                "--inversion e4e"
            )
        size = context.generator.size
        target = torch.cat([from_pil(face, size) for face in faces]).to(context.device)
        result = project(
            context.generator,
            target,
            ProjectionConfig.from_total_steps(request.steps, seed=request.seed),
            lpips=context.component("lpips") if request.distance == "lpips" else None,
            discriminator=context.discriminator,
            latent_avg=context.latent_avg,
            show_progress=request.show_progress,
        )
        return check_codes(result.w_plus.detach(), "optimisation")


RESTYLE_ITERATIONS = EncoderOption(
    "iterations",
    "restyle-iterations",
    5,
    1,
    "ReStyle refinement steps (each runs its encoder and its decoder once; the paper uses 5 for photos).",
)


class _RestyleEncoder(Encoder):
    """ReStyle (Alaluf et al. 2021): W+ refined over ``iterations`` steps, each seeing the photo and the
    current reconstruction (:mod:`jojogan.inversion.restyle`)."""

    options = (RESTYLE_ITERATIONS,)
    rows: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    """Domain profile → weights rows of its file, in order of preference."""

    @classmethod
    def weights_for(cls, profile: str) -> tuple[str, ...]:
        return cls.rows.get(profile, ())

    def __init__(self, context: EncoderContext, path: Path | None = None):
        from jojogan.inversion.restyle import load_restyle

        super().__init__(context)
        self.model = load_restyle(path, device=context.device)
        _check_code_shape(*self.model.latent_avg.shape[-2:], context.generator, self.name)

    def invert(self, faces: Sequence[Image.Image], request: InversionRequest) -> torch.Tensor:
        iterations = RESTYLE_ITERATIONS.value(request.options)
        return check_codes(self.model.invert(list(faces), iterations).to(self.context.device), self.name)


@register_encoder
class RestylePSPEncoder(_RestyleEncoder):
    """ReStyle over pSp: every W+ entry predicted freely (the paper's best reconstructions)."""

    name = "restyle-psp"
    weights = "restyle-psp"
    rows = {
        "ffhq": ("restyle-psp",),
        "lsun-car": ("restyle-psp-cars",),
        "lsun-church": ("restyle-psp-church",),
        "afhq-wild": ("restyle-psp-afhq-wild",),
    }
    domains = tuple(rows)


@register_encoder
class RestyleE4EEncoder(_RestyleEncoder):
    """ReStyle over e4e: W+ entries kept near one w (more editable codes)."""

    name = "restyle-e4e"
    weights = "restyle-e4e"
    # The authors' FFHQ file first; else the third-party Hugging Face copy, which can be downloaded.
    rows = {
        "ffhq": ("restyle-e4e", "restyle-e4e-hf"),
        "lsun-car": ("restyle-e4e-cars",),
        "lsun-church": ("restyle-e4e-church",),
        "lsun-horse": ("restyle-e4e-horse",),
        "afhq-wild": ("restyle-e4e-afhq-wild",),
    }
    domains = tuple(rows)
