"""Video reading and writing (jojogan.video.io) on clips the tests build: timestamps, durations, rotation,
audio, dropped streams, corrupt frames and bad input."""

from __future__ import annotations

import logging
import os
from fractions import Fraction

import numpy as np
import pytest
from video_clips import HEIGHT, WIDTH, affine, face_photo, render, story_clip, write_video

from jojogan.video import io as vio

av = pytest.importorskip("av")


def _read_all(path):
    info = vio.probe(path)
    stats = vio.ReadStats()
    frames = list(vio.read_frames(info, stats=stats))
    return info, frames, stats


def _table(info, frames, stats):
    return vio.FrameTable.build([f.pts for f in frames], frames[-1].duration, stats.corrupt, info.end_pts)


def _copy_through(info, frames, table, out, settings=None, split=3):
    """Write the frames back unchanged, in ``split`` segments, and join them into ``out``."""
    plan = vio.check_output(info, out, settings or vio.EncodeSettings())
    segments = []
    bounds = np.linspace(0, len(frames), split + 1).astype(int)
    for number, (start, end) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        segments.append(out.parent / f"seg{number}.nut")
        with vio.SegmentWriter(segments[-1], info, plan) as writer:
            for frame in frames[start:end]:
                writer.write(frame.image, frame.pts, int(table.durations[frame.index]))
    return vio.join_segments(info, plan, table, segments)


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory):
    return story_clip(tmp_path_factory.mktemp("io") / "vfr.mp4", variable=True)


def test_a_variable_frame_rate_clip_reads_with_every_timestamp(vfr_clip):
    info, frames, stats = _read_all(vfr_clip.path)
    assert [f.pts for f in frames] == vfr_clip.pts and stats.corrupt == 0
    assert info.time_base == Fraction(1, 90000) and info.display_size == (WIDTH, HEIGHT)
    table = _table(info, frames, stats)
    # a frame lasts until the next starts
    assert table.durations[:-1].tolist() == np.diff(vfr_clip.pts).tolist() and table.durations[-1] > 0
    # a range found by seeking is the same frames as the full read
    part = list(vio.read_frames(info, 9, 17, table))
    assert [f.index for f in part] == list(range(9, 17))
    assert all(np.array_equal(f.image, frames[f.index].image) for f in part)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov"])
def test_segments_join_into_each_container_with_timing_and_sound_kept(vfr_clip, tmp_path, suffix):
    info, frames, stats = _read_all(vfr_clip.path)
    table = _table(info, frames, stats)
    out = _copy_through(info, frames, table, tmp_path / f"out{suffix}")
    made, again, _ = _read_all(out)
    assert len(again) == len(frames)
    seconds = np.array([f.pts for f in again]) * float(made.time_base)
    # Matroska counts milliseconds and cannot start below zero (AAC's priming moves every stream)
    tolerance = 1e-3 if suffix == ".mkv" else 1e-9
    expected = np.asarray(vfr_clip.seconds)
    assert np.allclose(seconds - seconds[0], expected - expected[0], atol=tolerance)
    written = _table(made, again, vio.ReadStats())
    assert written.duration(made.time_base) == pytest.approx(table.duration(info.time_base), abs=tolerance)
    assert np.allclose(written.durations[:-1] * float(made.time_base), np.diff(expected), atol=tolerance)
    assert np.abs(again[5].image.astype(int) - frames[5].image).mean() < 3  # x264 at CRF 18
    with av.open(str(out)) as container:
        (audio,) = container.streams.audio
        assert audio.codec_context.name == "aac"  # copied, not re-encoded
        packets = [p for p in container.demux(audio) if p.size]
        seconds_of_audio = sum(p.duration for p in packets) * float(audio.time_base)
    assert abs(seconds_of_audio - vfr_clip.audio_seconds) < 0.05


_ENCODE_A_SEGMENT = """
import hashlib, itertools, sys
from jojogan.video import io as vio

source, out = sys.argv[1:]
info = vio.probe(source)
plan = vio.check_output(info, out + ".mp4", vio.EncodeSettings())
with vio.SegmentWriter(out, info, plan) as writer:
    for frame in itertools.islice(vio.read_frames(info), 8):
        writer.write(frame.image, frame.pts, 3600)
data = open(out, "rb").read()
settings = data[data.find(b"options: ") :][:800].split()
threads = next(word for word in settings if word.startswith(b"sliced_"))
print(hashlib.sha256(data).hexdigest(), threads.decode())
"""


