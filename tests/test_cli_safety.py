"""Issue 11: no lost work and no tracebacks. Every refusal here is checked the same way: exit code != 0,
one ``Error:`` line on stderr and no traceback, and every file in the working folder (inputs, outputs,
resume states) byte-identical before and after."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import jojogan.api
import jojogan.finetune
from jojogan.cli import main
from jojogan.cli._options import unique_stems
from jojogan.cli.finetune import finetune_lock_path
from jojogan.fileio import file_sha256
from jojogan.imaging import to_pil
from jojogan.style_file import save_style

from factories import tiny_discriminator, tiny_generator

SIZE = 128  # the smallest size with the four discriminator blocks fine-tuning reads
FAST = ["--aligned", "--inversion", "optimize", "--inversion-steps", "3"]


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (a finetune's lock lives in the cache, never here)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def invoke(args, **kwargs):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kwargs)


def refused(
    args, folder: Path | tuple[Path, ...], expected: str | tuple[str, ...], code: int | None = None
) -> str:
    """Run a command that must fail (nothing written or changed in ``folder``, or in each of several
    folders); return its one error line."""
    folders = folder if isinstance(folder, tuple) else (folder,)
    before = [snapshot(f) for f in folders]
    result = invoke(args)
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for text in (expected,) if isinstance(expected, str) else expected:
        assert text in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert [snapshot(f) for f in folders] == before, "a file was written or changed"
    print(lines[0])  # shown with -s: what the user reads
    return lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Two tiny bases (the same architecture, other weights), two faces, a style, all in one folder."""
    root = tmp_path_factory.mktemp("safety")
    for name, seed in (("base.pt", 3), ("other-base.pt", 7)):
        gen, disc = tiny_generator(SIZE, seed=seed), tiny_discriminator(SIZE, seed=seed + 1)
        state = {"g_ema": gen.state_dict(), "d": disc.state_dict(), "latent_avg": gen.mean_latent(64)[0]}
        torch.save(state, root / name)
    gen = tiny_generator(SIZE, seed=3)
    with torch.no_grad():
        images = gen(torch.randn(2, gen.style_dim, generator=torch.Generator().manual_seed(5)))
    (root / "a").mkdir()
    (root / "b").mkdir()
    to_pil(images[0]).save(root / "a" / "face.png")
    to_pil(images[1]).save(root / "b" / "face.png")
    meta = {"base_checkpoint": {"name": "base.pt", "sha256": file_sha256(root / "base.pt")}}
    save_style(root / "style.safetensors", tiny_generator(SIZE, seed=11), meta)
    return root


STYLIZE = ["--no-identity", *FAST]


# ------------------------------------------------------------------------------------ 1. lost data
def test_align_into_the_inputs_folder_never_replaces_the_input(work, monkeypatch):
    monkeypatch.chdir(work / "a")
    refused(["align", "face.png", "-o", "."], work, "also an input")


def test_stylize_onto_its_own_input_is_refused(work):
    face = work / "a" / "face.png"
    args = ["stylize", face, "--style", work / "style.safetensors", "--base", work / "base.pt"]
    refused([*args, *STYLIZE, "-o", face], work, ("also an input", "face.png"))
    # the same file spelt another way is still the input
    refused([*args, *STYLIZE, "-o", work / "b" / ".." / "a" / "face.png"], work, "also an input")


def test_two_inputs_with_one_name_get_two_outputs(work, tmp_path):
    """a/face.png and b/face.png: face_styled.png and face_2_styled.png, two different images."""
    assert unique_stems([Path("a/face.png"), Path("b/face.png"), Path("c/Face.jpg"), Path("face_2.png")]) == [
        "face",
        "face_2",
        "Face_3",
        "face_2_2",
    ]
    out = tmp_path / "styled"
    args = [
        "stylize",
        work / "a" / "face.png",
        work / "b" / "face.png",
        "--style",
        work / "style.safetensors",
    ]
    result = invoke([*args, "--base", work / "base.pt", *STYLIZE, "-o", out])
    assert result.exit_code == 0, result.output
    first, second = out / "face_styled.png", out / "face_2_styled.png"
    assert sorted(p.name for p in out.iterdir()) == [second.name, first.name]
    with Image.open(first) as a, Image.open(second) as b:
        assert a.tobytes() != b.tobytes()


def test_an_existing_output_is_replaced_only_with_force(work, tmp_path):
    grid = tmp_path / "grid.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(grid)
    args = ["sample", "--style", work / "style.safetensors", "--base", work / "base.pt", "-n", "1"]
    refused([*args, "--tile", "32", "-o", grid], tmp_path, ("grid.png exists", "--force"))
    result = invoke([*args, "--tile", "32", "-o", grid, "--force"])
    assert result.exit_code == 0, result.output
    with Image.open(grid) as image:
        assert image.width == 32 and image.height > 64  # two 32 px rows replaced the 8 x 8 file


