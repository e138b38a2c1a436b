"""Options shared by the commands, derived from the configs so that defaults and choices cannot drift.

Every option is validated by its type while the command line is parsed, before any model loads: finite
floats (:class:`FiniteFloat`), 64-bit seeds (:data:`SEED`), devices that exist here (:class:`Device`),
output suffixes we can write (:class:`OutputFile`).

A setting that a config owns (:class:`~jojogan.config.FinetuneConfig`) becomes an option through
:func:`config_options`: its default is read from the dataclass field, its name is the field's name with
dashes, and the command receives the values back as one config (:func:`config_from_options`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import click

from jojogan.config import CLEANUPS, INVERSION_DISTANCES, INVERSIONS
from jojogan.fileio import (
    claim_outputs,  # noqa: F401 - the one overwrite rule, re-exported to the commands
    not_a_file,
)
from jojogan.inversion.images import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)


class FiniteFloat(click.FloatRange):
    """A float range that also refuses NaN and infinities (``FloatRange`` lets NaN through)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


SEED = click.IntRange(0, 2**64 - 1)
"""Seeds: what ``torch.Generator.manual_seed`` accepts (non-negative, 64 bits)."""


class Device(click.ParamType):
    """``auto`` or a device that exists on this machine (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""

    name = "device"

    def convert(self, value, param, ctx):
        import torch

        if value == "auto":
            return value
        try:
            device = torch.device(value)
        except (RuntimeError, ValueError):
            self.fail(f"{value!r} is not a device; use auto, cpu, cuda, cuda:N or mps", param, ctx)
        if device.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0:
                self.fail(
                    f"{value!r}: this torch build or machine has no CUDA device; use cpu or auto", param, ctx
                )
            if device.index is not None and device.index >= count:
                self.fail(
                    f"{value!r}: there are {count} CUDA devices (cuda:0 to cuda:{count - 1})", param, ctx
                )
        elif device.type == "mps":
            mps = getattr(torch.backends, "mps", None)
            if mps is None or not mps.is_available():
                self.fail(f"{value!r}: Apple MPS is not available here; use cpu or auto", param, ctx)
        elif device.type != "cpu":
            self.fail(f"{value!r}: jojogan runs on cpu, cuda or mps", param, ctx)
        return value


class OutputFile(click.Path):
    """An output file whose suffix names a format we can write; a folder too when ``folder_ok``.

    Args:
        suffixes: the accepted suffixes, or ``None`` for every image format Pillow can write.
        folder_ok: a path without suffix is a folder (for commands with several outputs).
    """

    def __init__(self, suffixes: tuple[str, ...] | None = None, folder_ok: bool = False):
        super().__init__(dir_okay=folder_ok, path_type=Path)
        self.suffixes = suffixes
        self.folder_ok = folder_ok

    def convert(self, value, param, ctx):
        path = super().convert(value, param, ctx)
        suffix = path.suffix.lower()
        if not suffix and self.folder_ok:
            return path
        allowed = self.suffixes or _image_suffixes()
        if suffix not in allowed:
            shown = (
                ", ".join(allowed) if self.suffixes else "an image suffix Pillow can write (.png, .jpg, ...)"
            )
            what = "a file name ending in " + shown + (" (or a folder)" if self.folder_ok else "")
            self.fail(f"{str(value)!r}: expected {what}", param, ctx)
        return path


@functools.cache
def _image_suffixes() -> tuple[str, ...]:
    from PIL import Image

    Image.init()
    return tuple(sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE))


def stack(*decorators: Callable) -> Callable:
    """Apply option decorators in the order they are listed (first listed = first in ``--help``)."""

    def apply(command: Callable) -> Callable:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


def field_default(config: type, name: str) -> object:
    """The default of a config dataclass field."""
    for item in dataclasses.fields(config):
        if item.name == name:
            if item.default is not dataclasses.MISSING:
                return item.default
            return item.default_factory()  # type: ignore[misc]
    raise KeyError(f"{config.__name__} has no field {name!r}")


def config_options(
    config: type, specs: dict[str, dict], defaults: dict[str, object] | None = None
) -> Callable:
    """Options for fields of a config dataclass, in the order of ``specs``.

    Args:
        config: the dataclass (e.g. ``FinetuneConfig``).
        specs: field name → keyword arguments of ``click.option`` (``type``, ``help``, and ``flags`` to
            name the option otherwise than ``--field-name``); the default comes from the field.
        defaults: field name → a default that differs from the config's on the command line (e.g. the
            CLI saves a resume state every 25 steps, where the library saves none unless asked).
    """
    defaults = defaults or {}
    options = []
    for name, spec in specs.items():
        default = defaults.get(name, field_default(config, name))
        spec = dict(spec)
        flags = spec.pop("flags", (f"--{name.replace('_', '-')}",))
        options.append(click.option(*flags, name, default=default, show_default=default is not None, **spec))
    return stack(*options)


def config_from_options(config: type, values: dict) -> object:
    """Build ``config`` from the command's keyword arguments, taking (and removing) its fields."""
    names = {item.name for item in dataclasses.fields(config)}
    settings = {name: values.pop(name) for name in list(values) if name in names}
    try:
        return config(**settings)
    except ValueError as error:
        raise click.UsageError(str(error)) from error


