"""stylize_video end to end on tiny models: timing and sound kept, face-less frames untouched, faces
changed, resume equality, steadiness against the known camera motion, the report, bad input."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image
from video_clips import (
    HEIGHT,
    LINEAR,
    WIDTH,
    SeenFaces,
    affine,
    cat_photo,
    encoder_row,
    face_photo,
    linear_encoder,
    pair_clip,
    render,
    story_clip,
    tiny_video_pipe,
    write_video,
)

from jojogan.config import StylizeConfig
from jojogan.errors import JojoganError
from jojogan.inversion.align import detect_faces
from jojogan.video import VideoConfig, stylize_video
from jojogan.video import io as vio
from jojogan.video.store import store_path
from jojogan.video.track import TrackConfig

av = pytest.importorskip("av")
pytest.importorskip("cv2")

TRACKS = TrackConfig(min_face_size=32)


def _settings(**changes) -> StylizeConfig:
    """Every face pasted back with the photo's colour, inverted by the linear stand-in."""
    return StylizeConfig(
        **{"inversion": LINEAR, "paste": True, "match_colour": True, "face": "all", **changes}
    )


def _config(**changes) -> VideoConfig:
    return VideoConfig(**{"chunk_frames": 8, "batch_size": 4, "track": TRACKS, **changes})


@pytest.fixture(scope="module", autouse=True)
def _linear_encoder():
    with encoder_row():
        yield


def _frames(path) -> tuple[vio.VideoInfo, list[vio.Frame]]:
    info = vio.probe(path)
    return info, list(vio.read_frames(info))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny pipeline and its style file, for every test of the module (none changes them)."""
    return tiny_video_pipe(tmp_path_factory.mktemp("pipe"))


@pytest.fixture(scope="module")
def run(_linear_encoder, tiny, tmp_path_factory):
    """The story clip (H.264, AAC, variable frame rate) stylized once, ``smooth``, with a report; a copy
    of its chunk store as it was after the first chunk's codes (the tracks, one chunk of codes); and the
    faces its tracker saw on each frame (:class:`SeenFaces`)."""
    folder = tmp_path_factory.mktemp("video")
    pipe, style = tiny
    clip = story_clip(folder / "story.mp4", variable=True)
    video = _config(report=True, flicker_every=1)  # every pair: the story's shots are short
    out, early, seen = folder / "smooth.mp4", tmp_path_factory.mktemp("early") / "store", SeenFaces()

    def keep(stage, chunk):
        if (stage, chunk) == ("codes", 0):
            shutil.copytree(store_path(out), early)

    with seen.replayed():
        result = stylize_video(pipe, clip.path, out, style, _settings(), video, on_chunk=keep)
    return pipe, style, clip, result, (early, seen)


def test_every_frame_keeps_its_time_and_the_sound_stays(run):
    _, _, clip, result, _ = run
    info, frames = _frames(result.path)
    assert len(frames) == len(clip.pts) == result.report["frames"]
    seconds = np.array([f.pts for f in frames]) * float(info.time_base)
    assert np.allclose(seconds, clip.seconds, atol=1e-9)
    source = vio.probe(clip.path)
    assert info.display_size == source.display_size
    # the source's B-frames leave its last frame's length open, so its average rate may differ by a frame
    assert abs(float(info.fps) - float(source.fps)) < float(source.fps) / len(frames)
    with av.open(str(result.path)) as container:
        (audio,) = container.streams.audio
        length = sum(p.duration for p in container.demux(audio) if p.size) * float(audio.time_base)
    assert audio.codec_context.name == "aac" and abs(length - clip.audio_seconds) < 0.05


def test_faceless_frames_pass_through_and_faces_change(run):
    _, _, clip, result, _ = run
    _, source = _frames(clip.path)
    _, made = _frames(result.path)
    kinds = np.array(clip.kinds)
    difference = [
        np.abs(a.image.astype(int) - b.image.astype(int)) for a, b in zip(source, made, strict=True)
    ]
    for index in np.flatnonzero((kinds == "cat") | (kinds == "black")):
        assert difference[index].mean() < 2.0, index  # the encoder's loss only
    centre = (slice(HEIGHT // 2 - 25, HEIGHT // 2 + 15), slice(WIDTH // 2 - 20, WIDTH // 2 + 20))
    for index in np.flatnonzero((kinds == "face") | (kinds == "face2")):
        assert difference[index][centre].mean() > 10, index
        assert difference[index][:8, :8].mean() < 3, index  # far from the face: the photo's own
    assert result.report["frames_with_faces"] == int(np.sum((kinds == "face") | (kinds == "face2")))


def test_the_report_has_flicker_and_every_stage(run):
    _, _, _, result, _ = run
    assert result.report_path == result.path.with_name(result.path.name + ".json")
    written = json.loads(result.report_path.read_text())
    assert written["frames"] == result.report["frames"] and written["shots"] == 4 and written["tracks"] == 2
    for region in ("face", "seam"):
        figure = written["flicker"][region]
        assert figure["pairs"] > 10 and figure["input"] > 0
        assert figure["ratio"] == pytest.approx(figure["output"] / figure["input"])
    stages = written["timings"]
    for stage in ("decode", "tracking", "alignment", "inversion", "synthesis", "paste", "encode", "figures"):
        assert stages[stage]["frames"] > 0 and stages[stage]["seconds"] > 0, stage
    assert not store_path(result.path).exists()


class _Stop(Exception):
    pass


def test_an_interrupted_run_resumes_to_the_same_file(run, tmp_path):
    """Stopped after the second chunk's codes, then after the third segment, a run resumes to the
    uninterrupted run's file, byte for byte. It starts from a copy of that run's store after its first
    chunk's codes (the tracks: tracking the story again would give the same ones, at half a CPU-second);
    every later chunk's codes and segments are made by the interrupted runs."""
    pipe, style, clip, result, (early, _) = run
    out = tmp_path / "resumed.mp4"
    shutil.copytree(early, store_path(out))  # the tracks and first codes of the run (figures aside)

    def stop_at(stage, chunk):
        def hook(done_stage, done_chunk):
            if (done_stage, done_chunk) == (stage, chunk):
                raise _Stop

        return hook

    for stage, chunk in (("codes", 1), ("render", 2)):
        with pytest.raises(_Stop):
            stylize_video(pipe, clip.path, out, style, _settings(), _config(), on_chunk=stop_at(stage, chunk))
        assert not out.exists() and store_path(out).is_dir()  # nothing half-written at OUT
    resumed = stylize_video(pipe, clip.path, out, style, _settings(), _config())
    assert resumed.report["chunks_resumed"] == 4 + 3  # every chunk's codes, three segments
    assert out.read_bytes() == result.path.read_bytes()
    assert not store_path(out).exists()


