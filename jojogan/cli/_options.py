"""Options shared by the commands, derived from the configs so that defaults and choices cannot drift.

Every option is validated by its type while the command line is parsed, before any model loads: finite
floats (:class:`FiniteFloat`), 64-bit seeds (:data:`SEED`), devices that exist here (:class:`Device`),
output suffixes we can write (:class:`OutputFile`).

A setting that a config owns becomes an option from the config: :class:`~jojogan.config.FinetuneConfig`'s
through :func:`config_options`, :class:`~jojogan.config.StylizeConfig`'s through :func:`stylize_options`.
The default is read from the dataclass field, the name is the field's name with dashes, and the command
receives the values back as one config (:func:`config_from_options`, :func:`stylize_config`).
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

from jojogan.config import FACE_CHOICES, INVERSION_DISTANCES, StylizeConfig
from jojogan.domains import ALIGNERS, PROFILES
from jojogan.fileio import (
    claim_outputs,  # noqa: F401 - the one overwrite rule, re-exported to the commands
    not_a_file,
)
from jojogan.models import Models

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
        if value in ("auto", "cpu"):
            return value  # no torch to load for these (a Ray driver never computes)
        import torch

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
    help="StyleGAN2 checkpoint: official layout, or NVIDIA's stylegan2-ada/stylegan3 .pkl (converted once "
    "into the cache, nothing in it runs), or a registry name (default: stylegan2-ffhq-config-f.pt).",
)
_device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    type=Device(),
    help="cuda, cuda:1, mps, cpu, or auto (CUDA, then MPS, then CPU).",
)


_domain_options = (
    click.option(
        "--domain",
        type=click.Choice(sorted(PROFILES)),
        default=None,
        help="What the base's pictures are (default: its weights-registry row's, else ffhq faces).",
    ),
    click.option(
        "--aligner",
        type=click.Choice(ALIGNERS),
        default=None,
        help="How a photo becomes the generator's frame (default: the domain's; center-crop and none skip "
        "face detection, the identity figure and paste-back).",
    ),
)

MODEL_KEYS = ("base", "e4e", "device", "domain", "aligner", "codeformer")
"""The options that say which models a command loads (gathered into one :class:`Models`)."""


def _gathered(command: Callable) -> Callable:
    """Hand the command its model options as one :class:`Models` (``models=``)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        kwargs["models"] = Models(**{key: kwargs.pop(key) for key in MODEL_KEYS if key in kwargs})
        return command(*args, **kwargs)

    return wrapper


def base_options(command: Callable) -> Callable:
    """--base/--domain/--aligner/--device, for commands that never invert a face (no --e4e to offer)."""
    return stack(_base_option, *_domain_options, _device_option)(_gathered(command))


def model_options(command: Callable) -> Callable:
    """--base/--domain/--aligner/--e4e/--device, shared by every command that loads models."""
    return stack(
        _base_option,
        *_domain_options,
        click.option(
            "--e4e",
            "e4e",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="e4e_ffhq_encode.pt (default: the weights cache).",
        ),
        _device_option,
    )(_gathered(command))


def output_file_option(description: str, suffixes: tuple[str, ...] | None = None, folder_ok: bool = False):
    """The required ``-o/--output``; its suffix is checked at parse time (see :class:`OutputFile`)."""
    return click.option(
        "-o", "--output", required=True, type=OutputFile(suffixes, folder_ok), help=description
    )


def _parse_face(ctx: click.Context, param: click.Parameter, text: str) -> str | int:
    """``largest``, ``all`` or an index from the left (negative: from the right)."""
    if text in FACE_CHOICES:
        return text
    try:
        return int(text)
    except ValueError as error:
        raise click.BadParameter(
            f"--face takes {', '.join(FACE_CHOICES)} or an index, got {text!r}"
        ) from error


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


