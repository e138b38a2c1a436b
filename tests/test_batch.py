"""Batch stylization with the local engine: real photos mixed with bad files, resuming, interruption."""

from __future__ import annotations

import io
import sys

import pytest
from batch_helpers import (
    BAD,
    GOOD,
    check_manifest,
    fast_settings,
    manifest_lines,
    no_temporary_files,
    photo_folder,
    pixels,
)
from test_cli import FAST, run, style, workdir  # noqa: F401 - the tiny base and style fixtures

from jojogan.batch import BatchError, BatchSettings, EngineUnavailableError, list_inputs, stylize_many
from jojogan.batch.manifest import read_manifest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def pixels_of(data: bytes):
    return pixels(io.BytesIO(data))


@pytest.fixture(scope="module")
def photos(tmp_path_factory, workdir):  # noqa: F811
    pytest.importorskip("dlib")
    from conftest import shared_path

    return photo_folder(tmp_path_factory.mktemp("batch"), lambda *parts: shared_path(*parts))


@pytest.fixture(scope="module")
def single(workdir, style, photos):  # noqa: F811
    """Each good photo through single-photo ``jojogan stylize`` (the reference for the batch's bytes)."""
    outputs = {}
    for stem in GOOD:
        photo = next(photos.rglob(f"{stem}.jpeg"))
        target = workdir / f"single_{stem}.png"
        result = run(["stylize", photo, "--style", style, "--base", workdir / "base.pt", *FAST, "-o", target])
        assert result.exit_code == 0, result.output
        outputs[stem] = target.read_bytes()
    return outputs


