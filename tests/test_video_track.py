"""Face tracks (jojogan.video.track): shot cuts, tracks per person, gaps, the smoothing filter, against
clips whose camera motion is known."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
from fractions import Fraction

import numpy as np
import pytest
from video_clips import HEIGHT, WIDTH, SeenFaces, face_photo, pair_clip, story_clip, write_video

from jojogan.inversion.align import align_face, align_quad, detect_faces, face_quad
from jojogan.video import io as vio
from jojogan.video.smoothing import gaussian_weights, smooth
from jojogan.video.track import TrackConfig, analyse

pytest.importorskip("av")

SMALL = dict(min_face_size=32)


def _plan(path, **settings):
    info = vio.probe(path)
    stats = vio.ReadStats()
    face = settings.pop("face", "largest")
    config = TrackConfig(**{**SMALL, **settings})
    return info, analyse(vio.read_frames(info, stats=stats), info, config, stats, face=face)


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """The story clip with its tracks: smoothed (the defaults) and raw (every sigma 0), from the same
    faces seen on each frame."""
    clip = story_clip(tmp_path_factory.mktemp("track") / "story.mp4", audio=False)
    with SeenFaces().replayed():
        _, smoothed = _plan(clip.path, face="all")
        _, raw = _plan(clip.path, face="all", centre_sigma=0, size_sigma=0, landmark_sigma=0)
    return clip, smoothed, raw


def test_align_quad_of_a_detection_is_align_face():
    photo = face_photo(height=240)
    (found,) = detect_faces(photo)
    ours = align_quad(photo, face_quad(found.landmarks), found.landmarks, 128)
    reference = align_face(photo, output_size=128)
    assert np.array_equal(np.asarray(ours.image), np.asarray(reference.image))
    assert np.allclose(ours.to_photo, reference.to_photo) and np.allclose(ours.landmarks, reference.landmarks)


def test_cuts_shots_and_tracks_of_the_story(story):
    clip, plan, _ = story
    kinds = np.array(clip.kinds)
    # a new shot at each cut: face -> cat -> black -> the other face
    starts = np.flatnonzero(np.diff(plan.shots)) + 1
    assert starts.tolist() == np.flatnonzero(kinds[1:] != kinds[:-1]).__add__(1).tolist()
    assert [t.frames.tolist() for t in plan.tracks] == [
        np.flatnonzero(kinds == "face").tolist(),
        np.flatnonzero(kinds == "face2").tolist(),
    ]
    assert all(t.seen.all() for t in plan.tracks)
    assert plan.faces_at(int(np.flatnonzero(kinds == "cat")[0])) == []  # passes through


def test_the_filter_follows_the_known_camera_motion(story):
    """The crop squares, mapped back through the camera, stay on one square of the photo."""
    clip, plan, raw = story
    track = plan.tracks[0]
    cameras = np.stack([clip.cameras[f] for f in track.frames])
    homogeneous = np.concatenate([track.quads, np.ones((len(track.quads), 4, 1))], axis=2)
    in_photo = np.einsum("nij,nkj->nki", np.linalg.inv(cameras), homogeneous)[..., :2]
    predicted = np.einsum("nij,kj->nki", cameras, np.concatenate([in_photo.mean(0), np.ones((4, 1))], 1))
    error = np.linalg.norm(predicted[..., :2] - track.quads, axis=-1)
    side = np.linalg.norm(track.quads[:, 3] - track.quads[:, 0], axis=-1).mean()
    assert side > 100 and error.mean() < 0.6 and error.max() < 2.0  # measured: 0.33 and 1.05 px
    assert not np.allclose(raw.tracks[0].quads, track.quads)  # the smoothing does something


def test_two_people_get_a_track_each_and_largest_picks_one(tmp_path):
    clip = pair_clip(tmp_path / "pair.mp4", count=5)  # a track needs 3 frames (min_track)
    with SeenFaces().replayed():  # the faces are found once; which tracks are kept is decided after that
        _, both = _plan(clip.path, face="all")
        _, largest = _plan(clip.path, face="largest")
        _, second = _plan(clip.path, face=1)
    assert len(both.tracks) == 2 and all(len(t.frames) == len(clip.pts) for t in both.tracks)
    left, right = sorted(both.tracks, key=lambda t: t.boxes[0, 0])
    assert left.boxes[:, 0].max() < right.boxes[:, 0].min()
    assert [t.track for t in largest.tracks] == [max(both.tracks, key=lambda t: t.area).track]
    assert [t.track for t in second.tracks] == [right.track]


def test_short_gaps_are_bridged_and_long_ones_split_the_track(tmp_path):
    face = face_photo(height=150)
    frame = np.full((HEIGHT, WIDTH, 3), 60, np.uint8)
    frame[5 : 5 + 150, 20 : 20 + face.shape[1]] = face[:, : WIDTH - 20]
    covered = frame.copy()
    covered[40:120, 50:150] = (150, 120, 100)  # a hand over the face: no detection
    pattern = "FFFCCFFFFCCCCCCCCFFF"  # a 2-frame gap (bridged), an 8-frame gap (the track ends)
    frames = [frame if c == "F" else covered for c in pattern]
    path = write_video(
        tmp_path / "gaps.mp4", frames, [3600 * i for i in range(len(frames))], Fraction(1, 90000)
    )
    _, plan = _plan(path, face="all", cut_threshold=0.9)
    assert [t.frames.tolist() for t in plan.tracks] == [list(range(0, 9)), list(range(17, 20))]
    assert plan.tracks[0].seen.tolist() == [c == "F" for c in pattern[:9]]
    assert len(set(plan.shots.tolist())) == 1


def test_gaussian_smoothing_on_timestamps():
    times = np.cumsum([0.0, 0.04, 0.02, 0.06, 0.04, 0.04])
    weights = gaussian_weights(times, 0.04)
    assert np.allclose(weights.sum(1), 1)
    # the weights follow time, not frame numbers: the frame 0.02 s away weighs more than the one 0.06 s away
    assert weights[2, 1] > weights[2, 3]
    values = np.random.default_rng(0).normal(size=(len(times), 3))
    assert np.allclose(smooth(values, times, 0.04), weights @ values)
    assert np.allclose(smooth(np.ones((6, 2)), times, 0.04), 1.0)  # renormalised at the ends
    assert np.array_equal(smooth(values, times, 0.0), values)


@pytest.fixture(scope="module")
def sparse(story):
    """The story's tracks with the detector on every 4th frame (and at cuts), serially."""
    return _plan(story[0].path, face="all", detect_every=4)[1]


