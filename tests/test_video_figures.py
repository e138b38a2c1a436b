"""The figures of every video run (jojogan.video.figures): flicker on sampled pairs without --report, and
each face track's identity judged by dlib on the shared photos; the command line prints both."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import ImageOps
from video_clips import (
    LINEAR,
    encoder_row,
    face_clip,
    face_photo,
    linear_encoder,
    story_clip,
    tiny_video_pipe,
)

from jojogan.config import StylizeConfig
from jojogan.errors import JojoganError
from jojogan.inversion.align import align_face
from jojogan.video import VideoConfig, stylize_video
from jojogan.video import io as vio
from jojogan.video.figures import identity_rows
from jojogan.video.store import store_path
from jojogan.video.track import TrackConfig

pytest.importorskip("av")
pytest.importorskip("cv2")

TRACKS = TrackConfig(min_face_size=32)
DLIB_SOURCE = "99.38%"


def _settings(**changes) -> StylizeConfig:
    return StylizeConfig(**{"inversion": LINEAR, "paste": True, "face": "all", "identity": "dlib", **changes})


def _video(**changes) -> VideoConfig:
    return VideoConfig(**{"chunk_frames": 8, "batch_size": 4, "track": TRACKS, **changes})


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """The tiny pipeline (linear stand-in encoder), its style and the story clip: the first shot's face
    (iu, 16 frames, track 0), a cat, black frames, the other face (chris_hemsworth, 5 frames, track 1).
    The tiny base is ``base.pt`` beside the clip."""
    folder = tmp_path_factory.mktemp("figures")
    with encoder_row():
        pipe, style = tiny_video_pipe(folder)
        clip = story_clip(folder / "story.mp4", audio=False)
        yield pipe, style, clip


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    """A 4-frame clip of one face, no sound: for what any clip shows (figures off, the lines printed)."""
    return face_clip(tmp_path_factory.mktemp("short") / "face.mp4", 4, audio=False).path


def _run(kit, out, settings=None, video=None, **kw):
    pipe, style, clip = kit
    return stylize_video(pipe, clip.path, out, style, settings or _settings(), video or _video(), **kw)


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def sampled(kit, tmp_path_factory):
    """One run, interrupted after its second segment without figures and with flicker on every 2nd pair,
    resumed with the default flicker sampling, identity on 4 frames per track, no report and one
    alignment worker named: what the flicker, identity and resume tests read (each run costs seconds:
    tracking, inversion, dlib). Also a copy of the interrupted run's store (tracks, the four chunks'
    codes, two segments): the other runs of the story start from it, as figures change no frame."""
    folder = tmp_path_factory.mktemp("sampled")
    out = folder / "out.mp4"

    def stop(stage, chunk):
        if (stage, chunk) == ("render", 1):
            raise _Stop

    with pytest.raises(_Stop):
        _run(kit, out, settings=_settings(identity=None), video=_video(flicker_every=2), on_chunk=stop)
    interrupted = tmp_path_factory.mktemp("interrupted") / "store"
    shutil.copytree(store_path(out), interrupted)
    other = _video(identity_frames=4, track=TrackConfig(min_face_size=32, alignment_workers=1))
    return folder, _run(kit, out, video=other), interrupted


def test_every_run_has_the_flicker_figure_on_sampled_pairs(kit, sampled, short, tmp_path):
    """The pairs measured by the ``sampled`` run, then every pair (that run resumes the interrupted
    run's store: the pairs measured are the figures' choice, not the work's), then no figure at all."""
    folder, result, interrupted = sampled
    assert result.report_path is None and sorted(p.name for p in folder.iterdir()) == ["out.mp4"]
    info, kinds = vio.probe(kit[2].path), kit[2].kinds
    # the pairs measured: first frame a multiple of 4, both frames in one shot, a face on the first (the
    # story's shots and face tracks are its kinds of frame: test_video_track checks the tracker finds them)
    expected = [
        t
        for t in range(len(kinds) - 1)
        if t % 4 == 0 and kinds[t] == kinds[t + 1] and kinds[t] in ("face", "face2")
    ]
    assert len(expected) == 5 and info.packets == len(kinds)
    for region in ("face", "seam"):
        figure = result.flicker[region]
        assert figure["pairs"] == len(expected), region
        assert figure["input"] > 0 and figure["ratio"] == pytest.approx(figure["output"] / figure["input"])
    every_pair = _video(flicker_every=1, report=True)  # flicker only: identity has its own tests
    shutil.copytree(interrupted, store_path(tmp_path / "every.mp4"))
    every = _run(kit, tmp_path / "every.mp4", settings=_settings(identity=None), video=every_pair)
    assert every.report["chunks_resumed"] == 4 + 2
    assert every.flicker["face"]["pairs"] > 3 * len(expected)
    assert "figures" in json.loads(every.report_path.read_text())["timings"]
    off = stylize_video(  # figures switched off: any clip shows it
        kit[0], short, tmp_path / "off.mp4", kit[1], _settings(identity=None), _video(flicker_every=0)
    )
    assert off.flicker is None and off.identity is None


def test_a_track_s_identity_on_its_sampled_frames_judged_by_dlib(sampled):
    """The tiny random generator draws noise, not a face: dlib puts every sampled stylized frame far from
    its input face, and each track is judged not the same person, with the rule's threshold and source."""
    _, result, _ = sampled
    first, second = result.identity
    assert (first["track"], first["frames"]) == (0, [0, 4, 8, 12])  # 16 frames: every 4th
    assert (second["track"], second["frames"]) == (1, [23, 25, 27])  # 5 frames: every 2nd
    assert result.report["timings"]["identity"]["frames"] == 4 + 3  # its own stage: crops, renders, scores
    for record in result.identity:
        values = record["similarities"]
        assert len(values) == len(record["frames"])
        assert record["min"] == min(values) and record["max"] == max(values)
        assert record["median"] == pytest.approx(float(np.median(values)))
        verdict = record["verdict"]
        assert (
            verdict["network"] == "dlib" and verdict["metric"] == "euclidean" and verdict["threshold"] == 0.6
        )
        assert DLIB_SOURCE in verdict["source"] and verdict["similarity"] == record["median"]
        assert record["min"] > 0.6 and not verdict["same_person"] and record["same_person_frames"] == 0


def _stand_in(pipe, monkeypatch, draw):
    """The pipeline's renderer replaced by ``draw(face) -> image``: a "style" whose result is known."""
    monkeypatch.setattr(pipe, "render_many", lambda faces, style, **kw: [draw(face) for face in faces])


def test_identity_follows_the_person_in_each_track(kit, sampled, tmp_path, monkeypatch):
    """A style that mirrors the input face keeps the person (dlib: a face and its mirror 0.18 apart at
    256 px); one that draws the other track's person does not. So each track's crops are its own face
    (on 2 frames spread over each track, its first and one further on: one frame would show it, and
    every score costs two dlib descriptors; no flicker figure).

    The tracks, codes and segments are made once, by a run stopped after its last segment (it goes on
    from the ``sampled`` fixture's interrupted store: tracks, codes, the first two segments); each style
    then finishes a copy of that work. Identity is measured on the final codes drawn by the style at
    hand, never read from the segments, and a style is not part of what a run resumes.
    """
    pipe, two = kit[0], _video(identity_frames=2, flicker_every=0)
    out, kept = tmp_path / "out.mp4", tmp_path / "kept"

    def stop(stage, chunk):
        if (stage, chunk) == ("render", 3):  # 28 frames: the fourth and last segment
            raise _Stop

    _stand_in(pipe, monkeypatch, lambda face: ImageOps.mirror(face.aligned.image))
    shutil.copytree(sampled[2], store_path(out))
    with pytest.raises(_Stop):
        _run(kit, out, video=two, on_chunk=stop)
    shutil.copytree(store_path(out), kept)
    mirrored = _run(kit, out, video=two)
    assert mirrored.report["chunks_resumed"] == 4 + 4
    for record in mirrored.identity:
        assert record["verdict"]["same_person"] and record["same_person_frames"] == len(record["frames"])
        assert 0.0 < record["max"] < 0.6
    people = {
        0: align_face(face_photo("chris_hemsworth.jpeg"), pipe.size).image,  # track 0 is iu
        1: align_face(face_photo("iu.jpeg"), pipe.size).image,
    }
    _stand_in(pipe, monkeypatch, lambda face: people[face.aligned.face_index])
    shutil.copytree(kept, store_path(out))
    swapped = _run(kit, out, video=two)
    assert swapped.report["chunks_resumed"] == 4 + 4
    for record in swapped.identity:
        assert not record["verdict"]["same_person"] and record["min"] > 0.6, record


def test_identity_rows_are_bounded_and_spread():
    class Track:
        def __init__(self, n):
            self.frames = np.arange(100, 100 + n)

    assert identity_rows(Track(16), 8) == list(range(0, 16, 2))
    assert identity_rows(Track(17), 8) == [0, 3, 6, 9, 12, 15]
    assert identity_rows(Track(3), 8) == [0, 1, 2]
    assert all(len(identity_rows(Track(n), 8)) <= 8 for n in range(1, 200))


def test_picked_frames_only_are_converted(kit):
    info = vio.probe(kit[2].path)
    every = list(vio.read_frames(info))
    picked = list(vio.read_frames(info, pick=lambda i: i % 3 == 0))
    assert [f.pts for f in picked] == [f.pts for f in every]
    for full, part in zip(every, picked, strict=True):
        if full.index % 3 == 0:
            assert np.array_equal(full.image, part.image)
        else:
            assert part.image.size == 0


def test_figures_and_workers_do_not_change_what_resumes(sampled):
    """Identity, flicker sampling and alignment workers change no frame: a run interrupted with one
    choice resumes with another (the ``sampled`` run)."""
    _, resumed, _ = sampled
    assert resumed.report["chunks_resumed"] == 4 + 2  # 28 frames: four chunks' codes, two segments
    assert len(resumed.identity) == 2


def test_an_identity_network_that_cannot_load_fails_before_any_work(kit, tmp_path):
    with pytest.raises(JojoganError, match="unknown identity network") as caught:
        _run(kit, tmp_path / "out.mp4", settings=_settings(identity="no-such-net"))
    assert "\n" not in str(caught.value) and list(tmp_path.iterdir()) == []


def test_the_command_line_prints_flicker_and_identity(kit, short, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from jojogan.cli import main
    from jojogan.inversion.encoders import ENCODERS

    monkeypatch.setitem(ENCODERS, "e4e", linear_encoder())  # the FFHQ profile's encoder, as a stand-in
    _, style, clip = kit
    base = clip.path.parent / "base.pt"  # the kit's tiny base (tiny_video_pipe saves it there)
    args = ["video", short, "--style", style, "--base", base, "--device", "cpu", "--face", "all"]
    args += ["--chunk-frames", "8", "-o", tmp_path / "out.mp4"]
    run = CliRunner().invoke(
        main, [str(a) for a in args + ["--identity-net", "dlib", "--identity-frames", "2"]]
    )
    assert run.exit_code == 0, run.output
    # the lines printed (the progress bars aside)
    lines = [line.strip() for line in run.output.replace("\r", "\n").splitlines()]
    lines = [line for line in lines if " -> " in line or line.startswith(("flicker", "identity"))]
    assert len(lines) == 3 and " -> " in lines[0]
    assert (
        lines[1].startswith("flicker vs the input (1.0 = as steady): face ")
        and "1 frame pair in 4" in lines[1]
    )
    assert lines[2].startswith("identity (dlib): track 0 not the same person, median ")
    assert "2 frames)" in lines[2] and "[same person at distance below 0.6; threshold: dlib's" in lines[2]
    assert not (tmp_path / "out.mp4.json").exists()  # no --report: no file
    plain_args = [*args[:8], "--chunk-frames", "8", "-o", tmp_path / "b.mp4", "--no-paste"]
    plain = CliRunner().invoke(main, [str(a) for a in plain_args])
    assert plain.exit_code == 0, plain.output
    assert [line for line in plain.output.splitlines() if line.startswith(("flicker", "identity"))] == [
        "flicker: not measured (--no-paste writes the faces alone, not the input's frames)"
    ]