_base_option = click.option(
    "--base",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="StyleGAN2 checkpoint, official layout (default: stylegan2-ffhq-config-f.pt in the cache).",
)
_device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    type=Device(),
    help="cuda, cuda:1, mps, cpu, or auto (CUDA, then MPS, then CPU).",
)


def base_options(command: Callable) -> Callable:
    """--base/--device, for commands that never invert a face (no --e4e to offer)."""
    return stack(_base_option, _device_option)(command)


def model_options(command: Callable) -> Callable:
    """--base/--e4e/--device, shared by every command that loads models."""
    return stack(
        _base_option,
        click.option(
            "--e4e",
            "e4e",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="e4e_ffhq_encode.pt (default: the weights cache).",
        ),
        _device_option,
    )(command)


max_pixels_option = click.option(
    "--max-pixels",
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    type=click.IntRange(min=1),
    help="Refuse larger images (decompression-bomb guard).",
)


def output_file_option(description: str, suffixes: tuple[str, ...] | None = None, folder_ok: bool = False):
    """The required ``-o/--output``; its suffix is checked at parse time (see :class:`OutputFile`)."""
    return click.option(
        "-o", "--output", required=True, type=OutputFile(suffixes, folder_ok), help=description
    )


def finishing_options(command: Callable) -> Callable:
    """--paste, --match-colour, --cleanup, --fidelity, --restore-input and --codeformer: what happens to a
    face around the generator (stylize and batch)."""
    from jojogan.cleanup.restore import DEFAULT_FIDELITY

    return stack(
        click.option(
            "--paste",
            is_flag=True,
            help="Blend the stylized face back into the photo (feathered landmark mask).",
        ),
        click.option(
            "--match-colour", is_flag=True, help="With --paste: take the photo's colour and lighting."
        ),
        click.option(
            "--cleanup",
            type=click.Choice(["none", *CLEANUPS]),
            default="none",
            show_default=True,
            help="Clean the stylized face up (CodeFormer).",
        ),
        click.option(
            "--fidelity",
            type=FiniteFloat(0, 1),
            default=DEFAULT_FIDELITY,
            show_default=True,
            help="CodeFormer's w: 0 restores most, 1 keeps most of its input.",
        ),
        click.option("--restore-input", is_flag=True, help="CodeFormer on the input face before inversion."),
        click.option(
            "--codeformer",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None,
            help="codeformer.pth (default: the weights cache, downloaded on first use).",
        ),
    )(command)


no_identity_option = click.option(
    "--no-identity", is_flag=True, help="Do not measure how much of the person survived the style."
)


def _remember(ctx: click.Context, param: click.Parameter, value):
    """Keep an option the pipeline reads (not the command) in the context's meta, as ``jojogan.NAME``."""
    ctx.meta[f"jojogan.{param.name}"] = value
    return value


def inversion_options(command: Callable) -> Callable:
    """--aligned, --inversion, --inversion-steps and --max-pixels: how inputs become W+ codes."""
    return stack(
        click.option(
            "--aligned", is_flag=True, help="Inputs are already FFHQ-aligned face crops: skip detection."
        ),
        click.option(
            "--inversion",
            type=click.Choice(INVERSIONS),
            default=INVERSIONS[0],
            show_default=True,
            help="How faces become W+ codes: e4e (needs its weights) or optimize (StyleGAN2 file only).",
        ),
        click.option(
            "--distance",
            type=click.Choice(INVERSION_DISTANCES),
            default=INVERSION_DISTANCES[0],
            show_default=True,
            expose_value=False,  # the pipeline reads it (see pipeline()), the commands need not
            callback=_remember,
            help="What --inversion optimize minimises: the base discriminator's features, or LPIPS (VGG; "
            "needs the jojogan[lpips] extra, the backbone downloads on first use).",
        ),
        click.option(
            "--inversion-steps",
            type=click.IntRange(min=3),
            default=None,
            help="Optimisation steps for --inversion optimize (default 300: 200 in W, 100 in W+).",
        ),
        max_pixels_option,
    )(command)