def test_following_faces_between_detections_keeps_the_tracks(story, sparse):
    """With the detector on every 4th frame (and at cuts), the landmark predictor alone follows the faces
    in between: the same tracks, crop squares within a pixel of detecting on every frame."""
    clip, every, _ = story
    assert [t.frames.tolist() for t in sparse.tracks] == [t.frames.tolist() for t in every.tracks]
    for dense, followed in zip(every.tracks, sparse.tracks, strict=True):
        assert np.abs(dense.quads - followed.quads).max() < 1.5  # measured: 0.57 px


@contextlib.contextmanager
def _fresh_processes(monkeypatch):
    """A "forkserver" context: its server, a fresh interpreter (no copy of this process's torch threads
    or files, as with "spawn"), imports the tracker and loads dlib's models once (``warm_tracker``, found
    through ``PYTHONPATH``: the server does not take this process's ``sys.path``), and each worker is
    forked from it; the server is stopped after the block, and the preload list is multiprocessing's
    default again."""
    import os
    from multiprocessing import forkserver
    from pathlib import Path

    here = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(["warm_tracker"])
    try:
        yield context
    finally:
        forkserver._forkserver._stop()
        context.set_forkserver_preload(["__main__"])


def test_alignment_workers_give_the_serial_tracks(story, sparse, monkeypatch):
    """Runs of frames (a detection and the frames followed after it) go to a pool of processes; the
    tracks are the same, array for array, as in one process, with and without following. Both runs
    share one pool of two processes, forked from one fresh interpreter that imported the tracker and
    loaded dlib's models (a spawned worker imports torch and loads dlib itself: 3 CPU-s each); the
    product opens a pool per run."""
    from concurrent.futures import ProcessPoolExecutor

    from jojogan.video import track

    clip, every, _ = story
    submitted = []

    class Counted(ProcessPoolExecutor):
        def submit(self, fn, *args, **kwargs):
            submitted.append(len(args[0]))
            return super().submit(fn, *args, **kwargs)

    opened = []

    def shared(workers):
        opened.append(workers)
        return contextlib.nullcontext(pool)  # the with-block of each run leaves the pool open

    with _fresh_processes(monkeypatch) as context, Counted(2, mp_context=context) as pool:
        monkeypatch.setattr(track, "_pool", shared)
        for detect_every, serial in ((1, every), (4, sparse)):
            submitted.clear()
            _, pooled = _plan(clip.path, face="all", detect_every=detect_every, alignment_workers=2)
            assert sum(submitted) == len(clip.kinds) and len(submitted) > 1  # every frame went to the pool
            if detect_every == 4:
                assert max(submitted) == 4  # a detection and the three frames followed after it
            ours, theirs = serial.to_arrays(), pooled.to_arrays()
            assert ours.keys() == theirs.keys()
            for name in ours:
                assert np.array_equal(ours[name], theirs[name]), name
    assert opened == [2, 2]  # each run asked for a pool of its two workers


def test_alignment_workers_setting():
    assert TrackConfig(alignment_workers=3).workers() == 3
    assert TrackConfig(alignment_workers=1).workers() == 1
    from jojogan.video.track import AUTO_MIN_FRAMES, AUTO_WORKERS, usable_cpus

    assert TrackConfig().workers(10_000) == 1  # the default: in this process
    auto = TrackConfig(alignment_workers=0)
    assert auto.workers() == auto.workers(AUTO_MIN_FRAMES) == max(1, min(AUTO_WORKERS, usable_cpus() - 1))
    assert auto.workers(AUTO_MIN_FRAMES - 1) == 1  # a short video: the pool costs more than it saves
    assert TrackConfig(alignment_workers=2).workers(10) == 2
    with pytest.raises(ValueError, match="alignment_workers must be >= 0"):
        TrackConfig(alignment_workers=-1)


def test_a_dead_alignment_worker_is_one_line(story, monkeypatch):
    """A worker process that dies (as in a script without a __main__ guard) ends tracking with one line
    that says what to do, not a traceback of the pool."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    from jojogan.errors import JojoganError
    from jojogan.video import track

    def dying(workers):
        context = track.mp.get_context("spawn")
        return ProcessPoolExecutor(workers, mp_context=context, initializer=os._exit, initargs=(3,))

    monkeypatch.setattr(track, "_pool", dying)
    clip = story[0]
    with pytest.raises(JojoganError, match="alignment worker process died") as caught:
        _plan(clip.path, face="all", alignment_workers=2)
    assert "\n" not in str(caught.value) and "alignment_workers=1" in str(caught.value)