def _jitter(clip, frames, box) -> float:
    """Mean change between consecutive frames of the moving shot inside the face, after undoing the
    known camera motion (each frame mapped back onto the photo)."""
    moving = [i for i, kind in enumerate(clip.kinds) if kind == "face"]
    left, top, right, bottom = box
    photo_size = (right + 8, bottom + 8)
    back = []
    for index in moving:
        coeffs = tuple(clip.cameras[index][:2].reshape(-1))
        image = Image.fromarray(frames[index].image).transform(
            photo_size, Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR
        )
        back.append(np.asarray(image, dtype=np.float64)[top:bottom, left:right])
    return float(np.mean([np.abs(a - b).mean() for a, b in zip(back[:-1], back[1:], strict=True)]))


def test_smooth_codes_are_steadier_than_raw_ones(run, tmp_path):
    """The story's moving face, with the camera's motion undone, changes less from frame to frame with
    ``smooth`` codes than with each frame's own. The ``frame`` run replays the faces the ``smooth`` run's
    tracker saw (the same clip and tracker settings: the same tracks; only the codes differ)."""
    pipe, style, clip, result, (_, seen) = run
    with seen.replayed():
        raw = stylize_video(
            pipe, clip.path, tmp_path / "frame.mp4", style, _settings(), _config(latent="frame")
        )
    (found,) = detect_faces(face_photo())
    left, top, width, height = (int(v) for v in found.box)
    box = (left + width // 5, top + height // 5, left + width - width // 5, top + height - height // 5)
    source = _jitter(clip, _frames(clip.path)[1], box)
    smooth = _jitter(clip, _frames(result.path)[1], box)
    per_frame = _jitter(clip, _frames(raw.path)[1], box)
    print(f"face jitter, camera undone: input {source:.2f}, smooth {smooth:.2f}, frame {per_frame:.2f}")
    # the issue's goals: below the raw codes' jitter, and at most 3x the input's own (measured: 2.1x)
    assert smooth < per_frame and smooth <= 3 * source


def test_mpeg4_input_one_code_per_shot_and_the_largest_face(tiny, tmp_path):
    pipe, style = tiny
    clip = story_clip(tmp_path / "story.avi", codec="mpeg4", moving=8, audio=False)  # two shots with faces
    config = _config(latent="shot", encode=vio.EncodeSettings(crf=30))
    settings = StylizeConfig(inversion=LINEAR, alpha=0.5, paste=True)  # the largest face: the default
    result = stylize_video(pipe, clip.path, tmp_path / "out.mkv", style, settings, config)
    info, frames = _frames(result.path)
    seconds = np.array([f.pts for f in frames]) * float(info.time_base)
    assert len(frames) == len(clip.pts) and np.allclose(seconds - seconds[0], clip.seconds, atol=1e-3)
    assert result.report["tracks"] == 2 and result.report["latent"] == "shot"


def test_without_paste_the_stylized_face_itself_is_written(tiny, tmp_path):
    pipe, style = tiny
    clip = pair_clip(tmp_path / "pair.mp4", count=4)
    settings = StylizeConfig(inversion=LINEAR, paste=False)
    result = stylize_video(pipe, clip.path, tmp_path / "faces.mp4", style, settings, _config(report=True))
    info, frames = _frames(result.path)
    assert info.display_size == (pipe.size, pipe.size) and len(frames) == 4
    assert frames[0].image.std() > 10  # a drawn face, not a black frame
    assert result.report["flicker"] is None  # measured where faces are pasted into the input's frames


def test_every_face_of_a_frame_is_stylized(tiny, tmp_path):
    pipe, style = tiny
    clip = pair_clip(tmp_path / "pair.mp4", count=6)
    settings = StylizeConfig(inversion=LINEAR, paste=True, face="all")
    result = stylize_video(pipe, clip.path, tmp_path / "out.mp4", style, settings, _config())
    _, source = _frames(clip.path)
    _, made = _frames(result.path)
    difference = np.abs(source[3].image.astype(int) - made[3].image.astype(int)).mean(axis=(0, 2))
    half = difference.shape[0] // 2
    assert (
        difference[half // 4 : half - half // 4].mean() > 5
        and difference[half + half // 4 : -half // 4].mean() > 5
    )
    assert result.report["tracks"] == 2


def test_a_corrupt_frame_is_skipped_counted_and_reported(tiny, tmp_path):
    pipe, style = tiny
    face = face_photo()
    frame = render(face, affine(0.0, 0.85, (0, 0), (face.shape[1] / 2, face.shape[0] * 0.52)))
    path = write_video(
        tmp_path / "bad.mkv", [frame] * 7, list(range(7)), Fraction(1, 25), "mjpeg", corrupt=(3,)
    )
    result = stylize_video(pipe, path, tmp_path / "out.mp4", style, video=_config(), inversion=LINEAR)
    assert result.report["corrupt_frames_skipped"] == 1 and result.report["frames"] == 6
    info, frames = _frames(result.path)
    assert [round(f.pts * info.time_base * 25) for f in frames] == [0, 1, 2, 4, 5, 6]


def test_bad_input_gets_one_line_and_nothing_is_written(run, tmp_path):
    pipe, style, clip, _, _ = run
    cat = cat_photo()[:, :WIDTH]
    frames = [cat] * 4 + [np.zeros_like(cat)] * 2
    faceless = write_video(tmp_path / "cat.mp4", frames, list(range(6)), Fraction(1, 25))
    out = tmp_path / "out.mp4"
    small = _settings(max_pixels=100)
    crops = StylizeConfig(inversion=LINEAR, face="all")
    cases = [
        (faceless, out, _settings(), "no face was found in any frame"),
        (clip.path, clip.path, _settings(), "is the input video"),
        (clip.path, tmp_path / "out.webm", _settings(), "cannot hold libx264"),
        (clip.path, out, small, "above the limit of 100 pixels"),
        (tmp_path / "none.mp4", out, _settings(), "does not exist"),
        (clip.path, out, crops, "face 'all' needs paste"),
        (clip.path, out, StylizeConfig(inversion=LINEAR, aligned=True), "aligned does not apply"),
    ]
    for source, target, config, message in cases:
        with pytest.raises(JojoganError, match=message) as caught:
            stylize_video(pipe, source, target, style, config, _config())
        assert "\n" not in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.mp4"]


def test_the_command_line_is_the_api(tiny, tmp_path, monkeypatch):
    """``jojogan video`` writes what stylize_video writes with the same settings, refuses to replace its
    output without --force, and reports bad input in one line. The API side is the module's pipeline,
    loaded from the same tiny base file the command line is given."""
    from click.testing import CliRunner

    from jojogan.cli import main
    from jojogan.inversion.encoders import ENCODERS

    monkeypatch.setitem(ENCODERS, "e4e", linear_encoder())  # the FFHQ profile's encoder, as a stand-in
    pipe, style = tiny
    base = style.parent / "base.pt"  # tiny_video_pipe saves its base beside the style
    clip = pair_clip(tmp_path / "pair.mp4", count=6)
    expected = stylize_video(
        pipe, clip.path, tmp_path / "api.mp4", style,
        StylizeConfig(face="all", paste=True, alpha=0.8), VideoConfig(chunk_frames=4, latent="shot"),
    )  # fmt: skip
    out = tmp_path / "cli.mp4"
    args = ["video", clip.path, "--style", style, "--base", base, "--device", "cpu", "--face", "all"]
    args += ["--alpha", "0.8", "--chunk-frames", "4", "--latent", "shot", "-o", out]
    run = CliRunner().invoke(main, [str(a) for a in args])
    assert run.exit_code == 0, run.output
    assert out.read_bytes() == expected.path.read_bytes()
    assert f"-> {out} (6 frames, 6 with faces" in run.output
    again = CliRunner().invoke(main, [str(a) for a in args])
    assert again.exit_code == 1 and "exists; pass --force" in again.output
    bad = CliRunner().invoke(main, [str(a) for a in [*args[:1], style, *args[2:-1], tmp_path / "bad.mp4"]])
    assert bad.exit_code == 1 and "is not a video FFmpeg can read" in bad.output
    assert len(bad.output.strip().splitlines()) == 1 and not (tmp_path / "bad.mp4").exists()
