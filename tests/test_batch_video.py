"""Videos among photos in ``jojogan batch`` (local engine): one job and one manifest line per video, the
stylized video with every frame and the sound, a bad video as an error line, resuming."""

from __future__ import annotations

import pytest
from batch_helpers import manifest_lines
from video_clips import LINEAR, PIPE_SIZE, encoder_row, face_clip, tiny_base

from jojogan.batch import BatchError, BatchSettings, stylize_many
from jojogan.config import StylizeConfig
from jojogan.models import Models

from conftest import shared_path
from factories import reduced_photo
from factories import tiny_base as base_with_discriminator

av = pytest.importorskip("av")
pytest.importorskip("cv2")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FRAMES = 8


@pytest.fixture(scope="module", autouse=True)
def _linear_encoder():
    with encoder_row():
        yield


@pytest.fixture(scope="module")
def library(tmp_path_factory, dlib):
    """A folder with one photo, one tiny clip with sound and one corrupt video, and the batch's settings
    on the tiny base (the linear stand-in encoder, faces pasted back; a video's identity judged on 2
    frames of its track, not 8: each costs two dlib descriptors, a tenth of a CPU-second)."""
    from jojogan.video import VideoConfig
    from jojogan.video.track import TrackConfig

    root = tmp_path_factory.mktemp("batch_video")
    base, style = tiny_base(root)
    folder = root / "inputs"
    folder.mkdir()
    # at half its sides: a quarter of the pixels to detect in and paste into, her face still 269 px
    reduced_photo(shared_path("images", "jojogan", "test_input", "iu.jpeg"), 2, folder / "iu.jpeg")
    face_clip(folder / "clip.mov", FRAMES)
    (folder / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 8)
    settings = BatchSettings(
        style=style,
        config=StylizeConfig(inversion=LINEAR, paste=True, identity="auto"),
        models=Models(base=base, device="cpu"),
        video=VideoConfig(
            chunk_frames=4, batch_size=4, identity_frames=2, track=TrackConfig(min_face_size=32)
        ),
    )
    return folder, settings


def _by_name(outdir) -> dict[str, dict]:
    return {row["input"].rsplit("/", 1)[-1]: row for row in manifest_lines(outdir)}


@pytest.fixture(scope="module")
def first_run(library, tmp_path_factory):
    folder, settings = library
    outdir = tmp_path_factory.mktemp("styled")
    report = stylize_many([folder], settings, outdir, progress=False)
    return outdir, report


def test_a_video_is_one_job_with_every_frame_and_the_sound(first_run):
    from jojogan.video import io as vio

    outdir, report = first_run
    assert report.counts == {"ok": 2, "error": 1, "skipped": 0}
    rows = _by_name(outdir)
    photo, clip = rows["iu.jpeg"], rows["clip.mov"]
    assert photo["status"] == "ok" and photo["outputs"] == ["iu_styled.png"] and "frames" not in photo
    assert clip["status"] == "ok" and clip["error"] is None, clip
    assert clip["outputs"] == ["clip_styled.mov"]  # a .mov holds H.264: the container is kept
    assert clip["frames"] == FRAMES and clip["seconds"] > 0 and clip["faces"] == 1
    # a video's identity: its one face track's verdict (the median of its sampled frames, by dlib's rule)
    assert [(v["network"], v["threshold"]) for v in clip["identity"]] == [("dlib", 0.6)]
    info = vio.probe(outdir / "clip_styled.mov")
    assert len(list(vio.read_frames(info))) == FRAMES
    with av.open(str(outdir / "clip_styled.mov")) as container:
        (audio,) = container.streams.audio
        assert audio.codec_context.name == "aac"
    assert not [p for p in outdir.rglob("*") if p.name.startswith(".") or "partial" in p.name]


def test_a_bad_video_is_one_error_line(first_run):
    outdir, _ = first_run
    bad = _by_name(outdir)["bad.mp4"]
    assert bad["status"] == "error" and bad["outputs"] == [] and bad["frames"] == 0
    assert "\n" not in bad["error"] and "Traceback" not in bad["error"] and "bad.mp4" in bad["error"]
    assert not (outdir / "bad_styled.mp4").exists()


