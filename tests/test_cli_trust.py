"""Issue 23 for the single commands: every failure the probe found is one specific line, before the work
where it can be. Uses the tiny base, faces and style of tests/test_cli_safety.py (seconds each)."""

from __future__ import annotations

import importlib.util
import struct
import zlib
from pathlib import Path

import pytest
from test_cli_safety import FAST, STYLIZE, invoke, refused, work  # noqa: F401 - the tiny files

import jojogan.api
import jojogan.finetune
import jojogan.limits
from jojogan import fileio
from jojogan.finetune import FinetuneDivergedError

from factories import reduced_photo


def no_model(*args, **kwargs):
    raise AssertionError("a model was loaded before a cheap check")


def test_the_rescue_file_follows_the_output_rule_before_any_model_loads(work, tmp_path, monkeypatch):  # noqa: F811
    output = tmp_path / "s.safetensors"
    (tmp_path / "s.last-good.safetensors").write_bytes(b"an earlier rescue")
    monkeypatch.setattr(jojogan.api.JoJoGAN, "from_pretrained", no_model)
    args = ["finetune", work / "a" / "face.png", *FAST, "--aligned", "--base", work / "base.pt", "-o", output]
    refused(args, tmp_path, "s.last-good.safetensors exists; pass --force")


def test_a_divergence_with_force_replaces_the_rescue_in_one_line(work, tmp_path, monkeypatch):  # noqa: F811
    output = tmp_path / "s.safetensors"
    (tmp_path / "s.last-good.safetensors").write_bytes(b"an earlier rescue")
    stage = jojogan.finetune.finetune

    def diverge(*args, callback=None, **kwargs):
        run = stage(*args, callback=callback, **kwargs)
        raise FinetuneDivergedError(1, run.generator.state_dict(), [1.0], "loss")

    monkeypatch.setattr(jojogan.finetune, "finetune", diverge)
    args = ["finetune", work / "a" / "face.png", *FAST, "--aligned", "--base", work / "base.pt"]
    result = invoke([*args, "--iterations", "1", "-o", output, "--force"])
    assert result.exit_code == 1 and "The last good weights were saved to" in result.output, result.output
    assert (tmp_path / "s.last-good.safetensors").read_bytes() != b"an earlier rescue"


def test_a_previews_path_that_is_a_file_is_refused(work, tmp_path, monkeypatch):  # noqa: F811
    (tmp_path / "s.safetensors.previews").write_text("a file")
    monkeypatch.setattr(jojogan.api.JoJoGAN, "from_pretrained", no_model)
    args = ["finetune", work / "a" / "face.png", *FAST, "--aligned", "--base", work / "base.pt"]
    refused([*args, "--preview-every", "1", "-o", tmp_path / "s.safetensors"], tmp_path, "previews is a file")


def test_a_huge_learning_rate_is_a_usage_error(work, tmp_path):  # noqa: F811
    args = ["finetune", work / "a" / "face.png", *FAST, "--aligned", "--base", work / "base.pt"]
    line = refused([*args, "--lr", "1e308", "-o", tmp_path / "s.safetensors"], tmp_path, "lr", code=2)
    assert "(0, 1]" in line


