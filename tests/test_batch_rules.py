"""Issue 23 for ``jojogan batch``: the output rule, listing that cannot hang, and a manifest that is parsed,
never trusted. Aligned tiny faces (no dlib), a 128 px generator, 3 inversion steps: seconds per run."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from batch_helpers import fast_settings, manifest_lines, no_temporary_files
from test_cli import FAST, run, style, workdir  # noqa: F401 - the tiny base and style fixtures

from jojogan import fileio
from jojogan.batch import BatchError, stylize_many
from jojogan.batch.inputs import input_sha256, list_inputs, scan_inputs
from jojogan.batch.manifest import read_manifest
from jojogan.fileio import OutputError

from conftest import time_cap

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def settings(workdir, style):  # noqa: F811
    return fast_settings(workdir, style, aligned=True, identity=None)


@pytest.fixture
def album(workdir, tmp_path):  # noqa: F811
    folder = tmp_path / "album"
    folder.mkdir()
    shutil.copy(workdir / "face0.png", folder / "a.png")
    return folder


def cli(workdir, style, *args):  # noqa: F811
    base = ["batch", "--style", style, "--base", workdir / "base.pt", *FAST, "--aligned"]
    return run([*base, "--no-identity", "--device", "cpu", "--no-progress", *args])


# ------------------------------------------------------------------------------------------- 1. outputs
def test_an_input_named_like_an_output_is_never_replaced(workdir, style, album):  # noqa: F811
    """The probe's case: photo.jpg and a user's other.jpg saved as a_styled.png, -o the same folder."""
    shutil.copy(workdir / "face1.png", album / "a_styled.png")
    before = digests(album)
    result = cli(workdir, style, album, "-o", album)
    assert result.exit_code == 1 and "would replace the input" in result.output, result.output
    assert "a_styled.png" in result.output and "Traceback" not in result.output
    assert digests(album) == before  # nothing written, nothing replaced


def test_outputs_in_the_input_folder_are_never_listed_again(workdir, style, album):  # noqa: F811
    assert cli(workdir, style, album, "-o", album).exit_code == 0
    styled = (album / "a_styled.png").read_bytes()
    again = cli(workdir, style, album, "-o", album)
    assert again.exit_code == 0 and "0 ok, 0 errors, 1 skipped" in again.output, again.output
    assert [Path(row["input"]).name for row in manifest_lines(album)] == ["a.png"]
    assert (album / "a_styled.png").read_bytes() == styled


def test_an_output_folder_inside_the_input_folder_is_never_walked(workdir, style, album):  # noqa: F811
    inner = album / "out"
    for _ in range(2):
        result = cli(workdir, style, album, "-o", inner)
        assert result.exit_code == 0, result.output
        assert [Path(row["input"]).name for row in manifest_lines(inner)] == ["a.png"]
    glob = cli(workdir, style, f"{album}/**", "-o", inner)
    assert "0 ok, 0 errors, 1 skipped" in glob.output, glob.output


def test_an_output_that_is_a_link_to_an_input_is_refused(workdir, style, album, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    out.mkdir()
    other = tmp_path / "keep.png"
    shutil.copy(workdir / "face1.png", other)
    os.link(other, out / "a_styled.png")  # a hard link: another name of the same file
    result = cli(workdir, style, album, other, "-o", out)
    assert result.exit_code == 1 and "would replace the input" in result.output, result.output
    (out / "a_styled.png").unlink()
    (out / "a_styled.png").symlink_to(other)
    result = cli(workdir, style, album, other, "-o", out, "--force")  # force never replaces an input
    assert result.exit_code == 1 and "would replace the input" in result.output, result.output
    assert other.read_bytes() == (workdir / "face1.png").read_bytes()


def test_a_rerun_with_other_settings_says_what_it_would_redo(workdir, style, album, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    assert cli(workdir, style, album, "-o", out).exit_code == 0
    before = digests(out)
    result = cli(workdir, style, album, "--alpha", "0.5", "-o", out)
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: 1 photo(s) would be redone (1 with other settings)"), line
    assert "a_styled.png" in line and "--force" in line
    assert digests(out) == before
    forced = cli(workdir, style, album, "--alpha", "0.5", "-o", out, "--force")
    assert forced.exit_code == 0 and "1 ok" in forced.output
    assert digests(out)["a_styled.png"] != before["a_styled.png"]


def test_a_full_disk_stops_the_batch_in_one_line(settings, album, tmp_path, monkeypatch):
    real = os.open

    def full(path, flags, *args, **kwargs):
        if "_styled.png." in str(path) and str(path).endswith(fileio.TEMP_SUFFIX):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(fileio.os, "open", full)
    out = tmp_path / "out"
    with pytest.raises(OutputError, match=r"a_styled.png: no space is left on the device"):
        stylize_many([album], settings, out, progress=False)
    assert not (out / "a_styled.png").exists() and no_temporary_files(out)
    assert read_manifest(out / "manifest.jsonl") == {}  # the photo is not recorded as done


# ------------------------------------------------------------------------------------------- 2. listing
def test_symlink_loops_are_walked_once(tmp_path):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    (photos / "a.jpg").write_bytes(b"a")
    (photos / "sub" / "b.png").write_bytes(b"b")
    (photos / "loop").symlink_to("..")
    (photos / "sub" / "up").symlink_to("../..")
    (photos / "root").symlink_to("/")
    (tmp_path / "outside.jpg").write_bytes(b"not below photos")
    with time_cap(20, "listing a folder with symlink loops"):
        for spec in (photos, f"{photos}/**/*.jpg", f"{photos}/**", f"{photos}/*/*.png"):
            names = sorted(Path(item.path).name for item in list_inputs([spec]))
            assert names in (["a.jpg", "b.png"], ["a.jpg"], ["b.png"]), (spec, names)
            assert len(names) == len(set(names))


def test_pipes_and_devices_are_refused_in_one_line_never_read(album, settings, tmp_path):
    os.mkfifo(album / "pipe.jpg")
    (tmp_path / "list.txt").write_text(f"/dev/zero\n{album / 'pipe.jpg'}\n")
    with time_cap(60, "a batch naming a FIFO and /dev/zero"):
        report = stylize_many([album, tmp_path / "list.txt"], settings, tmp_path / "out", progress=False)
    errors = {Path(r["input"]).name: r["error"] for r in report.rows if r["status"] == "error"}
    assert "named pipe (FIFO), not a regular file" in errors["pipe.jpg"]
    assert "character device, not a regular file" in errors["zero"]
    assert report.counts == {"ok": 1, "error": 2, "skipped": 0}
    (tmp_path / "devices.txt").symlink_to("/dev/zero")  # a list file that is itself a device
    with pytest.raises(BatchError, match="devices.txt is a character device, not a regular file"):
        list_inputs([tmp_path / "devices.txt"])


def test_the_number_of_listed_photos_is_bounded(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.jpg").write_bytes(b"x")
    with pytest.raises(BatchError, match=r"more than 2 photos are listed .* split it into several runs"):
        scan_inputs([tmp_path], max_photos=2)
    assert len(scan_inputs([tmp_path], max_photos=3).items) == 3


def test_an_unreadable_folder_is_reported_not_dropped(workdir, style, album, monkeypatch):  # noqa: F811
    """Root reads every folder, so the kernel's refusal is injected where the folder is opened."""
    (album / "locked").mkdir()
    (album / "locked" / "b.png").write_bytes(b"x")
    real = os.scandir

    def refuse(path="."):
        if Path(path).name == "locked":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", refuse)
    result = cli(workdir, style, album, "-o", album.parent / "out")
    assert result.exit_code == 1, result.output
    expected = f"error: {album / 'locked'}: the folder cannot be read (Permission denied)"
    assert expected in result.output
    assert "1 ok, 0 errors, 0 skipped, 1 folders not readable" in result.output