def test_x264_encodes_a_chunk_to_the_same_bytes_whatever_memory_it_is_given(vfr_clip, tmp_path):
    """A resumed video re-encodes only its unfinished chunks, so a chunk must encode to the same bytes every
    time. x264's AVX-512 code read memory it had not written (5 runs in about 1,000 gave another segment, and
    glibc's MALLOC_PERTURB_=1, which fills new memory with 0xfe, gave it every time); the product keeps x264
    off AVX-512. Runs x264 on its frame threads, as FFmpeg's command line does."""
    import subprocess
    import sys

    runs = []
    for perturb in (None, "1", "85"):
        env = {key: value for key, value in os.environ.items() if key != "MALLOC_PERTURB_"}
        env.update({"MALLOC_PERTURB_": perturb} if perturb else {})
        out = tmp_path / f"segment-{perturb}.nut"
        done = subprocess.run(
            [sys.executable, "-c", _ENCODE_A_SEGMENT, str(vfr_clip.path), str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append(done.stdout.split())
    assert [threads for _, threads in runs] == ["sliced_threads=0"] * 3
    assert len({digest for digest, _ in runs}) == 1, runs


def test_rotation_is_undone_for_reading_and_written_back(tmp_path):
    face = face_photo()
    frames = [render(face, affine(0, 0.8, (i, 0), (face.shape[1] / 2, face.shape[0] / 2))) for i in range(4)]
    path = write_video(
        tmp_path / "phone.mp4", frames, [0, 3600, 7200, 10800], Fraction(1, 90000), rotation=-90
    )
    info, read, stats = _read_all(path)
    assert (info.width, info.height) == (HEIGHT, WIDTH)  # stored sideways
    assert info.display_size == (WIDTH, HEIGHT) and read[0].image.shape == (HEIGHT, WIDTH, 3)
    assert np.abs(read[2].image.astype(int) - frames[2]).mean() < 4  # upright, as it is shown
    out = _copy_through(info, read, _table(info, read, stats), tmp_path / "out.mp4", split=2)
    made, again, _ = _read_all(out)
    assert (made.width, made.height) == (HEIGHT, WIDTH)
    assert made.orientation.matrix == info.orientation.matrix
    assert np.abs(again[2].image.astype(int) - read[2].image).mean() < 4


def test_audio_the_container_cannot_hold_is_reencoded_and_other_streams_dropped(tmp_path, caplog):
    frames = [np.full((HEIGHT, WIDTH, 3), 40 * i, np.uint8) for i in range(5)]
    path = tmp_path / "opus.mkv"
    write_video(
        path,
        frames,
        [0, 1, 2, 3, 4],
        Fraction(1, 25),
        audio_seconds=0.2,
        audio_codec="libopus",
        attachment=True,
    )
    info, read, stats = _read_all(path)
    assert [n.kind for n in info.others] == ["attachment"]
    with caplog.at_level(logging.INFO, logger="jojogan"):
        out = _copy_through(
            info, read, _table(info, read, stats), tmp_path / "out.avi", vio.EncodeSettings("mpeg4")
        )
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "mpeg4"
        assert container.streams.audio[0].codec_context.name == "aac"
        assert len(container.streams) == 2
    messages = [r.getMessage() for r in caplog.records]
    assert (
        sum("(opus) cannot go into this container as it is: re-encoding it as aac" in m for m in messages)
        == 1
    )
    assert sum("dropping 1 stream" in m and "attachment" in m for m in messages) == 1
    made, again, _ = _read_all(out)
    assert [f.pts * made.time_base for f in again] == [Fraction(i, 25) for i in range(5)]


def test_a_corrupt_frame_is_skipped_and_counted(tmp_path):
    frames = [np.full((HEIGHT, WIDTH, 3), 20 * i, np.uint8) for i in range(8)]
    path = write_video(
        tmp_path / "bad.mkv", frames, list(range(8)), Fraction(1, 25), codec="mjpeg", corrupt=(4,)
    )
    info, read, stats = _read_all(path)
    assert stats.corrupt == 1
    assert [f.pts * info.time_base for f in read] == [Fraction(i, 25) for i in (0, 1, 2, 3, 5, 6, 7)]
    table = _table(info, read, stats)
    # the frame before the gap is shown until the next good one
    assert table.durations[3] * info.time_base == Fraction(2, 25) and table.corrupt == 1


# ------------------------------------------------------------------ bad input: one line each


def _zero_frames(path):
    with av.open(str(path), "w") as container:  # AVI keeps a stream without frames; MP4 drops it
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()  # a header and no frame
    return path


def _audio_only(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 2048), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 44100, 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda p: (p / "notes.mp4").write_text("not a video") and p / "notes.mp4",
            "is not a video FFmpeg can read",
        ),
        (lambda p: p / "missing.mp4", "does not exist"),
        (lambda p: _png(p / "photo.png"), "is a still image"),
        (lambda p: _audio_only(p / "sound.m4a"), "has no video stream"),
        (lambda p: _zero_frames(p / "empty.avi"), "zero frames"),
    ],
)
def test_bad_input_is_one_line(tmp_path, make, message):
    with pytest.raises(vio.VideoError, match=message) as caught:
        vio.probe(make(tmp_path))
    assert "\n" not in str(caught.value)


def _png(path):
    from PIL import Image

    Image.fromarray(face_photo()).save(path)
    return path


def test_bad_output_is_refused_before_any_work(vfr_clip, tmp_path):
    info = vio.probe(vfr_clip.path)
    with pytest.raises(vio.VideoError, match="above the limit of 1000 pixels"):
        vio.probe(vfr_clip.path, max_pixels=1000)
    for out, settings, message in [
        (vfr_clip.path, vio.EncodeSettings(), "is the input video"),
        (tmp_path / "out.webm", vio.EncodeSettings(), "cannot hold libx264"),
        (tmp_path / "out.gif", vio.EncodeSettings(), "use one of the suffixes"),
        (tmp_path / "out.mkv", vio.EncodeSettings("no-such-codec"), "no encoder named"),
        (tmp_path / "out.mkv", vio.EncodeSettings(preset="warp-speed"), "cannot encode this video"),
    ]:
        with pytest.raises(vio.VideoError, match=message):
            vio.check_output(info, out, settings)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert vio.check_output(info, tmp_path / "out.webm", vio.EncodeSettings("libvpx-vp9")).muxer == "webm"