def test_a_bad_video_leaves_no_workspace(library, tmp_path):
    from jojogan.batch.job import WORK_FOLDER

    folder, settings = library
    report = stylize_many([folder / "bad.mp4"], settings, tmp_path, progress=False)
    assert report.counts == {"ok": 0, "error": 1, "skipped": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.jsonl"]
    assert not (tmp_path / WORK_FOLDER).exists()


def test_a_rerun_skips_every_video_and_photo(first_run, library):
    folder, settings = library
    outdir, _ = first_run
    before = (outdir / "clip_styled.mov").stat().st_mtime_ns
    again = stylize_many([folder], settings, outdir, progress=False)
    assert again.counts == {"ok": 0, "error": 0, "skipped": 3}
    assert (outdir / "clip_styled.mov").stat().st_mtime_ns == before


class _Stop(BaseException):
    """Ctrl-C in the middle of a video (not an ``Exception``: the batch does not make it an error line)."""


def _rendering(calls: list, stop_at: int | None = None):
    """``render_chunk`` that records each chunk's first frame, and stops the run at call ``stop_at``."""
    from jojogan.video import chunks

    real = chunks.render_chunk  # the pipeline's own (the test patches the pipeline module's name)

    def render_chunk(pipe, info, plan, book, start, *args, **kwargs):
        calls.append(start)
        if len(calls) == stop_at:
            raise _Stop
        return real(pipe, info, plan, book, start, *args, **kwargs)

    return render_chunk


def test_an_interrupted_batch_resumes_its_video_from_the_last_finished_chunk(
    library, first_run, tmp_path, monkeypatch
):
    from jojogan.batch.job import WORK_FOLDER
    from jojogan.video import pipeline

    folder, settings = library
    outdir = tmp_path / "out"
    calls: list[int] = []
    monkeypatch.setattr(pipeline, "render_chunk", _rendering(calls, stop_at=2))
    with pytest.raises(_Stop):
        stylize_many([folder / "clip.mov"], settings, outdir, progress=False)
    assert calls == [0, 4] and not (outdir / "clip_styled.mov").exists()
    assert (outdir / WORK_FOLDER).is_dir()  # the first chunk's work is kept
    calls.clear()
    monkeypatch.setattr(pipeline, "render_chunk", _rendering(calls))
    report = stylize_many([folder / "clip.mov"], settings, outdir, progress=False)
    assert calls == [4]  # only the chunk the interrupted run had not finished
    (row,) = report.rows
    assert row["status"] == "ok" and row["frames"] == FRAMES
    assert (row["chunks"], row["chunks_resumed"], row["chunk_workers"]) == (2, 3, 1)  # 2 codes, 1 segment
    done, _ = first_run
    assert (outdir / "clip_styled.mov").read_bytes() == (done / "clip_styled.mov").read_bytes()
    assert not (outdir / WORK_FOLDER).exists()


def test_a_video_output_already_there_needs_force(library, tmp_path):
    folder, settings = library
    (tmp_path / "clip_styled.mov").write_bytes(b"someone else's file")
    with pytest.raises(BatchError, match="force"):
        stylize_many([folder / "clip.mov"], settings, tmp_path, progress=False)
    assert (tmp_path / "clip_styled.mov").read_bytes() == b"someone else's file"


def test_video_settings_change_the_fingerprint_of_videos_only(library):
    """A photo's line never depends on the video settings; a video's does, unless they are the defaults
    (then it is the photos' fingerprint, as before videos had settings of their own)."""
    import dataclasses

    from jojogan.video import VideoConfig

    _, settings = library
    plain = dataclasses.replace(settings, video=None)
    photo = plain.fingerprint()
    default = dataclasses.replace(settings, video=VideoConfig())
    shot = dataclasses.replace(settings, video=VideoConfig(latent="shot"))
    assert default.fingerprint() == shot.fingerprint() == settings.fingerprint() == photo
    assert plain.fingerprint(video=True) == default.fingerprint(video=True) == photo
    assert shot.fingerprint(video=True) != photo != settings.fingerprint(video=True)
    assert dataclasses.replace(shot, video=None).fingerprint(video=True) == photo  # no stale cache copied


def test_a_container_without_h264_gives_an_mp4(library):
    from jojogan.batch.inputs import InputItem
    from jojogan.batch.job import video_output

    folder, _ = library
    assert video_output(InputItem(folder / "talk.webm", "talk")) == "talk_styled.mp4"
    assert video_output(InputItem(folder / "talk.MKV", "sub/talk")) == "sub/talk_styled.mkv"


@pytest.fixture(scope="module")
def optimize(library, tmp_path_factory):
    """Settings Ray's workers can load, and the local engine's outputs with them. The workers do not see
    this process's encoder table: the inversion is the optimiser's, 3 steps (its distance needs the
    base's discriminator). Two-frame chunks: the clip is four chunks."""
    import dataclasses

    folder, settings = library
    root = tmp_path_factory.mktemp("optimize")
    config = dataclasses.replace(settings.config, inversion="optimize", inversion_steps=3, identity=None)
    (root / "base").mkdir()
    base, _ = base_with_discriminator(root / "base", PIPE_SIZE, faces=1)  # the same generator, and a D
    settings = dataclasses.replace(
        settings, config=config, models=Models(base=base, device="cpu"),
        video=dataclasses.replace(settings.video, chunk_frames=2),
    )  # fmt: skip
    report = stylize_many([folder], settings, root / "local", progress=False)
    assert report.counts == {"ok": 2, "error": 1, "skipped": 0}
    return settings, root / "local"


def test_on_ray_a_video_is_split_over_two_workers_and_equals_the_local_engine(
    library, optimize, local_ray, tmp_path
):
    """Its four chunks go to both workers (two processes), the codes are smoothed across their borders
    once, the driver joins them: the file is the local engine's, byte for byte."""
    from jojogan.batch.job import WORK_FOLDER

    folder, _ = library
    settings, local = optimize
    remote = stylize_many([folder], settings, tmp_path / "ray", engine="ray", workers=2, progress=False)
    assert remote.counts == {"ok": 2, "error": 1, "skipped": 0}
    rows = _by_name(tmp_path / "ray")
    clip = rows["clip.mov"]
    assert clip["engine"] == "ray" and clip["frames"] == FRAMES and clip["faces"] == 1
    assert (clip["chunks"], clip["chunks_resumed"], clip["chunk_workers"]) == (4, 0, 2)
    assert rows["bad.mp4"]["status"] == "error" and "bad.mp4" in rows["bad.mp4"]["error"]
    for name in ("clip_styled.mov", "iu_styled.png"):
        assert (tmp_path / "ray" / name).read_bytes() == (local / name).read_bytes(), name
    assert not (tmp_path / "ray" / WORK_FOLDER).exists()


def test_on_ray_an_interrupted_video_resumes_from_its_last_finished_chunk(
    library, optimize, local_ray, tmp_path, monkeypatch
):
    """A batch stopped after two of the clip's four segments (here on the local engine), run again on
    Ray: its worker renders only the last two chunks, and the file is the uninterrupted one. One worker:
    the split over two is the test above's (each worker is a process that loads the pipeline, ~5 CPU-s)."""
    from jojogan.video import pipeline

    folder, _ = library
    settings, local = optimize
    calls: list[int] = []
    monkeypatch.setattr(pipeline, "render_chunk", _rendering(calls, stop_at=3))
    with pytest.raises(_Stop):
        stylize_many([folder / "clip.mov"], settings, tmp_path, progress=False)
    monkeypatch.undo()
    report = stylize_many([folder / "clip.mov"], settings, tmp_path, engine="ray", workers=1, progress=False)
    (row,) = report.rows
    assert row["status"] == "ok", row
    assert (row["chunks"], row["chunks_resumed"], row["chunk_workers"]) == (4, 4 + 2, 1)
    assert (tmp_path / "clip_styled.mov").read_bytes() == (local / "clip_styled.mov").read_bytes()


def test_the_ray_aligner_pool_leaves_a_video_to_its_stylize_actor(library):
    """With an alignment pool, a video passes through it untouched (tracked later, frame by frame)."""
    import pickle

    from jojogan.batch.inputs import InputItem
    from jojogan.batch.ray_engine import _RayAligner

    folder, settings = library
    aligner = _RayAligner(settings, PIPE_SIZE)
    items = [InputItem(folder / "clip.mov", "clip"), InputItem(folder / "iu.jpeg", "iu")]
    batch = aligner({"index": [0, 1], "item": [pickle.dumps(item) for item in items]})
    video, photo = (pickle.loads(blob) for blob in batch["aligned"])
    assert video.crops == [] and video.error is None
    assert len(photo.crops) == 1 and photo.error is None
