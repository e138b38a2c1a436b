"""Batch stylization with the local engine: real photos mixed with bad files, resuming, interruption."""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from batch_helpers import (
    BAD,
    GOOD,
    check_manifest,
    comparable,
    fast_settings,
    kill_after_first_line,
    manifest_lines,
    no_temporary_files,
    photo_folder,
    pixels,
)
from test_cli import FAST, run, style, workdir  # noqa: F401 - the tiny base and style fixtures

from jojogan.batch import BatchError, BatchSettings, EngineUnavailableError, list_inputs, stylize_many
from jojogan.batch.manifest import read_manifest
from jojogan.batch.ray_engine import plan_resources
from jojogan.config import StylizeConfig

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def pixels_of(data: bytes):
    return pixels(io.BytesIO(data))


@pytest.fixture(scope="module")
def photos(tmp_path_factory, workdir, dlib):  # noqa: F811
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


def batch_args(workdir, style, photos, out):  # noqa: F811
    base = workdir / "base.pt"
    return [
        "batch",
        photos,
        "--style",
        style,
        "--base",
        base,
        *FAST,
        "--device",
        "cpu",
        "--no-progress",
        "-o",
        out,
    ]


@pytest.fixture(scope="module")
def full_run(workdir, style, photos, tmp_path_factory):  # noqa: F811
    """One uninterrupted ``jojogan batch`` of the photo folder: its output folder and its CLI result."""
    out = tmp_path_factory.mktemp("full") / "out"
    return out, run(batch_args(workdir, style, photos, out))


def test_cli_batch_then_rerun_skips_everything(workdir, style, photos, single, full_run):  # noqa: F811
    out, result = full_run
    args = batch_args(workdir, style, photos, out)
    assert result.exit_code == 1, result.output  # some inputs failed: the exit status says so
    assert f"{len(GOOD)} ok, {len(BAD)} errors, 0 skipped" in result.output
    rows = check_manifest(out, photos)
    for stem in GOOD:
        (name,) = rows[f"{stem}.jpeg"]["outputs"]
        assert (out / name).read_bytes() == single[stem]  # byte for byte the single-photo command's file
    assert no_temporary_files(out)

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    lines = (out / "manifest.jsonl").read_text()
    again = run(args)
    assert f"0 ok, 0 errors, {len(GOOD) + len(BAD)} skipped" in again.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == before  # nothing rewritten
    check_manifest(out, photos)
    (out / "manifest.jsonl").write_text(lines)  # as the uninterrupted run left it, for the tests below


def test_killed_local_run_resumes_to_the_uninterrupted_outputs(
    workdir,  # noqa: F811
    style,  # noqa: F811
    photos,
    single,
    full_run,
    tmp_path,
):
    """SIGKILL the driver once its first manifest line is written; a rerun gives the uninterrupted outputs."""
    out = tmp_path / "out"
    left = kill_after_first_line(batch_args(workdir, style, photos, out), out, limit_s=120)
    assert 1 <= len(left) < len(GOOD) + len(BAD)
    # every line left is a finished photo: ok, or an error with its reason (none for photos never reached)
    assert all(row["status"] == "ok" or row["error"] for row in left)
    assert no_temporary_files(out)
    for row in left:
        for name in row["outputs"]:
            assert (out / name).read_bytes() == single[Path(name).name.removesuffix("_styled.png")]
    again = run(batch_args(workdir, style, photos, out))
    assert f"{len(left)} skipped" in again.output
    rows = check_manifest(out, photos)
    assert comparable(manifest_lines(out)) == comparable(manifest_lines(full_run[0]))
    for stem in GOOD:
        (name,) = rows[f"{stem}.jpeg"]["outputs"]
        assert (out / name).read_bytes() == (full_run[0] / name).read_bytes() == single[stem]