def test_a_photo_larger_than_the_bound_is_not_hashed(tmp_path, monkeypatch):
    from jojogan.batch import inputs

    monkeypatch.setattr(inputs, "MAX_PHOTO_BYTES", 10)
    (tmp_path / "big.jpg").write_bytes(b"x" * 11)
    (item,) = list_inputs([tmp_path / "big.jpg"])
    with pytest.raises(OSError, match="11 bytes, above the 10 a photo may have"):
        input_sha256(item)


# ------------------------------------------------------------------------------------------- 3. manifest
@pytest.mark.parametrize(
    "tail",
    [
        b'{"input": "A", "status": "ok", "outputs": 5, "input_sha256": null}\n',
        b"\xff\xfe not UTF-8 \x80\n",
        b'{"input": "A", "status": "ok", "outputs": ["../outside.png"]}\n',
        b'{"input": "A", "status": "ok", "outputs": ["/etc/hostname"]}\n',
        b"[" * 100_000 + b"\n",
    ],
    ids=["outputs-5", "not-utf8", "dotdot", "absolute", "deep-json"],
)
def test_a_tampered_manifest_line_is_never_trusted(settings, album, tmp_path, tail):
    out = tmp_path / "out"
    first = stylize_many([album], settings, out, progress=False)
    row = first.rows[0]
    manifest = out / "manifest.jsonl"
    manifest.write_bytes(manifest.read_bytes() + tail.replace(b'"A"', json.dumps(row["input"]).encode()))
    assert read_manifest(manifest)[row["input"]] == row  # the earlier good line still stands
    again = stylize_many([album], settings, out, progress=False)
    assert again.counts == {"ok": 0, "error": 0, "skipped": 1}
    lines = manifest.read_bytes().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["outputs"] == ["a_styled.png"]  # rewritten clean


