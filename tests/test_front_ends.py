"""One set of checks for every front end: the command line, the batch engine and the web UI's façade.

Each front end is an adapter that stylizes aligned faces with the same :class:`StylizeConfig`; the shared
checks run on each (as diffusers runs its ``PipelineTesterMixin`` on every pipeline): the same call twice
gives the API's picture bit for bit, ``alpha = 0`` is the base generator's picture of the inverted code,
and several faces at once equal one at a time (where a front end takes several). A last test pins the
command line's options to :class:`StylizeConfig`'s fields, as diffusers' ``test_pipeline_call_signature``
pins a pipeline's arguments.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from jojogan.api import JoJoGAN
from jojogan.batch import BatchSettings, stylize_many
from jojogan.cli import main as cli
from jojogan.cli._options import STYLIZE_OPTION_NAMES, stylize_config
from jojogan.config import StylizeConfig
from jojogan.imaging import to_pil
from jojogan.models import Models
from jojogan.style_file import save_style
from jojogan.ui import Studio, StyleLibrary

from factories import tiny_base, tiny_generator

SIZE = 64
"""The tiny base's size: the checks compare front ends with each other and with the API on one base, so
any size shows them; at 64 px (the inversion's loss still compares three of its four discriminator blocks)
each inversion costs a third of 128 px's."""
SETTINGS = {"inversion": "optimize", "inversion_steps": 3, "aligned": True, "identity": None}
"""The stylize settings every front end gets (optimisation inversion, 3 steps: fast on a tiny base)."""


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> dict[str, Path]:
    """A tiny official-layout base, two faces its generator draws, and a style: another generator of its
    architecture (what fine-tuning makes does not matter to the front ends)."""
    root = tmp_path_factory.mktemp("front-ends")
    base, faces = tiny_base(root, SIZE)
    style = save_style(root / "style.safetensors", tiny_generator(SIZE, seed=7), {"note": "front ends"})
    return {"root": root, "base": base, "style": style, "face0": faces[0], "face1": faces[1]}


def _pixels(image: Image.Image | Path) -> np.ndarray:
    if isinstance(image, Path):
        with Image.open(image) as opened:
            return np.asarray(opened.convert("RGB"))
    return np.asarray(image.convert("RGB"))


def _cli(kit, faces, alpha, device, out: Path, batch_size: int = 1) -> list[np.ndarray]:
    """``jojogan stylize`` (several inputs, one by one), or ``jojogan batch --batch-size`` above one."""
    common = ["--style", kit["style"], "--base", kit["base"], "--aligned", "--inversion", "optimize"]
    common += ["--inversion-steps", "3", "--alpha", str(alpha), "--no-identity", "--device", str(device)]
    if batch_size == 1:
        args = ["stylize", *faces, *common, "-o", out]
    else:
        args = ["batch", *faces, *common, "--batch-size", str(batch_size), "--no-progress", "-o", out]
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return [_pixels(out / f"{face.stem}_styled.png") for face in faces]


def _batch(kit, faces, alpha, device, out: Path, batch_size: int = 1) -> list[np.ndarray]:
    """The batch engine (``jojogan.batch.stylize_many``, local)."""
    config = StylizeConfig(alpha=alpha, **SETTINGS)
    settings = BatchSettings(
        style=kit["style"], config=config, models=Models(base=kit["base"], device=str(device))
    )
    report = stylize_many(faces, settings, out, batch_size=batch_size, progress=False)
    assert report.counts == {"ok": len(faces), "error": 0, "skipped": 0}
    return [_pixels(out / f"{face.stem}_styled.png") for face in faces]


def _ui(kit, faces, alpha, device, out: Path, batch_size: int = 1) -> list[np.ndarray]:
    """The web UI's façade (``jojogan.ui.Studio``) over a library holding the style."""
    assert batch_size == 1, "the page stylizes one photo at a time"
    library = StyleLibrary(out / "library")
    library.add("tiny", lambda path: shutil.copy(kit["style"], path), Image.new("RGB", (8, 8)), {})
    pipe = JoJoGAN.from_pretrained(base=kit["base"], device=device)
    studio = Studio(pipe, library, inversion="optimize", inversion_steps=3)
    return [_pixels(studio.stylize(face, "tiny", alpha, aligned=True).image) for face in faces]


FRONT_ENDS: dict[str, Callable[..., list[np.ndarray]]] = {"cli": _cli, "batch": _batch, "ui": _ui}


_API: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _api(kit, face: Path, alpha: float, device) -> tuple[np.ndarray, np.ndarray]:
    """The API's picture of a face, and the base generator's picture of its inverted code (computed once
    per face, alpha and device)."""
    key = (kit["root"], face, alpha, str(device))
    if key not in _API:
        pipe = JoJoGAN.from_pretrained(base=kit["base"], device=device)
        result = pipe.stylize(face, kit["style"], config=StylizeConfig(alpha=alpha, **SETTINGS))
        with torch.no_grad():
            base_picture = to_pil(pipe.generator.synthesis(result.face.w_plus)[0])
        _API[key] = _pixels(result.image), _pixels(base_picture)
    return _API[key]


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_the_same_call_twice_gives_the_apis_picture(front_end, kit, device, tmp_path):
    faces = [kit["face0"], kit["face1"]]
    first = FRONT_ENDS[front_end](kit, faces, 0.5, device, tmp_path / "first")
    (again,) = FRONT_ENDS[front_end](kit, faces[1:], 0.5, device, tmp_path / "again")
    for face, picture in zip(faces, first, strict=True):
        assert picture.shape == (SIZE, SIZE, 3)
        assert np.array_equal(picture, _api(kit, face, 0.5, device)[0]), face.name
    assert np.array_equal(again, first[1])
    assert not np.array_equal(first[0], first[1])


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_alpha_zero_is_the_base_generators_picture_and_one_the_style(front_end, kit, device, tmp_path):
    face = kit["face1"]
    (at_zero,) = FRONT_ENDS[front_end](kit, [face], 0.0, device, tmp_path / "zero")
    (at_one,) = FRONT_ENDS[front_end](kit, [face], 1.0, device, tmp_path / "one")
    _, base_picture = _api(kit, face, 0.0, device)
    assert np.array_equal(at_zero, base_picture)  # bit for bit: the fine-tuned generator is not evaluated
    assert np.abs(at_zero.astype(int) - at_one).mean() > 1


@pytest.mark.parametrize("front_end", ["cli", "batch"])  # the page takes one photo at a time
def test_several_faces_at_once_equal_one_at_a_time(front_end, kit, device, tmp_path, monkeypatch):
    stacked = []
    render_many = JoJoGAN.render_many

    def spy(self, faces, *args, **kwargs):
        stacked.append(len(faces))
        return render_many(self, faces, *args, **kwargs)

    monkeypatch.setattr(JoJoGAN, "render_many", spy)
    faces = [kit["face0"], kit["face1"]]
    alone = FRONT_ENDS[front_end](kit, faces, 0.7, device, tmp_path / "one", batch_size=1)
    assert stacked == [1, 1]
    together = FRONT_ENDS[front_end](kit, faces, 0.7, device, tmp_path / "two", batch_size=2)
    assert stacked == [1, 1, 2]  # both faces went through the generators together
    for one, two in zip(alone, together, strict=True):
        # convolutions over a batch of two may sum in another order than over one
        assert np.abs(one.astype(int) - two).max() <= 1


def test_a_bad_file_in_a_batch_is_its_own_line(kit, tmp_path):
    """Stacking faces does not tie a bad file's fate to its neighbours'."""
    faces = [kit["face0"], kit["base"], kit["face1"]]  # the middle one is not an image
    models = Models(base=kit["base"], device="cpu")
    settings = BatchSettings(style=kit["style"], config=StylizeConfig(**SETTINGS), models=models)
    alone = stylize_many(faces, settings, tmp_path / "one", batch_size=1, progress=False)
    together = stylize_many(faces, settings, tmp_path / "two", batch_size=2, progress=False)
    assert together.counts == alone.counts == {"ok": 2, "error": 1, "skipped": 0}
    assert together.rows[1]["error"] == alone.rows[1]["error"] and "base.pt" in alone.rows[1]["error"]


# Options of the commands that feed no StylizeConfig field, each with what it is for.
NOT_CONFIG = {
    "stylize": {
        "inputs": "the photos",
        "style": "the style file",
        "output": "where results go",
        "codeformer": "a weights file",
        "force": "replacing outputs",
        "base": "a weights file",
        "e4e": "a weights file",
        "device": "where models run",
        "domain": "the base's domain profile",
        "aligner": "another aligner than the domain's",
        "no_identity": "turns identity_net off (identity=None)",
    },
    "batch": {
        "inputs": "the photos",
        "style": "the style file",
        "output": "the output folder",
        "codeformer": "a weights file",
        "base": "a weights file",
        "e4e": "a weights file",
        "device": "where models run",
        "domain": "the base's domain profile",
        "aligner": "another aligner than the domain's",
        "no_identity": "turns identity_net off (identity=None)",
        "engine": "where the batch runs",
        "workers": "how many stylize actors",
        "address": "the Ray cluster",
        "no_progress": "the progress bar",
        "retry_errors": "which inputs run again",
        "force": "replacing earlier outputs",
    },
}


@pytest.mark.parametrize("command", sorted(NOT_CONFIG))
def test_every_stylize_setting_is_an_option_and_every_option_is_accounted_for(command):
    from jojogan.inversion.encoders import encoder_options

    params = {param.name for param in cli.commands[command].params}
    fields = [item.name for item in dataclasses.fields(StylizeConfig) if item.name != "inversion_options"]
    # inversion_options: one option per setting an encoder declares (--restyle-iterations, ...)
    encoder_settings = {option.flag.replace("-", "_") for option in encoder_options().values()}
    assert encoder_settings
    expected = {STYLIZE_OPTION_NAMES.get(name, name) for name in fields} | encoder_settings
    assert sorted(expected - params) == [], f"StylizeConfig fields jojogan {command} does not take"
    others = params - expected - VIDEO_OPTIONS.get(command, set())  # the video settings: pinned below
    assert others == set(NOT_CONFIG[command]), "options that are neither settings nor listed"


@pytest.mark.parametrize("command", sorted(NOT_CONFIG))
def test_the_commands_defaults_are_the_configs(command, tmp_path):
    """With no option given, a command's settings are StylizeConfig's defaults (identity: "auto", the
    front ends' default: the base's domain decides)."""
    (tmp_path / "style.pt").write_bytes(b"")
    args = ["photo.png", "--style", str(tmp_path / "style.pt"), "-o", str(tmp_path / "out")]
    context = cli.commands[command].make_context(command, args)
    config = stylize_config(dict(context.params))
    assert config == dataclasses.replace(StylizeConfig(), identity="auto")


# The video settings each command that writes videos takes as options (batch: for the videos among its
# inputs; its --batch-size batches the photos' faces too).
SHARED_VIDEO_OPTIONS = {
    "latent",
    "detect_every",
    "alignment_workers",
    "chunk_frames",
    "codec",
    "crf",
    "preset",
}
VIDEO_OPTIONS = {
    "video": SHARED_VIDEO_OPTIONS | {"batch_size", "report", "flicker_every", "identity_frames"},
    "batch": SHARED_VIDEO_OPTIONS | {"batch_size"},
}

# Video settings that are no command's option, each with why (Python takes them).
VIDEO_NOT_OPTIONS = {
    "code_sigma": "the latent mode's tuning",
    "colour_sigma": "the colour matching's tuning",
    "flow_size": "the flicker measurement's tuning",
    "feather": "the paste mask's tuning (the photos' paste has no option either)",
    "detect_scale": "the detector's tuning",
    "upsample": "the detector's tuning",
    "min_face_size": "the tracker's tuning",
    "max_gap": "the tracker's tuning",
    "min_track": "the tracker's tuning",
    "cut_threshold": "the cut detector's tuning",
    "centre_sigma": "the crop smoothing's tuning",
    "size_sigma": "the crop smoothing's tuning",
    "landmark_sigma": "the crop smoothing's tuning",
    "pix_fmt": "the encoder's pixel format",
    "options": "raw FFmpeg encoder options",
}


def _video_fields() -> dict[str, object]:
    """Every video setting, by name, with its default: VideoConfig's own and those of the configs it holds
    (``track``, ``encode``)."""
    from jojogan.video import VideoConfig

    defaults = {}
    for item in dataclasses.fields(VideoConfig):
        value = getattr(VideoConfig(), item.name)
        if dataclasses.is_dataclass(value):
            defaults |= {part.name: getattr(value, part.name) for part in dataclasses.fields(value)}
        else:
            defaults[item.name] = value
    return defaults


@pytest.mark.parametrize("command", sorted(VIDEO_OPTIONS))
def test_every_video_setting_is_an_option_or_accounted_for(command):
    params = {param.name for param in cli.commands[command].params}
    fields = set(_video_fields())
    assert fields & params == VIDEO_OPTIONS[command]
    left = fields - params
    why = {
        "report": "a batch writes nothing beside its outputs but the manifest",
        "flicker_every": "a batch's manifest records no flicker figure (not measured there)",
        "identity_frames": "a batch's identity verdicts sample the default number of frames",
    }
    why = why if command == "batch" else {}
    assert left == set(VIDEO_NOT_OPTIONS) | set(why)


@pytest.mark.parametrize("command", sorted(VIDEO_OPTIONS))
def test_the_video_options_defaults_are_the_configs(command, tmp_path):
    from jojogan.cli._options import video_config
    from jojogan.video import VideoConfig

    (tmp_path / "style.pt").write_bytes(b"")
    output = tmp_path / ("out.mp4" if command == "video" else "out")
    args = ["clip.mp4", "--style", str(tmp_path / "style.pt"), "-o", str(output)]
    params = dict(cli.commands[command].make_context(command, args).params)
    defaults = _video_fields()
    for name in VIDEO_OPTIONS[command]:
        assert params[name] == defaults[name], name
    given = {"batch_size": params.pop("batch_size")} if command == "batch" else {}
    assert video_config(params, **given) == VideoConfig()


def test_the_batchs_video_options_reach_its_videos(tmp_path, monkeypatch):
    """``jojogan batch``'s video options become the batch's VideoConfig (the one declaration `jojogan
    video` reads too); a value the config refuses is one line and exit status 2."""
    import jojogan.batch
    from jojogan.batch import BatchReport
    from jojogan.video import EncodeSettings, TrackConfig, VideoConfig

    seen = []

    def stylize_many(inputs, settings, output, **options):
        seen.append(settings)
        return BatchReport(rows=[], seconds=1.0)

    monkeypatch.setattr(jojogan.batch, "stylize_many", stylize_many)
    (tmp_path / "style.pt").write_bytes(b"")
    args = ["batch", "clip.mp4", "--style", str(tmp_path / "style.pt"), "-o", str(tmp_path / "out")]
    options = ["--latent", "shot", "--detect-every", "3", "--chunk-frames", "5", "--codec", "mpeg4"]
    options += ["--crf", "20", "--preset", "fast", "--batch-size", "2"]
    result = CliRunner().invoke(cli, args + options, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (settings,) = seen
    assert settings.video == VideoConfig(
        latent="shot", chunk_frames=5, batch_size=2, track=TrackConfig(detect_every=3),
        encode=EncodeSettings(codec="mpeg4", crf=20.0, preset="fast"),
    )  # fmt: skip
    refused = CliRunner().invoke(cli, args + ["--chunk-frames", "0"])
    assert refused.exit_code == 2 and "Traceback" not in refused.output and "chunk-frames" in refused.output


# Options of ``jojogan video`` that feed neither a stylize nor a video setting, each with what it is for.
VIDEO_NOT_CONFIG = {
    "source": "the video",
    "style": "the style file",
    "output": "the output video",
    "force": "replacing the output",
    "restart": "starting over instead of resuming",
    "codeformer": "a weights file",
    "base": "a weights file",
    "e4e": "a weights file",
    "device": "where models run",
    "domain": "the base's domain profile",
    "aligner": "another aligner than the domain's",
}


def test_every_video_command_option_is_a_setting_or_accounted_for(tmp_path):
    """``jojogan video``'s options are StylizeConfig fields (the identity network among them), video
    settings (the alignment workers a TrackConfig field), or listed above; given none, the stylize
    settings are the configs' with paste and without an identity figure (measured only when asked)."""
    from jojogan.inversion.encoders import encoder_options
    from jojogan.video import TrackConfig

    command = cli.commands["video"]
    params = {param.name for param in command.params}
    stylize = {STYLIZE_OPTION_NAMES.get(item.name, item.name) for item in dataclasses.fields(StylizeConfig)}
    stylize |= {option.flag.replace("-", "_") for option in encoder_options().values()}
    assert params - stylize - VIDEO_OPTIONS["video"] == set(VIDEO_NOT_CONFIG)
    assert {"identity_net", "identity_weights"} <= params and "no_identity" not in params
    assert "alignment_workers" in {item.name for item in dataclasses.fields(TrackConfig)}
    (tmp_path / "style.pt").write_bytes(b"")
    args = ["clip.mp4", "--style", str(tmp_path / "style.pt"), "-o", str(tmp_path / "out.mp4")]
    assert stylize_config(dict(command.make_context("video", args).params)) == StylizeConfig(paste=True)