def test_changed_settings_or_content_rerun_only_what_changed(workdir, style, tmp_path):  # noqa: F811
    """Which photos a rerun redoes follows the settings' fingerprint and the photos' contents, never what
    the photos show: the tiny base's own aligned faces stand in for photos (``aligned``: five runs without
    face detection, 0.3 CPU-s a photo, which is not what this test is about)."""
    out = tmp_path / "out"
    good = [workdir / "face0.png", workdir / "face1.png"]
    settings = fast_settings(workdir, style, identity=None, aligned=True)
    first = stylize_many(good, settings, out, progress=False)
    assert first.counts == {"ok": 2, "error": 0, "skipped": 0} and first.first_result_seconds > 0
    changed = fast_settings(workdir, style, identity=None, aligned=True, alpha=0.5)
    # another alpha is another fingerprint: the rerun says what it would redo, and redoes it with force
    with pytest.raises(BatchError, match=r"2 photo\(s\) would be redone \(2 with other settings\)"):
        stylize_many(good, changed, out, progress=False)
    other = stylize_many(good, changed, out, progress=False, force=True)
    assert other.counts["ok"] == 2
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "face1.png").write_bytes(good[1].read_bytes())
    report = stylize_many([copy / "face1.png"], settings, tmp_path / "out2", progress=False)
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
    half = BatchSettings(style=a, config=StylizeConfig(identity="auto", alpha=0.5))
    assert BatchSettings(style=a).fingerprint() != half.fingerprint()
    with pytest.raises(ValueError, match="face must be"):
        StylizeConfig(face="biggest")


def test_ray_engine_without_ray_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(EngineUnavailableError, match=r"jojogan\[ray\]"):
        stylize_many([tmp_path], BatchSettings(style=tmp_path / "s"), tmp_path / "out", engine="ray")
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_face_all_on_a_one_face_photo_matches_the_largest_face(workdir, style, photos, single, tmp_path):  # noqa: F811
    """--face all aligns every face and stylizes each crop through the same code path as one face. Pixels
    are compared, not files: no identity measured (the single-photo file's metadata holds its score)."""
    iu = photos / "more" / "iu.jpeg"
    every_face = {"face": "all", "identity": None}
    report = stylize_many([iu], fast_settings(workdir, style, **every_face), tmp_path / "all", progress=False)
    (row,) = report.rows
    assert row["status"] == "ok" and row["faces"] == 1 and row["outputs"] == ["iu_face0_styled.png"]
    assert (pixels(tmp_path / "all" / "iu_face0_styled.png") == pixels_of(single["iu"])).all()

    pasted = stylize_many(
        [iu], fast_settings(workdir, style, **every_face, paste=True), tmp_path / "p", progress=False
    )
    assert pasted.rows[0]["outputs"] == ["iu_styled.png"]
    assert pixels(tmp_path / "p" / "iu_styled.png").shape == pixels(iu).shape


def test_plan_resources_from_the_cluster():
    cpu_only = plan_resources({"CPU": 2.0, "memory": 8e9}, workers=2)
    assert (cpu_only.stylize_actors, cpu_only.stylize_resources, cpu_only.align_actors) == (
        2,
        {"num_cpus": 1},
        0,
    )
    assert cpu_only.note == ""  # every CPU stylizes, so each stylize actor aligns its own photos
    spare = plan_resources({"CPU": 2.0}, workers=1)
    assert (spare.stylize_actors, spare.align_actors) == (1, 1)  # the CPU left over aligns
    gpus = plan_resources({"CPU": 16.0, "GPU": 2.0}, workers=4)
    assert gpus.stylize_actors == 2 and gpus.stylize_resources == {"num_gpus": 1, "num_cpus": 1}
    assert gpus.align_actors == 14 and "2 GPUs" in gpus.note  # the CPUs left over align
    one_gpu = plan_resources({"CPU": 1.0, "GPU": 1.0}, workers=1)
    assert (one_gpu.stylize_actors, one_gpu.align_actors) == (1, 1)  # a GPU actor never aligns itself
    few = plan_resources({"CPU": 3.0}, workers=8)
    assert few.stylize_actors == 3 and few.align_actors == 0 and "3 CPUs" in few.note
    assert plan_resources({}, workers=2).stylize_actors == 1  # a cluster reporting nothing still runs