def test_a_manifest_whose_only_line_points_outside_is_redone_not_skipped(settings, album, tmp_path):
    out = tmp_path / "out"
    first = stylize_many([album], settings, out, progress=False)
    row = {**first.rows[0], "outputs": ["../album/a.png"]}  # an output "done" outside the output folder
    (out / "manifest.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(BatchError, match=r"1 photo\(s\) would be redone \(1 not in the manifest\)"):
        stylize_many([album], settings, out, progress=False)
    assert stylize_many([album], settings, out, progress=False, force=True).counts["ok"] == 1


def test_a_manifest_that_is_a_folder_is_one_line(settings, album, tmp_path):
    (tmp_path / "out" / "manifest.jsonl").mkdir(parents=True)
    with pytest.raises(BatchError, match=r"manifest.jsonl is a folder; it is where the batch keeps"):
        stylize_many([album], settings, tmp_path / "out", progress=False)


def test_a_face_index_means_the_same_to_batch_and_stylize(workdir, style, tmp_path, shared):  # noqa: F811
    """--face counts from the left (negative: from the right) in both commands; an index the photo does
    not have is the same one line in both (stylize's error, batch's manifest line). The photo is a
    one-face portrait at half its size: what counts is how many faces it has, and dlib's detector costs
    a quarter as much."""
    from PIL import Image

    photo = tmp_path / "iu.jpeg"
    with Image.open(shared("images", "jojogan", "test_input", "iu.jpeg")) as full:
        full.resize((full.width // 2, full.height // 2), Image.Resampling.LANCZOS).save(photo)
    base = ["--style", style, "--base", workdir / "base.pt", *FAST, "--no-identity", "--device", "cpu"]
    single = run(["stylize", photo, *base, "--face", "-3", "-o", tmp_path / "o.png"])
    batch = run(["batch", photo, *base, "--face", "-3", "--no-progress", "-o", tmp_path / "o"])
    assert single.exit_code == 1 and batch.exit_code == 1, (single.output, batch.output)
    line = single.output.strip().splitlines()[-1].removeprefix("Error: ")
    assert "Traceback" not in single.output + batch.output
    assert manifest_lines(tmp_path / "o")[0]["error"] == line, (line, batch.output)