# ------------------------------------------------------------------------------------ 2. resume
@pytest.fixture(scope="module")
def interrupted(work, tmp_path_factory):
    """A finetune of a/face.png interrupted after step 2 of 4: its resume state is in the folder."""
    folder = tmp_path_factory.mktemp("resume")
    args = ["finetune", work / "a" / "face.png", *FAST, "--base", work / "base.pt", "--iterations", "4"]
    args += ["--save-state-every", "1", "-o", folder / "style.safetensors"]
    stage = jojogan.finetune.finetune

    def stop_after_2(*a, callback=None, **kw):
        def stop(step, loss, preview):
            if step == 3:
                raise KeyboardInterrupt

        return stage(*a, callback=stop, **kw)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jojogan.finetune, "finetune", stop_after_2)
        result = invoke(args)
    assert result.exit_code == 130, result.output
    assert (folder / "style.safetensors.resume.pt").is_file()
    return folder, args


def _with(args, **changes):
    args = list(args)
    for option, value in changes.items():
        flag = "--" + option.replace("_", "-")
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return args


def no_inversion(*args, **kwargs):
    raise AssertionError("an inversion ran before a cheap check")


def test_resume_refuses_other_references_before_inverting(work, interrupted, monkeypatch):
    folder, args = interrupted
    monkeypatch.setattr(jojogan.api.JoJoGAN, "invert", no_inversion)
    args = [*args[:1], work / "b" / "face.png", *args[2:]]
    line = refused([*args, "--resume"], (work, folder), "references (content sha256)")
    a, b = (file_sha256(work / folder / "face.png")[:12] for folder in "ab")
    assert f"(state: [{a}], now: [{b}])" in line
    assert "base" not in line and "seed" not in line


def test_resume_refuses_another_base_and_names_it(work, interrupted):
    folder, args = interrupted
    line = refused([*_with(args, base=work / "other-base.pt"), "--resume"], (work, folder), "base checkpoint")
    assert file_sha256(work / "other-base.pt")[:12] in line
    assert "mask" not in line  # the old message blamed the swapped layers


def test_resume_names_every_changed_setting(interrupted, work):
    folder, args = interrupted
    expected = ("lr (state: 0.002, now: 0.01)", "seed (state: 0, now: 1)")
    line = refused([*_with(args, seed="1", lr="0.01"), "--resume"], (work, folder), expected)
    assert "preset" not in line and "mask" not in line and "reference" not in line


def test_resume_refuses_another_inversion(interrupted, work, monkeypatch):
    folder, args = interrupted
    monkeypatch.setattr(jojogan.api.JoJoGAN, "invert", no_inversion)
    line = refused(
        [*_with(args, inversion="e4e"), "--resume"],
        (work, folder),
        "inversion (state: 'optimize', now: 'e4e')",
    )
    assert "lr" not in line


def test_a_resume_state_is_never_discarded_silently(interrupted, work):
    folder, args = interrupted
    refused(args, (work, folder), ("--resume", "--force"))


def test_a_resume_state_holding_a_pickle_is_one_line(work, tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"step": Payload()}, tmp_path / "s.safetensors.resume.pt")
    args = ["finetune", work / "a" / "face.png", *FAST, "--base", work / "base.pt", "--resume"]
    line = refused([*args, "-o", tmp_path / "s.safetensors"], tmp_path, "s.safetensors.resume.pt")
    assert "holds Python objects" in line and "add_safe_globals" not in line


def test_a_second_finetune_on_the_same_output_stops(work, tmp_path, monkeypatch):
    from filelock import FileLock

    monkeypatch.setenv("JOJOGAN_HOME", str(tmp_path / "home"))  # the lock it holds stays out of ~/.cache
    output = tmp_path / "s.safetensors"
    args = ["finetune", work / "a" / "face.png", *FAST, "--base", work / "base.pt", "-o", output]
    with FileLock(str(finetune_lock_path(output)), timeout=0):
        refused(args, tmp_path, ("another jojogan finetune", "s.safetensors"))


# ------------------------------------------------------------------------------------ 3/4. cheap first
def test_a_wrong_length_alpha_list_is_refused_before_inversion(work, tmp_path, monkeypatch):
    monkeypatch.setattr(jojogan.api.JoJoGAN, "invert", no_inversion)
    args = [
        "stylize",
        work / "a" / "face.png",
        "--style",
        work / "style.safetensors",
        "--base",
        work / "base.pt",
    ]
    line = refused(
        [*args, *STYLIZE, "--alpha", "0.5,0.5", "-o", tmp_path / "o.png"], tmp_path, "--alpha", code=2
    )
    assert f"needs {tiny_generator(SIZE).num_styles} values" in line and "got 2" in line


def test_paste_with_aligned_is_a_usage_error(work, tmp_path):
    args = ["stylize", work / "a" / "face.png", "--style", work / "style.safetensors", "--paste"]
    refused([*args, *STYLIZE, "-o", tmp_path / "o.png"], tmp_path, ("--paste", "--aligned"), code=2)


def test_a_missing_input_is_refused_before_any_model_loads(work, tmp_path):
    args = ["stylize", tmp_path / "nope.png", "--style", work / "style.safetensors"]
    refused(
        [*args, "--base", tmp_path / "no-base.pt", "-o", tmp_path / "o.png"],
        tmp_path,
        "nope.png does not exist",
    )