def test_a_full_disk_while_saving_the_resume_state_is_one_line(work, tmp_path, monkeypatch):  # noqa: F811
    """torch.save's own failure (RuntimeError from its C++ writer) is named as the write it is."""

    full = []

    def enforce_fail(*args, **kwargs):
        full.append(True)  # the disk fills up during the run, after the output was claimed
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(jojogan.finetune.torch, "save", enforce_fail)
    monkeypatch.setattr(fileio, "_disk_full", lambda folder: bool(full))
    args = ["finetune", work / "a" / "face.png", *FAST, "--aligned", "--base", work / "base.pt"]
    result = invoke([*args, "--iterations", "2", "--save-state-every", "1", "-o", tmp_path / "s.safetensors"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: could not write ") and "resume.pt: no space is left on the device" in last
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_identity_with_a_device_that_does_not_exist(work, tmp_path):  # noqa: F811
    faces = [work / "a" / "face.png", work / "b" / "face.png"]
    refused(["identity", *faces, "--aligned", "--device", "foo"], tmp_path, "'foo' is not a device", code=2)


@pytest.fixture
def small_memory(monkeypatch):
    """A machine with 1 GB available, whatever this one has: the bounds below follow from it."""
    monkeypatch.setattr(jojogan.limits, "available_memory", lambda: 1_000_000_000)


def test_sample_count_and_tile_are_bounded_by_memory_and_format(work, tmp_path, small_memory):  # noqa: F811
    args = ["sample", "--style", work / "style.safetensors", "--base", work / "base.pt"]
    line = refused([*args, "-n", "100000", "-o", tmp_path / "g.png"], tmp_path, "-n 100000 needs about")
    assert "memory" in line and "750.0 MB this machine can spare" in line and "at most" in line
    refused([*args, "-n", "2", "--tile", "100000", "-o", tmp_path / "g.png"], tmp_path, "--tile 100000 needs")
    refused([*args, "-n", "300", "-o", tmp_path / "g.jpg"], tmp_path, "a .jpg holds at most 65,500 px")
    assert invoke([*args, "-n", "2", "--tile", "32", "-o", tmp_path / "g.png"]).exit_code == 0


def test_slider_steps_are_bounded_by_memory(work, tmp_path, small_memory, monkeypatch):  # noqa: F811
    monkeypatch.setattr(jojogan.api.JoJoGAN, "prepare", no_model)
    args = [
        "slider",
        work / "a" / "face.png",
        "--style",
        work / "style.safetensors",
        "--base",
        work / "base.pt",
    ]
    refused(
        [*args, *STYLIZE, "--steps", "100000", "-o", tmp_path / "s.png"], tmp_path, "--steps 100000 needs"
    )
    refused(
        [*args, *STYLIZE, "--tile", "70000", "-o", tmp_path / "s.png", "--gif", tmp_path / "s.gif"],
        tmp_path,
        "a .gif holds at most 65,535 px",
    )


def test_align_size_is_bounded_by_memory(work, tmp_path, small_memory):  # noqa: F811
    refused(
        ["align", work / "a" / "face.png", "--size", "100000", "-o", tmp_path / "out"],
        tmp_path,
        "--size 100000",
    )


def _text_bomb(source: Path, target: Path) -> None:
    """``source`` with a zTXt chunk that inflates to 50 MB, above Pillow's MAX_TEXT_CHUNK."""
    data = source.read_bytes()
    text = b"comment\x00\x00" + zlib.compress(b"a" * 50_000_000, 9)
    chunk = struct.pack(">I", len(text)) + b"zTXt" + text + struct.pack(">I", zlib.crc32(b"zTXt" + text))
    at = data.index(b"IDAT") - 4
    target.write_bytes(data[:at] + chunk + data[at:])


def test_a_png_text_chunk_bomb_is_one_line(work, tmp_path):  # noqa: F811
    bomb = tmp_path / "bomb.png"
    _text_bomb(work / "a" / "face.png", bomb)
    args = ["stylize", bomb, "--style", work / "style.safetensors", "--base", work / "base.pt", *STYLIZE]
    refused([*args, "-o", tmp_path / "o.png"], tmp_path, ("bomb.png cannot be read safely", "MAX_TEXT_CHUNK"))


@pytest.mark.parametrize("kind", ["file", "read-only"])
def test_ui_with_a_library_folder_that_cannot_take_files(work, tmp_path, monkeypatch, kind):  # noqa: F811
    # installed is enough (not imported here): the command refuses before it imports Gradio
    if importlib.util.find_spec("gradio") is None:
        pytest.skip("the ui command needs the ui extra (gradio)")
    home = tmp_path / "home"
    if kind == "file":
        home.write_text("")
    else:
        import errno

        home.mkdir()
        real = fileio.os.open

        def read_only(path, flags, *args, **kwargs):
            if str(path).startswith(str(home)):
                raise OSError(errno.EROFS, "Read-only file system", str(path))
            return real(path, flags, *args, **kwargs)

        monkeypatch.setattr(fileio.os, "open", read_only)
    monkeypatch.setenv("JOJOGAN_HOME", str(home))
    monkeypatch.setattr(jojogan.api.JoJoGAN, "from_pretrained", no_model)
    expected = "is a file, not a folder" if kind == "file" else "the file system is read-only"
    refused(["ui", "--base", work / "base.pt", "--port", "1"], tmp_path, ("cannot write", "styles", expected))


def test_align_face_all_checks_every_output_before_writing_the_first(tmp_path, shared, monkeypatch):
    # real photos, scaled down (dlib's detection time grows with the pixels): a third and a half of their
    # sides, where the faces (387 and 269 px) are still far larger than the 64 px crops
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, factor in (("chris_hemsworth", 3), ("iu", 2)):
        source = shared("images", "jojogan", "test_input", f"{name}.jpeg")
        reduced_photo(source, factor, photos / f"{name}.jpeg")
    out = tmp_path / "out"
    out.mkdir()
    (out / "iu_0.png").write_bytes(b"an earlier crop")  # the second input's output exists
    args = ["align", photos / "chris_hemsworth.jpeg", photos / "iu.jpeg", "--face", "all", "--size", "64"]
    refused([*args, "-o", out], tmp_path, "iu_0.png exists; pass --force")
    assert sorted(p.name for p in out.iterdir()) == ["iu_0.png"]  # the first input's crop was not written
    assert invoke([*args, "-o", out, "--force"]).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["chris_hemsworth_0.png", "iu_0.png"]


def test_stylize_face_all_refuses_earlier_face_files_before_any_model_loads(work, tmp_path, monkeypatch):  # noqa: F811
    out = tmp_path / "out"
    out.mkdir()
    (out / "face_face1_styled.png").write_bytes(b"an earlier face")
    monkeypatch.setattr(jojogan.api.JoJoGAN, "from_pretrained", no_model)
    args = ["stylize", work / "a" / "face.png", "--style", work / "style.safetensors", "--face", "all"]
    refused([*args, "-o", out], tmp_path, "face_face1_styled.png exists; pass --force")