def _stylize_specs() -> dict[str, dict]:
    """``click.option`` settings of every :class:`StylizeConfig` field that is an option (the identity
    fields come from :func:`identity_options`); defaults are read from the config."""
    from jojogan.cleanup import CLEANERS
    from jojogan.inversion.encoders import ENCODERS

    return {
        "alpha": dict(
            type=str, callback=_parse_alpha, show_default=True,
            help="Style strength in [0, 1], or one comma-separated value per style layer.",
        ),
        "face": dict(
            type=str, callback=_parse_face, help="Which face: largest, all, or an index from the left."
        ),
        "paste": dict(is_flag=True, help="Blend the stylized face back into the photo (feathered mask)."),
        "match_colour": dict(is_flag=True, help="With --paste: take the photo's colour and lighting."),
        "cleanup": dict(
            type=click.Choice(["none", *CLEANERS]), help="Clean the stylized face up (CodeFormer)."
        ),
        "fidelity": dict(
            type=FiniteFloat(0, 1), help="The cleaner's w: 0 restores most, 1 keeps most of its input."
        ),
        "restore_input": dict(is_flag=True, help="Run the cleaner on the input face before inversion."),
        "aligned": dict(is_flag=True, help="Inputs are already aligned crops: skip detection."),
        "inversion": dict(
            type=click.Choice(list(ENCODERS)), show_default="the base's domain: e4e for FFHQ faces",
            help="How pictures become W+ codes: " + "; ".join(
                f"{name} ({'needs its weights' if cls.weights else 'the StyleGAN2 file only'})"
                for name, cls in ENCODERS.items()
            ) + ".",
        ),
        "distance": dict(
            type=click.Choice(INVERSION_DISTANCES),
            help="What --inversion optimize minimises: the base discriminator's features, or LPIPS (VGG; "
            "needs the jojogan[lpips] extra, the backbone downloads on first use).",
        ),
        "inversion_steps": dict(
            type=click.IntRange(min=3),
            help="Optimisation steps for --inversion optimize (default 300: 200 in W, 100 in W+).",
        ),
        "max_pixels": dict(
            type=click.IntRange(min=1), help="Refuse larger images (decompression-bomb guard)."
        ),
    }  # fmt: skip


STYLIZE_OPTION_NAMES = {"identity": "identity_net", "identity_weights": "identity_weights"}
"""CLI parameter names that differ from the :class:`StylizeConfig` field they feed."""

FINISHING = ("paste", "match_colour", "cleanup", "fidelity", "restore_input")
"""What happens to a face around the generator (stylize, batch, video)."""

INPUTS = ("aligned", "inversion", "distance", "inversion_steps", "max_pixels")
"""How inputs become W+ codes (every command that inverts)."""


def stylize_options(*fields: str) -> Callable:
    """Options for these :class:`StylizeConfig` fields (``--field-name``), defaults read from the config."""
    specs = _stylize_specs()
    options = []
    for name in fields:
        spec = dict(specs[name])
        default = field_default(StylizeConfig, name)
        default = {"alpha": "1.0", "cleanup": "none"}.get(name, default)
        spec.setdefault("show_default", default is not None and not spec.get("is_flag"))
        options.append(click.option(f"--{name.replace('_', '-')}", name, default=default, **spec))
    return stack(*options)


def inversion_options(command: Callable) -> Callable:
    """--aligned, --inversion, --distance, --inversion-steps, --max-pixels and the encoders' own settings:
    how inputs become codes."""
    return stack(stylize_options(*INPUTS), encoder_settings)(command)


def encoder_settings(command: Callable) -> Callable:
    """One option per setting an encoder declares (``--restyle-iterations``); :func:`stylize_config` puts
    them into ``StylizeConfig.inversion_options``."""
    from jojogan.inversion.encoders import encoder_options

    declared = [
        click.option(
            f"--{option.flag}",
            option.flag.replace("-", "_"),
            type=click.IntRange(min=option.minimum),
            default=option.default,
            show_default=True,
            help=option.help,
        )  # fmt: skip
        for option in encoder_options().values()
    ]
    return stack(*declared)(command)