def test_cli_batch_then_rerun_skips_everything(workdir, style, photos, single, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    args = ["batch", photos, "--style", style, "--base", workdir / "base.pt", *FAST, "--device", "cpu"]
    result = run([*args, "-o", out, "--no-progress"])
    assert result.exit_code == 1, result.output  # some inputs failed: the exit status says so
    assert f"{len(GOOD)} ok, {len(BAD)} errors, 0 skipped" in result.output
    rows = check_manifest(out, photos)
    for stem in GOOD:
        (name,) = rows[f"{stem}.jpeg"]["outputs"]
        assert (out / name).read_bytes() == single[stem]  # byte for byte the single-photo command's file
    assert no_temporary_files(out)

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    again = run([*args, "-o", out, "--no-progress"])
    assert f"0 ok, 0 errors, {len(GOOD) + len(BAD)} skipped" in again.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == before  # nothing rewritten
    check_manifest(out, photos)


def test_changed_settings_or_content_rerun_only_what_changed(workdir, style, photos, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    good = [next(photos.rglob(f"{stem}.jpeg")) for stem in GOOD]
    settings = fast_settings(workdir, style, identity_net=None)
    first = stylize_many(good, settings, out, progress=False)
    assert first.counts == {"ok": 2, "error": 0, "skipped": 0} and first.first_result_seconds > 0
    other = stylize_many(
        good, fast_settings(workdir, style, identity_net=None, alpha=0.5), out, progress=False
    )
    assert other.counts["ok"] == 2  # another alpha is another fingerprint
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "iu.jpeg").write_bytes(good[1].read_bytes())
    report = stylize_many([copy / "iu.jpeg"], settings, tmp_path / "out2", progress=False)
    assert report.counts["ok"] == 1
    # the manifest keeps lines for inputs a later run did not list
    assert len(read_manifest(out / "manifest.jsonl")) == 2


def test_interrupted_run_resumes_to_the_same_outputs(workdir, style, photos, single, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    settings = fast_settings(workdir, style)
    seen = []

    def stop_after_first_photo(row):
        seen.append(row)
        if len(seen) == 1:
            raise KeyboardInterrupt  # what Ctrl-C (or a kill between photos) does to the driver

    with pytest.raises(KeyboardInterrupt):
        stylize_many([photos], settings, out, progress=False, on_row=stop_after_first_photo)
    assert no_temporary_files(out)
    finished = manifest_lines(out)
    assert 1 <= len(finished) < len(GOOD) + len(BAD)  # the unreadable ones and the first photo only
    report = stylize_many([photos], settings, out, progress=False)
    assert report.counts["skipped"] == len(finished)
    rows = check_manifest(out, photos)
    for stem in GOOD:
        assert (out / rows[f"{stem}.jpeg"]["outputs"][0]).read_bytes() == single[stem]


def test_a_killed_write_leaves_a_torn_line_that_is_ignored(tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text('{"input": "/a.jpg", "status": "ok"}\n{"input": "/b.jpg", "sta')
    assert list(read_manifest(manifest)) == ["/a.jpg"]


def test_inputs_from_folders_globs_and_lists(tmp_path):
    (tmp_path / "a" / "sub").mkdir(parents=True)
    for name in ("a/x.jpg", "a/sub/x.png", "a/readme.md", "b.jpg"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "list.csv").write_text("path\nb.jpg\na/x.jpg\n")
    (tmp_path / "list.txt").write_text("# photos\nmissing.jpg\n")
    items = list_inputs(
        [tmp_path / "a", str(tmp_path / "*.jpg"), tmp_path / "list.csv", tmp_path / "list.txt"]
    )
    names = [(item.path.relative_to(tmp_path).as_posix(), item.stem) for item in items]
    # folders: images only, recursively, named by their path below the folder; duplicates dropped;
    # a listed file that does not exist stays (the batch reports it)
    assert names == [("a/sub/x.png", "sub/x"), ("a/x.jpg", "x"), ("b.jpg", "b"), ("missing.jpg", "missing")]
    with pytest.raises(BatchError, match="no photos found"):
        list_inputs([tmp_path / "nothing*.jpg"])


def test_two_photos_with_one_name_get_different_outputs(tmp_path):
    for folder in ("p", "q"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "me.jpg").write_bytes(b"")
    stems = [item.stem for item in list_inputs([tmp_path / "p" / "me.jpg", tmp_path / "q" / "me.jpg"])]
    assert stems[0] == "me" and stems[1].startswith("me-") and len(set(stems)) == 2
    assert stems == [i.stem for i in list_inputs([tmp_path / "p" / "me.jpg", tmp_path / "q" / "me.jpg"])]


def test_fingerprint_follows_file_contents_not_paths(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    a.write_bytes(b"one")
    b.write_bytes(b"one")
    assert BatchSettings(style=a).fingerprint() == BatchSettings(style=b).fingerprint()
    b.write_bytes(b"two")
    assert BatchSettings(style=a).fingerprint() != BatchSettings(style=b).fingerprint()
    assert BatchSettings(style=a).fingerprint() != BatchSettings(style=a, alpha=0.5).fingerprint()
    with pytest.raises(ValueError, match="face must be"):
        BatchSettings(style=a, face="biggest")


def test_ray_engine_without_ray_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(EngineUnavailableError, match=r"jojogan\[ray\]"):
        stylize_many([tmp_path], BatchSettings(style=tmp_path / "s"), tmp_path / "out", engine="ray")
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_face_all_on_a_one_face_photo_matches_the_largest_face(workdir, style, photos, single, tmp_path):  # noqa: F811
    """--face all aligns every face and stylizes each crop through the same code path as one face."""
    iu = photos / "more" / "iu.jpeg"
    settings = fast_settings(workdir, style, face="all")
    report = stylize_many([iu], settings, tmp_path / "all", progress=False)
    (row,) = report.rows
    assert row["status"] == "ok" and row["faces"] == 1 and row["outputs"] == ["iu_face0_styled.png"]
    assert (pixels(tmp_path / "all" / "iu_face0_styled.png") == pixels_of(single["iu"])).all()

    pasted = stylize_many(
        [iu], fast_settings(workdir, style, face="all", paste=True), tmp_path / "p", progress=False
    )
    assert pasted.rows[0]["outputs"] == ["iu_styled.png"]
    assert pixels(tmp_path / "p" / "iu_styled.png").shape == pixels(iu).shape