def test_a_batched_encoder_inverts_the_faces_of_a_batch_together_in_order(workdir, style, monkeypatch):  # noqa: F811
    """JoJoGAN.stylize_many: one encoder call for the batch, each code back with its own face. The encoder
    is a row added to the ENCODERS table, as a new encoder would be."""
    import torch

    from jojogan.api import JoJoGAN
    from jojogan.inversion.encoders import ENCODERS, Encoder

    calls = []

    class PixelMeanEncoder(Encoder):  # a code that depends on its own face only, like e4e's
        name = "pixel-mean"

        def invert(self, faces, request):
            calls.append(len(faces))
            generator = self.context.generator
            shape = (generator.n_latent, generator.style_dim)
            return torch.stack([torch.full(shape, np.asarray(i).mean() / 255 - 0.5) for i in faces])

    monkeypatch.setitem(ENCODERS, PixelMeanEncoder.name, PixelMeanEncoder)
    pipe = JoJoGAN.from_pretrained(base=workdir / "base.pt")
    faces = [workdir / "face0.png", workdir / "face1.png"]
    together = pipe.stylize_many(faces, style, inversion="pixel-mean", aligned=True)
    alone = [pipe.stylize(face, style, inversion="pixel-mean", aligned=True) for face in faces]
    assert calls == [2, 1, 1]
    assert not torch.equal(alone[0].face.w_plus, alone[1].face.w_plus)
    for one, batched in zip(alone, together, strict=True):
        assert torch.equal(one.face.w_plus, batched.face.w_plus) and one.face.name == batched.face.name
        assert one.face.inversion == "pixel-mean"
        difference = np.abs(np.asarray(one.image, dtype=int) - np.asarray(batched.image, dtype=int))
        assert difference.max() <= 1


def test_file_uris_are_local_paths(photos):  # noqa: F811
    assert list_inputs([photos.as_uri()]) == list_inputs([photos])
    iu = photos / "more" / "iu.jpeg"
    assert list_inputs([iu.as_uri()]) == list_inputs([iu])


def test_inputs_on_a_pyarrow_filesystem(workdir, style, photos, single, tmp_path):  # noqa: F811
    """A filesystem that is not the plain local one is listed and read through pyarrow only."""
    fs = pytest.importorskip(
        "pyarrow.fs", reason="pyarrow comes with the ray extra: pip install 'jojogan[ray]'"
    )
    root = tmp_path / "bucket"
    (root / "photos" / "more").mkdir(parents=True)
    shutil.copy(photos / "more" / "iu.jpeg", root / "photos" / "more" / "iu.jpeg")
    shutil.copy(photos / "notes.jpg", root / "photos" / "notes.jpg")
    (root / "list.txt").write_text("photos/more/iu.jpeg\nphotos/notes.jpg\nphotos/gone.jpg\n")
    tree = fs.SubTreeFileSystem(str(root), fs.LocalFileSystem())
    items = list_inputs(["photos"], filesystem=tree)
    assert [(str(i.path), i.stem) for i in items] == [
        ("photos/more/iu.jpeg", "more/iu"),
        ("photos/notes.jpg", "notes"),
    ]
    assert all(i.filesystem is tree for i in items)

    out = tmp_path / "out"
    report = stylize_many(["list.txt"], fast_settings(workdir, style), out, filesystem=tree, progress=False)
    rows = {row["input"]: row for row in report.rows}
    assert rows["photos/more/iu.jpeg"]["status"] == "ok"
    assert (out / "iu_styled.png").read_bytes() == single["iu"]  # read through pyarrow, the same bytes
    # errors name the photo as given, not the temporary copy it was decoded from
    error = rows["photos/notes.jpg"]["error"]
    assert "photos/notes.jpg" in error and "jojogan-input" not in error and "not an image" in error
    assert "cannot be read" in rows["photos/gone.jpg"]["error"]
    again = stylize_many(["list.txt"], fast_settings(workdir, style), out, filesystem=tree, progress=False)
    assert again.counts["skipped"] == 2  # content hashes read through pyarrow too (gone.jpg: an error again)


def test_a_uri_without_pyarrow_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.fs", None)
    with pytest.raises(EngineUnavailableError, match=r"needs pyarrow: pip install 'jojogan\[ray\]'"):
        list_inputs(["s3://bucket/photos/"])


def test_the_alignment_thread_stays_ahead_in_order_and_stops_when_told(tmp_path):
    """A bounded prefetch: photos in input order, never more than the queue holds, and a stop (an
    interrupted batch) ends the thread even while its queue is full."""
    import queue
    import threading
    import time

    from jojogan.batch.local import _align_ahead

    items = list_inputs([tmp_path / f"missing{i}.jpg" for i in range(5)])  # each fails fast: an error
    ready, stop = queue.Queue(maxsize=2), threading.Event()
    thread = threading.Thread(
        target=_align_ahead, args=(items, fast_settings(tmp_path, tmp_path), 64, ready, stop)
    )
    thread.start()
    first = ready.get(timeout=10)
    assert "missing0.jpg" in first.error and first.crops == []
    deadline = time.monotonic() + 10
    while not ready.full() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready.qsize() == 2 and thread.is_alive()  # waiting for room, not aligning further ahead
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert ["missing1.jpg" in ready.get().error, "missing2.jpg" in ready.get().error] == [True, True]