def _pop_encoder_options(values: dict) -> dict[str, int]:
    """The encoders' settings among a command's keyword arguments (taken out), by their keys, where they
    differ from the encoder's default."""
    from jojogan.inversion.encoders import encoder_options

    given = {}
    for option in encoder_options().values():
        value = values.pop(option.flag.replace("-", "_"), option.default)
        if value != option.default:  # a default is the encoder's own: the config (and a batch's
            given[option.key] = value  # fingerprint) then equal the API's defaults
    return given


def _video_specs() -> dict[type, dict[str, dict]]:
    """``click.option`` settings of every video setting that is an option, by the config that owns it
    (:class:`~jojogan.video.VideoConfig`, and the :class:`~jojogan.video.TrackConfig` and
    :class:`~jojogan.video.EncodeSettings` it holds); defaults are read from the configs."""
    from jojogan.video import LATENT_MODES, EncodeSettings, TrackConfig, VideoConfig

    return {
        VideoConfig: {
            "latent": dict(
                type=click.Choice(LATENT_MODES),
                help="smooth: every frame inverted, codes smoothed over time within a shot; shot: one code "
                "per face per shot; frame: raw per-frame codes (for comparison).",
            ),
            "chunk_frames": dict(
                type=click.IntRange(min=1),
                help="Frames per chunk of a video: the unit an interrupted run resumes at (and that the ray "
                "engine spreads over its workers).",
            ),
            "batch_size": dict(
                type=click.IntRange(min=1), help="Faces per encoder/generator batch (default: by device)."
            ),
            "report": dict(
                is_flag=True,
                help="Write a JSON report (OUT.json): counts, per-stage timings, the flicker and identity "
                "figures.",
            ),
            "flicker_every": dict(
                type=click.IntRange(min=0),
                help="Measure flicker on the frame pairs starting on every N-th frame (1: all; 0: off).",
            ),
            "identity_frames": dict(
                type=click.IntRange(min=1),
                help="With --identity-net: frames of each face track whose identity is measured.",
            ),
        },
        TrackConfig: {
            "detect_every": dict(
                type=click.IntRange(min=1),
                help="Run the face detector on every N-th frame (and at each cut); follow faces between.",
            ),
            "alignment_workers": dict(
                type=click.IntRange(min=0),
                help="Processes that detect and follow faces (same tracks for any number; 1: none); 0: one "
                "per CPU but one, at most 4, and none for videos under 100 frames.",
            ),
        },
        EncodeSettings: {
            "codec": dict(
                help="FFmpeg video encoder (libx264, libx265, libvpx-vp9, libsvtav1, mpeg4, ...)."
            ),
            "crf": dict(
                type=click.FloatRange(min=0), help="Quality factor of the encoder (lower is better)."
            ),
            "preset": dict(
                help="The encoder's speed preset (x264: ultrafast ... veryslow; default its own)."
            ),
        },
    }  # fmt: skip


VIDEO_SETTINGS = ("latent", "detect_every", "alignment_workers", "chunk_frames", "codec", "crf", "preset")
"""The video settings of every command that writes videos (``video``, and ``batch`` for its videos)."""


def video_options(*fields: str) -> Callable:
    """Options for these video settings (``--field-name``; fields of ``VideoConfig`` or of the configs it
    holds), declared once in :func:`_video_specs`, defaults read from the configs."""
    specs = _video_specs()
    options = []
    for name in fields:
        (owner,) = [config for config, named in specs.items() if name in named]
        options.append(config_options(owner, {name: specs[owner][name]}))
    return stack(*options)


