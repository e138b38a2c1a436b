"""A video's run split into steps (jojogan.video.chunks), as the Ray engine splits it over workers: the
steps in any order of chunks, each on its own pipeline, give stylize_video's file byte for byte, codes
smoothed across chunk borders included, and they resume its interrupted run."""

from __future__ import annotations

import pytest
from video_clips import LINEAR, face_clip, tiny_base, tiny_video_pipe

from jojogan.api import JoJoGAN
from jojogan.config import StylizeConfig
from jojogan.errors import JojoganError
from jojogan.video import VideoConfig, stylize_video
from jojogan.video import chunks as steps
from jojogan.video.store import store_path
from jojogan.video.track import TrackConfig

pytest.importorskip("av")
pytest.importorskip("cv2")

FRAMES = 8
# two-frame chunks, a code window of 3 sigmas (about 5 frames) on each side: every chunk's codes read
# its neighbours'
VIDEO = VideoConfig(chunk_frames=2, batch_size=3, code_sigma=1.5, track=TrackConfig(min_face_size=32))


@pytest.fixture(scope="module", autouse=True)
def _linear_encoder():
    from video_clips import encoder_row

    with encoder_row():
        yield


def _config() -> StylizeConfig:
    """Faces pasted back with the photo's colour (smoothed over time too), the linear stand-in encoder."""
    return StylizeConfig(inversion=LINEAR, paste=True, match_colour=True)


@pytest.fixture(scope="module")
def whole(tmp_path_factory, dlib):
    """The clip, and stylize_video's file of it (one process, every step in order)."""
    folder = tmp_path_factory.mktemp("chunks")
    pipe, style = tiny_video_pipe(folder)
    clip = face_clip(folder / "clip.mov", FRAMES)
    result = stylize_video(pipe, clip.path, folder / "whole.mov", style, _config(), VIDEO)
    return folder, pipe, style, clip, result.path.read_bytes()


def test_steps_in_any_chunk_order_on_two_pipelines_give_the_one_process_file(whole, tmp_path):
    folder, pipe, style, clip, expected = whole
    other = JoJoGAN.from_pretrained(base=tiny_base(tmp_path)[0])  # a second "worker": its own models
    job = steps.prepare(pipe, clip.path, tmp_path / "split.mov", style, _config(), VIDEO)
    assert len(job.chunks) == FRAMES // 2 and job.tracks == 1 and job.frames == FRAMES
    workers = [pipe, other]
    for turn, chunk in enumerate([3, 0, 2, 1]):
        steps.invert(workers[turn % 2], job, chunk)
    assert job.todo("codes") == [] and job.todo("render") == [0, 1, 2, 3]
    assert steps.smooth(job) == 4
    _check_smoothed_across_borders(job)
    for turn, chunk in enumerate([1, 3, 0, 2]):
        steps.render(workers[turn % 2], job, chunk)
    assert steps.join(job).read_bytes() == expected
    assert not store_path(tmp_path / "split.mov").exists()


def _check_smoothed_across_borders(job) -> None:
    """The stored final codes are the whole track's smoothing (to float rounding), not each chunk's own."""
    import numpy as np
    import torch

    from jojogan.video.latents import final_codes

    plan, book = job.plan(), job.book()
    (track,) = plan.tracks
    assert list(track.frames) == list(range(FRAMES))
    times = plan.table.seconds(job.info.time_base)
    sigma = VIDEO.code_sigma / float(job.info.fps)

    def raw(frames):
        return book.get("codes", track.track, frames)

    whole = final_codes("smooth", raw, track.frames, times, list(range(FRAMES)), sigma)
    stored = torch.cat([job.store().read_tensors(job.path("final", n))["codes"] for n in range(4)])
    assert torch.allclose(stored, whole, atol=1e-5)
    alone = torch.cat(
        [final_codes("smooth", raw, np.arange(a, b), times, list(range(a, b)), sigma) for a, b in job.chunks]
    )
    assert (alone - whole).abs().max() > 100 * (stored - whole).abs().max() + 1e-4


def test_steps_resume_an_interrupted_stylize_video(whole, tmp_path, monkeypatch):
    """stylize_video stopped after its second segment; the steps redo only the rest, same file."""
    folder, pipe, style, clip, expected = whole

    class Stop(Exception):
        pass

    def stop_after_two(stage, chunk):
        if stage == "render" and chunk == 1:
            raise Stop

    out = tmp_path / "resumed.mov"
    with pytest.raises(Stop):
        stylize_video(pipe, clip.path, out, style, _config(), VIDEO, on_chunk=stop_after_two)
    job = steps.prepare(pipe, clip.path, out, style, _config(), VIDEO)
    assert job.todo("codes") == [] and job.todo("render") == [2, 3]
    assert steps.smooth(job) == 2  # only the chunks still to render
    calls = []
    monkeypatch.setattr(steps, "render_chunk", _counting(steps.render_chunk, calls))
    for chunk in job.todo("render"):
        steps.render(pipe, job, chunk)
    assert calls == [2, 3]
    assert steps.join(job).read_bytes() == expected


def _counting(function, calls: list):
    def wrapper(pipe, info, plan, book, start, *args, **kwargs):
        calls.append(start // VIDEO.chunk_frames)
        return function(pipe, info, plan, book, start, *args, **kwargs)

    return wrapper


def test_a_step_out_of_order_is_one_line(whole, tmp_path):
    _, pipe, style, clip, _ = whole
    job = steps.prepare(pipe, clip.path, tmp_path / "early.mov", style, _config(), VIDEO)
    steps.invert(pipe, job, 0)
    with pytest.raises(JojoganError, match=r"chunk\(s\) \[1, 2, 3\] .* not inverted yet"):
        steps.smooth(job)
    with pytest.raises(JojoganError, match="no final codes yet"):
        steps.render(pipe, job, 0)
    with pytest.raises(JojoganError, match="not rendered yet"):
        steps.join(job)
    assert not (tmp_path / "early.mov").exists()