def test_sample_does_not_offer_e4e(work, tmp_path):
    args = [
        "sample",
        "--style",
        work / "style.safetensors",
        "--e4e",
        work / "base.pt",
        "-o",
        tmp_path / "g.png",
    ]
    refused(args, tmp_path, "--e4e", code=2)


# ------------------------------------------------------------------------------------ 5. guidance
def test_max_pixels_is_the_one_knob(tmp_path, monkeypatch):
    """Pillow's own limit neither refuses nor warns about an image --max-pixels allows."""
    import warnings

    from jojogan.inversion.images import load_image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow would now refuse 100 x 100 outright
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100), (9, 9, 9)).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning would fail here
        assert load_image(path, max_pixels=20_000).size == (100, 100)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored
    line = refused(["align", path, "-o", tmp_path / "out", "--max-pixels", "5000"], tmp_path, "--max-pixels")
    assert "MAX_IMAGE_PIXELS" not in line


def test_a_style_file_as_base_is_refused(work, tmp_path):
    args = ["sample", "--style", work / "style.safetensors", "--base", work / "style.safetensors"]
    refused([*args, "-o", tmp_path / "g.png"], tmp_path, ("is a jojogan style file", "--style"))


def test_a_wrong_shaped_tensor_is_named(work, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(work / "style.safetensors"), "pt") as handle:
        header = handle.metadata()
    state = load_file(work / "style.safetensors")
    state["convs.1.conv.weight"] = torch.zeros(*state["convs.1.conv.weight"].shape[:-1], 5)
    save_file(state, tmp_path / "bad.safetensors", metadata=header)
    args = [
        "sample",
        "--style",
        tmp_path / "bad.safetensors",
        "--base",
        work / "base.pt",
        "-o",
        tmp_path / "g.png",
    ]
    line = refused(args, tmp_path, "convs.1.conv.weight")
    assert line.count(":") <= 4  # one tensor named, not the ten correct ones


def test_a_style_from_another_base_warns(work, tmp_path, caplog):
    args = ["sample", "--style", work / "style.safetensors", "-n", "1", "--tile", "32"]
    with caplog.at_level("WARNING", logger="jojogan"):
        assert invoke([*args, "--base", work / "base.pt", "-o", tmp_path / "same.png"]).exit_code == 0
        assert not [r for r in caplog.records if "another base" in r.getMessage()]
        assert invoke([*args, "--base", work / "other-base.pt", "-o", tmp_path / "other.png"]).exit_code == 0
    warned = [r.getMessage() for r in caplog.records if "another base" in r.getMessage()]
    assert len(warned) == 1 and "base.pt" in warned[0] and "--base" in warned[0]


def test_the_progress_bar_names_the_image(work, capsys):
    pipe = jojogan.api.JoJoGAN.from_pretrained(base=work / "base.pt", device="cpu")
    pipe.prepare(
        work / "b" / "face.png", inversion="optimize", aligned=True, inversion_steps=3, show_progress=True
    )
    assert "projecting face.png" in capsys.readouterr().err


def test_verbose_adds_log_lines(work, tmp_path, caplog):
    """-v shows jojogan's debug lines (what was loaded, what is written); without it they stay hidden.

    The -v run is the real entry point in a fresh process (``python -m jojogan``: its logging setup and
    stderr). The quiet run is the same command through ``main`` in this process: pytest's log capture sees
    every record the command emits, so a debug line it let through (it would say "loading the base") fails
    here as it would on stderr, without a second process importing torch."""
    args = ["sample", "--style", work / "style.safetensors", "--base", work / "base.pt", "-n", "1"]
    args += ["--tile", "32", "--device", "cpu"]

    quiet = invoke([*args, "-o", tmp_path / "quiet.png"])
    assert quiet.exit_code == 0 and (tmp_path / "quiet.png").is_file(), quiet.output
    assert not [r.getMessage() for r in caplog.records if r.levelno <= logging.DEBUG]
    assert "DEBUG" not in quiet.stderr

    command = [sys.executable, "-m", "jojogan", "-v", *map(str, args), "-o", str(tmp_path / "verbose.png")]
    verbose = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stderr
    assert "DEBUG jojogan.cli._options: loading the base" in verbose and "verbose.png" in verbose


def test_env_shows_the_weights_cache(tmp_path, monkeypatch):
    import json

    from jojogan.weights import REGISTRY, cached_path

    monkeypatch.setenv("JOJOGAN_HOME", str(tmp_path))
    report = json.loads(invoke(["env", "--json"]).output)
    assert report["weights cache"] == str(tmp_path) and report["weights cached"] == "none"
    entry = next(iter(REGISTRY.values()))
    cached_path(entry).parent.mkdir(parents=True, exist_ok=True)
    cached_path(entry).write_bytes(b"truncated")
    report = json.loads(invoke(["env", "--json"]).output)
    assert report["weights cached"] == f"{entry.name} (9 B, corrupt)"