def video_config(values: dict, **given):
    """One :class:`~jojogan.video.VideoConfig` from a command's keyword arguments, taking (and removing)
    its options; ``given``: fields the command sets from options of its own (batch: ``batch_size``).

    Raises:
        click.UsageError: a value the config refuses, in its words.
    """
    from jojogan.video import EncodeSettings, TrackConfig, VideoConfig

    values.update(given)
    values["track"] = config_from_options(TrackConfig, values)
    values["encode"] = config_from_options(EncodeSettings, values)
    return config_from_options(VideoConfig, values)


def identity_options(command: Callable) -> Callable:
    """--identity-net, --identity-weights and --no-identity: the identity figure of the results."""
    from jojogan.cli.identity import identity_net_options

    # "auto": the default network where the base's pictures are faces, no figure otherwise
    return stack(identity_net_options("auto"), no_identity_option)(command)


def stylize_config(values: dict) -> StylizeConfig:
    """One :class:`StylizeConfig` from a command's keyword arguments, taking (and removing) its options.

    Raises:
        click.UsageError: a combination the config refuses (e.g. --paste with --aligned), in its words.
    """
    names = {item.name for item in dataclasses.fields(StylizeConfig)} - set(STYLIZE_OPTION_NAMES)
    settings = {name: values.pop(name) for name in list(values) if name in names}
    if "identity_net" in values:
        settings["identity"] = None if values.pop("no_identity", False) else values.pop("identity_net")
        settings["identity_weights"] = values.pop("identity_weights", None)
    if isinstance(settings.get("alpha"), list):
        settings["alpha"] = tuple(settings["alpha"])
    declared = _pop_encoder_options(values)
    if declared:
        settings["inversion_options"] = declared
    try:
        return StylizeConfig(**settings)
    except ValueError as error:
        raise click.UsageError(_option_words(str(error))) from error


def _option_words(message: str) -> str:
    """A config's message in the command line's words (``match_colour`` → ``--match-colour``)."""
    for name in (item.name for item in dataclasses.fields(StylizeConfig)):
        flag = "--" + STYLIZE_OPTION_NAMES.get(name, name).replace("_", "-")
        message = message.replace(f"{name}=True", flag).replace(f"{name}", flag)
    return message


no_identity_option = click.option(
    "--no-identity", is_flag=True, help="Do not measure how much of the person survived the style."
)

codeformer_option = click.option(
    "--codeformer",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="codeformer.pth (default: the weights cache, downloaded on first use).",
)


def check_alpha_length(alpha, generator) -> None:
    """A per-layer ``--alpha`` list needs one value per style layer of the generator; checked before any
    face is inverted."""
    if isinstance(alpha, (list, tuple)) and len(alpha) != generator.num_styles:
        raise click.BadParameter(
            f"a per-layer list needs {generator.num_styles} values (one per style layer of this "
            f"{generator.size} px generator), got {len(alpha)}",
            param_hint="'--alpha'",
        )


def pipeline(models: Models, distance: str = INVERSION_DISTANCES[0]):
    """The API pipeline for one command; the command is one job of the CPU memory policy."""
    from jojogan.op.memory import cpu_memory_reuse
    from jojogan.style_file import is_style_file

    base = models.base
    if base is not None and is_style_file(base):
        raise click.ClickException(
            f"--base {base} is a jojogan style file (a fine-tuned generator); --base takes the StyleGAN2 "
            "checkpoint a style is made from, and a style file goes to --style"
        )
    if distance == "lpips":
        from jojogan.perceptual import lpips_available

        if not lpips_available("vgg"):
            raise click.ClickException(
                "--distance lpips needs the 'lpips' package (pip install 'jojogan[lpips]') and torchvision's "
                "VGG16 weights in the weights cache or a network to fetch them "
                "(`jojogan weights download vgg16`)"
            )
    log.debug("loading the base %s on device %s", base or "from the cache", models.device)
    started = time.perf_counter()
    pipe = models.load()
    log.debug(
        "loaded a %d px generator on %s in %.2f s", pipe.size, pipe.device, time.perf_counter() - started
    )
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