def alpha_option(help_text: str) -> Callable:
    return click.option("--alpha", default="1.0", show_default=True, callback=_parse_alpha, help=help_text)


def _parse_alpha(ctx: click.Context, param: click.Parameter, text: str):
    """``0.7`` or a comma-separated list with one value per style layer."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as error:
        raise click.BadParameter(
            f"alpha must be a number or comma-separated numbers, got {text!r}"
        ) from error
    if any(not 0.0 <= v <= 1.0 for v in values):
        raise click.BadParameter(f"alpha values must lie in [0, 1], got {text!r}")
    return values[0] if len(values) == 1 else values


def check_alpha_length(alpha, generator) -> None:
    """A per-layer ``--alpha`` list needs one value per style layer of the generator; checked before any
    face is inverted."""
    if isinstance(alpha, list) and len(alpha) != generator.num_styles:
        raise click.BadParameter(
            f"a per-layer list needs {generator.num_styles} values (one per style layer of this "
            f"{generator.size} px generator), got {len(alpha)}",
            param_hint="'--alpha'",
        )


def face_option(choices_text: str, allow_all: bool) -> Callable:
    def parse(ctx: click.Context, param: click.Parameter, text: str) -> str | int:
        if text == "largest" or (allow_all and text == "all"):
            return text
        try:
            index = int(text)
        except ValueError as error:
            raise click.BadParameter(f"--face takes {choices_text}, got {text!r}") from error
        if index < 0:  # counted from the left: 0 is the leftmost face
            raise click.BadParameter(f"--face takes {choices_text} (0 is the leftmost), got {text!r}")
        return index

    return click.option(
        "--face", default="largest", show_default=True, callback=parse, help=f"{choices_text}."
    )


def pipeline(base, e4e=None, device="auto", max_pixels=None):
    """The API pipeline for one command; the command is one job of the CPU memory policy."""
    from jojogan.api import JoJoGAN
    from jojogan.op.memory import cpu_memory_reuse
    from jojogan.style_file import is_style_file

    if base is not None and is_style_file(base):
        raise click.ClickException(
            f"--base {base} is a jojogan style file (a fine-tuned generator); --base takes the StyleGAN2 "
            "checkpoint a style is made from, and a style file goes to --style"
        )
    distance = click.get_current_context().meta.get("jojogan.distance", INVERSION_DISTANCES[0])
    if distance == "lpips":
        from jojogan.perceptual import lpips_available

        if not lpips_available("vgg"):
            raise click.ClickException(
                "--distance lpips needs the 'lpips' package (pip install 'jojogan[lpips]') and torchvision's "
                "VGG16 weights in the weights cache or a network to fetch them "
                "(`jojogan weights download vgg16`)"
            )
    log.debug("loading the base %s (e4e: %s) on device %s", base or "from the cache", e4e or "cache", device)
    started = time.perf_counter()
    pipe = JoJoGAN.from_pretrained(base=base, e4e=e4e, device=device)
    log.debug(
        "loaded a %d px generator on %s in %.2f s", pipe.size, pipe.device, time.perf_counter() - started
    )
    pipe.max_pixels = max_pixels
    pipe.inversion_distance = distance
    # a command is one job: freed CPU memory stays mapped across all of its inputs (jojogan.op.memory)
    click.get_current_context().with_resource(cpu_memory_reuse(pipe.device))
    return pipe


# ---------------------------------------------------------------------------------------------- outputs
force_option = click.option(
    "--force",
    is_flag=True,
    help="Replace existing output files (never an input); finetune: also start over a resume state.",
)


def unique_stems(inputs) -> list[str]:
    """One output name stem per input: the file's stem, with ``_2``, ``_3``, ... added to a stem already
    taken by an earlier input (``a/face.png`` and ``b/face.png`` become ``face`` and ``face_2``)."""
    taken: set[str] = set()
    stems = []
    for path in map(Path, inputs):
        stem, n = path.stem, 1
        # case-folded: on case-insensitive file systems Face.png and face.png are one file
        while stem.casefold() in taken:
            n += 1
            stem = f"{path.stem}_{n}"
        taken.add(stem.casefold())
        stems.append(stem)
    return stems


def check_inputs_exist(*paths) -> None:
    """Refuse a missing input file in one line, before any model loads (``None`` entries are skipped)."""
    for path in paths:
        if path is not None and (what := not_a_file(path)) is not None:  # a FIFO or /dev/zero too
            raise click.ClickException(f"{path} {what}; expected an existing file")
