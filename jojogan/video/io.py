"""Reading and writing videos with PyAV (FFmpeg's libraries), keeping what the input's viewer sees.

Reading accepts any container and codec FFmpeg decodes. Frames come out one at a time from a generator
(:func:`read_frames`), as RGB arrays in *display* orientation: a phone video stored sideways with a
display matrix (or a legacy ``rotate`` tag) comes out upright, so faces can be detected in it. Writing
turns the frames back into the stored orientation and writes the input's display matrix again, so the
output is stored and shown exactly as the input was.

Kept from the input: every frame's presentation timestamp, in the input stream's own time base (variable
frame rate included; the output container may round them to its own clock, e.g. Matroska's milliseconds),
each frame's duration (so the last frame and the whole duration are kept), the average frame rate, the
display matrix, the colour tags, the container's metadata, and every audio stream: copied packet for
packet when the output container takes its codec, else re-encoded (one log line says so). Other streams
(subtitles, data, attachments) are dropped with one log line.

Video is written in *segments* (one per chunk of frames, :class:`SegmentWriter`), each a complete encoded
stream starting on a key frame, and :func:`join_segments` remuxes them, without re-encoding, together
with the audio into the output file. Encoders are set up without B-frames so that every packet's
decoding timestamp equals its presentation timestamp, which is what lets independently encoded segments
follow each other. Everything lands at the output path only by an atomic rename.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import heapq
import io
import itertools
import logging
import os
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from jojogan.errors import JojoganError
from jojogan.fileio import atomic_output
from jojogan.inversion.images import DEFAULT_MAX_PIXELS

__all__ = [
    "CONTAINERS",
    "DEFAULT_CODEC",
    "DEFAULT_CRF",
    "EncodeSettings",
    "Frame",
    "FrameTable",
    "Orientation",
    "OutputPlan",
    "ReadStats",
    "SegmentWriter",
    "VideoError",
    "VideoInfo",
    "check_output",
    "join_segments",
    "probe",
    "read_frames",
]

log = logging.getLogger("jojogan")

CONTAINERS: dict[str, str] = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
    ".avi": "avi",
    ".nut": "nut",
}
"""Output suffix -> FFmpeg muxer."""

DEFAULT_CODEC = "libx264"
"""H.264 (x264), written as yuv420p: what every player plays."""

DEFAULT_CRF = 18.0
"""x264's constant-rate factor: 0 lossless, 23 its default, 18 about visually lossless."""

_CRF_OPTION = {"libx264": "crf", "libx265": "crf", "libvpx-vp9": "crf", "libvpx": "crf", "libsvtav1": "crf"}
_NO_B_FRAMES = {"libx265": ("x265-params", "bframes=0")}
_AUDIO_PREFERENCE = ("aac", "libopus", "opus", "libmp3lame", "flac", "pcm_s16le")
_STILL_IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe")


class VideoError(JojoganError):
    """A file cannot be read as a video, or the output cannot be written as asked."""


def _av():
    try:
        import av
    except ImportError as error:  # pragma: no cover - av is a declared dependency of the video extra
        raise VideoError("video needs PyAV: pip install av") from error
    av.logging.set_level(
        av.logging.PANIC
    )  # FFmpeg's own messages stay off the console: errors are ours to report
    return av


# ------------------------------------------------------------------ orientation


@dataclass(frozen=True)
class Orientation:
    """How stored frames turn into displayed ones: a transpose, then flips (any multiple of 90 degrees,
    mirrored or not). Read from a display matrix; other angles are taken to the nearest such turn.

    Attributes:
        transpose: swap rows and columns first.
        flip_x: then mirror left-right.
        flip_y: then mirror top-bottom.
        matrix: the input's display matrix (9 int32, FFmpeg's layout), written again on output.
    """

    transpose: bool = False
    flip_x: bool = False
    flip_y: bool = False
    matrix: tuple[int, ...] | None = None

    @classmethod
    def from_matrix(cls, matrix: Sequence[int] | None) -> Orientation:
        """From FFmpeg's display matrix: a displayed point is ``(a x + c y, b x + d y)`` of a stored one."""
        if matrix is None:
            return cls()
        a, b, _, c, d = matrix[:5]
        if abs(a) >= abs(c):
            return cls(False, a < 0, d < 0, tuple(matrix))
        return cls(True, c < 0, b < 0, tuple(matrix))

    @property
    def identity(self) -> bool:
        return not (self.transpose or self.flip_x or self.flip_y)

    def to_display(self, pixels: np.ndarray) -> np.ndarray:
        """``[H, W, C]`` stored frame -> displayed frame."""
        if self.transpose:
            pixels = pixels.transpose(1, 0, 2)
        if self.flip_x:
            pixels = pixels[:, ::-1]
        if self.flip_y:
            pixels = pixels[::-1]
        return np.ascontiguousarray(pixels)

    def to_stored(self, pixels: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`to_display`."""
        if self.flip_y:
            pixels = pixels[::-1]
        if self.flip_x:
            pixels = pixels[:, ::-1]
        if self.transpose:
            pixels = pixels.transpose(1, 0, 2)
        return np.ascontiguousarray(pixels)


def _display_matrix(frame, stream) -> tuple[int, ...] | None:
    """The display matrix of a decoded frame (FFmpeg passes the stream's on), or one from a rotate tag."""
    entry = frame.side_data.get("DISPLAYMATRIX")
    if entry is not None and entry.buffer_size == 36:
        return struct.unpack("<9i", bytes(entry))
    tag = stream.metadata.get("rotate")
    if tag is None:
        return None
    try:  # the legacy tag is clockwise degrees; FFmpeg's matrix for it
        radians = -np.deg2rad(float(tag))
    except ValueError:
        return None
    cos, sin = np.cos(radians), np.sin(radians)
    fixed = [round(v * 65536) for v in (cos, -sin, 0, sin, cos, 0, 0, 0)]
    fixed[2] = fixed[5] = 0
    return (*fixed[:8], 1 << 30)


# ------------------------------------------------------------------ reading


@dataclass(frozen=True)
class StreamNote:
    """A stream other than the video: ``index`` in the input, ``kind`` ("audio", ...), ``codec``."""

    index: int
    kind: str
    codec: str


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learnt about a video without decoding it all.

    Attributes:
        path: the file.
        format: FFmpeg's demuxer name.
        codec: the video codec.
        stream_index: the video stream's index in the file.
        width, height: stored frame size (before the display matrix).
        time_base: the video stream's time base (timestamps count these).
        fps: average frame rate (frames per second), as a fraction.
        orientation: stored -> displayed orientation (and the display matrix).
        colour: colour tags of the first frame (``colorspace``, ``color_range``, ``color_primaries``,
            ``color_trc``, FFmpeg's numbers).
        audio: audio streams. others: streams that will be dropped.
        metadata: the container's tags.
        packets: video packets counted while probing (an estimate of the frame count).
        end_pts: where the video stream ends (its start plus duration, time-base units), when recorded.
    """

    path: Path
    format: str
    codec: str
    stream_index: int
    width: int
    height: int
    time_base: Fraction
    fps: Fraction
    orientation: Orientation
    colour: Mapping[str, int]
    audio: tuple[StreamNote, ...]
    others: tuple[StreamNote, ...]
    metadata: Mapping[str, str]
    packets: int
    end_pts: int | None

    @property
    def display_size(self) -> tuple[int, int]:
        """``(width, height)`` as shown."""
        return (self.height, self.width) if self.orientation.transpose else (self.width, self.height)


@dataclass
class ReadStats:
    """What a read skipped: ``corrupt`` frames (decode errors or frames FFmpeg flags as corrupt)."""

    corrupt: int = 0
    corrupt_pts: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Frame:
    """One decoded frame: ``index`` among the video's good frames, ``pts`` (time-base units), its
    ``duration`` (time-base units) and ``image``, RGB ``[height, width, 3]`` uint8, display orientation."""

    index: int
    pts: int
    duration: int
    image: np.ndarray


@dataclass(frozen=True)
class FrameTable:
    """Every good frame's timestamp and duration, found by one full read (:func:`read_frames` fills it).

    Attributes:
        pts: ``[n]`` int64 presentation timestamps in presentation order.
        durations: ``[n]`` int64 durations.
        corrupt: frames skipped as corrupt.
        seekable: timestamps are strictly increasing, so a range can be found by seeking.
    """

    pts: np.ndarray
    durations: np.ndarray
    corrupt: int
    seekable: bool

    def __len__(self) -> int:
        return len(self.pts)

    def seconds(self, time_base: Fraction) -> np.ndarray:
        """Each frame's timestamp in seconds, ``[n]`` float64."""
        return self.pts.astype(np.float64) * float(time_base)

    def duration(self, time_base: Fraction) -> float:
        """First frame's start to last frame's end, in seconds."""
        if not len(self):
            return 0.0
        return float((int(self.pts[-1]) + int(self.durations[-1]) - int(self.pts[0])) * time_base)

    @classmethod
    def build(
        cls, pts: Sequence[int], last_duration: int, corrupt: int, end_pts: int | None = None
    ) -> FrameTable:
        """The table of frames read in presentation order.

        A frame lasts until the next one starts (a skipped corrupt frame's time goes to the frame before
        it); the last one until the stream's end when the container records one after it, else for
        ``last_duration`` (its packet's). With B-frames a container's end may count decoding times, so
        the last frame's duration is the one value a file does not pin down exactly.
        """
        stamps = np.asarray(pts, dtype=np.int64)
        durations = np.diff(stamps, append=stamps[-1:] + 1) if len(stamps) else stamps.copy()
        if len(stamps):
            end_known = end_pts is not None and end_pts > stamps[-1]
            durations[-1] = end_pts - stamps[-1] if end_known else max(int(last_duration), 1)
        seekable = bool(len(stamps) < 2 or np.all(np.diff(stamps) > 0))
        return cls(stamps, durations, corrupt, seekable)


def _still_image(format_name: str) -> bool:
    return any(name in _STILL_IMAGE_FORMATS or name.endswith("_pipe") for name in format_name.split(","))


def probe(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> VideoInfo:
    """Open a video, check it can be stylized and describe it (decoding only up to its first frame).

    Raises:
        VideoError: the file is missing or not a video FFmpeg can read, is a still image, has no video
            stream, has no frame that decodes, or its frames are larger than ``max_pixels``.
    """
    av = _av()
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path} does not exist or is not a file")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as error:
        raise VideoError(f"{path} is not a video FFmpeg can read ({_reason(error)})") from error
    with container:
        if _still_image(container.format.name):
            raise VideoError(f"{path} is a still image, not a video: stylize it with 'jojogan stylize'")
        stream = _video_stream(container, path)
        if max_pixels is not None and stream.width * stream.height > max_pixels:
            raise VideoError(
                f"{path} has {stream.width}x{stream.height} frames, above the limit of {max_pixels} pixels "
                "per frame (raise max_pixels to allow it)"
            )
        first, packets = _first_frame(container, stream, path)
        audio, others = _other_streams(container, stream)
        return VideoInfo(
            path=path,
            format=container.format.name,
            codec=stream.codec_context.name,
            stream_index=stream.index,
            width=first.width,
            height=first.height,
            time_base=stream.time_base or Fraction(1, 90000),
            fps=_frame_rate(stream),
            orientation=Orientation.from_matrix(_display_matrix(first, stream)),
            colour={name: int(getattr(first, name)) for name in _COLOUR_TAGS},
            audio=audio,
            others=others,
            metadata={k: v for k, v in container.metadata.items() if k.lower() != "encoder"},
            packets=packets,
            end_pts=stream.start_time + stream.duration
            if stream.duration and stream.start_time is not None
            else None,
        )


_COLOUR_TAGS = ("colorspace", "color_range", "color_primaries", "color_trc")


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _video_stream(container, path: Path):
    streams = [s for s in container.streams.video if not s.disposition & _attached_pic()]
    if not streams:
        held = _kinds(container)
        raise VideoError(f"{path} has no video stream ({f'only {held}' if held else 'no stream at all'})")
    return streams[0]


def _attached_pic() -> int:
    av = _av()
    return int(av.stream.Disposition.attached_pic)


def _kinds(container) -> str:
    cover = _attached_pic()
    kinds = {"a cover picture" if s.disposition & cover else s.type for s in container.streams}
    return ", ".join(sorted(kinds))


def _frame_rate(stream) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    return Fraction(25)


def _first_frame(container, stream, path: Path):
    """The first frame that decodes, and how many packets the stream holds (demuxed, not decoded)."""
    first, packets = None, 0
    decoder = _packets_decoded(container, stream, ReadStats())
    for frame in decoder:
        first = frame
        break
    decoder.close()
    if first is None:
        raise VideoError(f"{path} has zero frames that decode (its video stream is empty or damaged)")
    container.seek(0)
    for packet in container.demux(stream):
        packets += packet.size > 0
    return first, packets


def _other_streams(container, video) -> tuple[tuple[StreamNote, ...], tuple[StreamNote, ...]]:
    audio, others = [], []
    for s in container.streams:
        if s.index == video.index:
            continue
        codec = s.codec_context.name if getattr(s, "codec_context", None) is not None else "unknown"
        (audio if s.type == "audio" else others).append(StreamNote(s.index, s.type, codec))
    return tuple(audio), tuple(others)


def _packets_decoded(container, stream, stats: ReadStats) -> Iterator:
    """Decoded frames of ``stream``, skipping (and counting) packets that fail and corrupt frames."""
    av = _av()
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.FFmpegError as error:
            stats.corrupt += 1
            if packet.pts is not None:
                stats.corrupt_pts.append(int(packet.pts))
            log.debug("skipping a frame that does not decode (pts %s): %s", packet.pts, error)
            continue
        for frame in frames:
            if frame.is_corrupt:
                stats.corrupt += 1
                if frame.pts is not None:
                    stats.corrupt_pts.append(int(frame.pts))
                continue
            yield frame


def _to_rgb(frame, info: VideoInfo) -> np.ndarray:
    rgb = frame.to_ndarray(format="rgb24", src_color_range=frame.color_range or None)
    return info.orientation.to_display(rgb)


NO_PIXELS = np.zeros((0, 0, 3), np.uint8)
"""The image of a frame read without its pixels (``read_frames(..., pick=...)``)."""


def _pixels(frame, info: VideoInfo, index: int, pick: Callable[[int], bool] | None) -> np.ndarray:
    return _to_rgb(frame, info) if pick is None or pick(index) else NO_PIXELS


def read_frames(
    info: VideoInfo,
    start: int = 0,
    end: int | None = None,
    table: FrameTable | None = None,
    stats: ReadStats | None = None,
    pick: Callable[[int], bool] | None = None,
) -> Iterator[Frame]:
    """The good frames ``[start, end)`` of a video, decoded one at a time (display orientation).

    Without ``table`` frames are counted from the first (a full read, e.g. the one that builds the
    table); with it a range is found by seeking to the key frame before it (or, when the timestamps are
    unusable or the seek overshoots, by decoding from the start), and frames carry the table's indices.

    Args:
        info: from :func:`probe`.
        start, end: frame indices (``end=None``: to the last frame).
        table: the video's :class:`FrameTable`.
        stats: counts the corrupt frames skipped (on a full read).
        pick: the frames whose pixels are wanted (by index); the others come with an empty image
            (``[0, 0, 3]``), decoded but never converted to RGB. ``None``: every frame's.
    """
    stats = ReadStats() if stats is None else stats
    if table is None:
        with _opened(info) as (container, stream):
            yield from _counted(container, stream, info, start, end, stats, pick=pick)
        return
    end = len(table) if end is None else min(end, len(table))
    if start >= end:
        return
    if table.seekable and start > 0:
        with _opened(info) as (container, stream):
            container.seek(int(table.pts[start]), stream=stream, backward=True, any_frame=False)
            frames = _packets_decoded(container, stream, ReadStats())
            first = next((f for f in frames if f.pts is not None), None)
            if first is not None and first.pts <= table.pts[start]:
                yield from _in_table(itertools.chain([first], frames), info, table, start, end, pick)
                return
        log.debug("seeking in %s overshot frame %d; decoding from the start", info.path.name, start)
    with _opened(info) as (container, stream):
        frames = _packets_decoded(container, stream, ReadStats())
        if table.seekable:
            yield from _in_table(frames, info, table, start, end, pick)
        else:  # timestamps unusable: count frames as the full read did
            for frame in _counted(container, stream, info, start, end, ReadStats(), frames, pick):
                yield Frame(
                    frame.index, int(table.pts[frame.index]), int(table.durations[frame.index]), frame.image
                )


@contextlib.contextmanager
def _opened(info: VideoInfo):
    av = _av()
    with av.open(str(info.path)) as container:
        stream = container.streams[info.stream_index]
        # frame threads would decode faster, but closing a frame-threaded decoder in the middle of a
        # stream (a chunk ends) can deadlock in FFmpeg; slice threads cannot
        stream.thread_type = "SLICE"
        yield container, stream


def _duration_of(frame, info: VideoInfo) -> int:
    if frame.duration:
        return int(frame.duration)
    return max(int(round(1 / (info.fps * info.time_base))), 1)


def _counted(
    container, stream, info: VideoInfo, start: int, end: int | None, stats: ReadStats, frames=None, pick=None
):
    frames = _packets_decoded(container, stream, stats) if frames is None else frames
    index, last_pts = 0, None
    for frame in frames:
        if end is not None and index >= end:
            return
        pts = frame.pts if frame.pts is not None else (last_pts + 1 if last_pts is not None else 0)
        last_pts = pts
        if index >= start:
            yield Frame(index, int(pts), _duration_of(frame, info), _pixels(frame, info, index, pick))
        index += 1


def _in_table(
    frames: Iterator, info: VideoInfo, table: FrameTable, start: int, end: int, pick=None
) -> Iterator[Frame]:
    """The frames whose timestamps the table lists in ``[start, end)``."""
    wanted = {int(p): i for i, p in enumerate(table.pts[start:end], start)}
    last = int(table.pts[end - 1])
    for frame in frames:
        if frame.pts is None:
            continue
        if frame.pts > last:
            return
        index = wanted.get(int(frame.pts))
        if index is not None:
            yield Frame(index, int(frame.pts), int(table.durations[index]), _pixels(frame, info, index, pick))


# ------------------------------------------------------------------ writing


@dataclass(frozen=True)
class EncodeSettings:
    """How the stylized video is encoded.

    Attributes:
        codec: an FFmpeg video encoder (``libx264``, ``libx265``, ``libvpx-vp9``, ``libsvtav1``, ``mpeg4``,
            ``ffv1``, ...).
        crf: the constant-rate quality factor for encoders that have one (lower is better; ``None``:
            the encoder's default).
        preset: the encoder's speed preset (x264/x265: ``ultrafast`` ... ``veryslow``), ``None``: default.
        pix_fmt: the encoded pixel format.
        options: further encoder options, passed to FFmpeg as they are.
    """

    codec: str = DEFAULT_CODEC
    crf: float | None = DEFAULT_CRF
    preset: str | None = None
    pix_fmt: str = "yuv420p"
    options: Mapping[str, str] = field(default_factory=dict)

    def encoder_options(self) -> dict[str, str]:
        options = {}
        if self.crf is not None and self.codec in _CRF_OPTION:
            options[_CRF_OPTION[self.codec]] = f"{self.crf:g}"
            if self.codec.startswith("libvpx"):
                options["b"] = "0"  # constant quality, no bit-rate cap
        if self.preset is not None:
            options["preset"] = self.preset
        if self.codec in _NO_B_FRAMES:
            key, value = _NO_B_FRAMES[self.codec]
            options[key] = value
        options.update({str(k): str(v) for k, v in self.options.items()})
        return options


@dataclass(frozen=True)
class OutputPlan:
    """How the output will be written, settled by :func:`check_output` before any work.

    Attributes:
        path: the output file. muxer: FFmpeg's muxer for its suffix.
        settings: the encode settings (4:2:0 turned 4:4:4 for odd-sized frames).
        time_base: the encoder's time base: the input's, unless the encoder cannot count in it.
    """

    path: Path
    muxer: str
    settings: EncodeSettings
    time_base: Fraction


def check_output(info: VideoInfo, out: str | os.PathLike, settings: EncodeSettings) -> OutputPlan:
    """Check that ``out`` can be written from ``info`` with ``settings``, before any work is done.

    Raises:
        VideoError: an unknown output suffix, the output is the input, an unknown encoder or encoder
            option, or a container that cannot hold the encoder's codec or pixel format.
    """
    av = _av()
    out = Path(out)
    muxer = CONTAINERS.get(out.suffix.lower())
    if muxer is None:
        raise VideoError(f"cannot write {out.name}: use one of the suffixes {', '.join(sorted(CONTAINERS))}")
    if out.resolve() == info.path.resolve() or (out.exists() and out.samefile(info.path)):
        raise VideoError(f"the output {out} is the input video; choose another output path")
    try:
        codec = av.codec.Codec(settings.codec, "w")
    except (av.error.FFmpegError, ValueError) as error:
        raise VideoError(f"FFmpeg has no encoder named {settings.codec!r}") from error
    if codec.type != "video":
        raise VideoError(f"{settings.codec!r} encodes {codec.type}, not video")
    supported = _supported_codecs(muxer)
    if settings.codec not in supported and codec.name not in supported:
        raise VideoError(
            f"a {out.suffix} file cannot hold {settings.codec} video; choose another suffix or codec "
            "(.mkv holds almost any)"
        )
    settings = _pixel_format(info, settings, {f.name for f in codec.video_formats or ()})
    return OutputPlan(out, muxer, settings, _encoder_time_base(info, settings))


def _pixel_format(info: VideoInfo, settings: EncodeSettings, formats: set[str]) -> EncodeSettings:
    if formats and settings.pix_fmt not in formats:
        raise VideoError(
            f"{settings.codec} cannot encode {settings.pix_fmt}; it takes {', '.join(sorted(formats))}"
        )
    if (info.width % 2 or info.height % 2) and settings.pix_fmt.endswith("420p"):
        wide = settings.pix_fmt.replace("420p", "444p")
        if formats and wide not in formats:
            raise VideoError(
                f"{info.width}x{info.height} frames are odd-sized: {settings.codec} cannot store them "
                "in 4:2:0"
            )
        log.info("%dx%d frames are odd-sized: encoding %s instead of %s", info.width, info.height, wide,
                 settings.pix_fmt)  # fmt: skip
        settings = dataclasses.replace(settings, pix_fmt=wide)
    return settings


def _supported_codecs(muxer: str) -> set[str]:
    with _av().open(io.BytesIO(), "w", format=muxer) as probe_container:
        return set(probe_container.supported_codecs)


def _configure(context, info: VideoInfo, settings: EncodeSettings, time_base: Fraction) -> None:
    """Set an encoder up for the video's frames (not yet opened)."""
    context.width, context.height, context.pix_fmt = info.width, info.height, settings.pix_fmt
    context.time_base, context.framerate = time_base, info.fps
    context.max_b_frames = 0  # decoding order = display order, so that segments can follow each other
    options = settings.encoder_options()
    if settings.codec == "libx264":
        context.thread_type = "FRAME"  # x264's own frame threads, as FFmpeg's command line (PyAV: sliced)
        options = _without_avx512(options)
    for name, value in info.colour.items():
        setattr(context, name, value)
    context.options = options


def _without_avx512(options: dict[str, str]) -> dict[str, str]:
    """x264's options with its AVX-512 code turned off, where x264 would use it.

    A chunk must encode to the same bytes every time, or a resumed video is not the uninterrupted file. x264's
    AVX-512 code read memory it had not written (in its macroblock tree: turning that off also made the bytes
    repeat): the same frames gave another segment in 5 of about 1,000 runs in a video's process, and every
    time under glibc's ``MALLOC_PERTURB_=1``. Without it (every other instruction set x264 detects kept) the
    bytes are those of the usual runs and do not change. An ``asm`` or ``no-asm`` the caller gives in
    ``x264-params`` is kept.
    """
    sets = _x264_instruction_sets()
    params = options.get("x264-params", "")
    if "AVX512" not in sets or "asm" in params:  # asm=..., no-asm=1: the caller's choice
        return options
    kept = "asm=" + ",".join(name for name in sets if name != "AVX512")
    return {**options, "x264-params": f"{params}:{kept}" if params else kept}


@functools.cache
def _x264_instruction_sets() -> tuple[str, ...]:
    """The instruction sets x264 detects on this machine, as it names them (it reports them when an encoder
    opens; asked once per process)."""
    av = _av()
    logs: list = []
    quiet = av.logging.get_level()
    av.logging.set_level(av.logging.INFO)
    try:
        with av.logging.Capture() as logs:
            context = av.codec.CodecContext.create("libx264", "w")
            context.width, context.height, context.pix_fmt = 64, 64, "yuv420p"
            context.time_base = Fraction(1, 25)
            context.open()
    except (av.error.FFmpegError, ValueError):  # pragma: no cover - without x264 nothing encodes with it
        pass
    finally:
        av.logging.set_level(quiet)
    line = next((message for _, _, message in logs if "cpu capabilities:" in message), "")
    return tuple(line.split("cpu capabilities:", 1)[-1].split())


def _encoder(info: VideoInfo, settings: EncodeSettings, time_base: Fraction):
    """An unopened encoder context for the video's frames."""
    context = _av().codec.CodecContext.create(settings.codec, "w")
    _configure(context, info, settings, time_base)
    return context


def _encoder_time_base(info: VideoInfo, settings: EncodeSettings) -> Fraction:
    """The input's time base if the encoder opens with it, else one tick per frame (logged).

    Some encoders (MPEG-4 part 2, for one) cannot count in ticks finer than 1/65535 s, e.g. 1/90000.
    """
    av = _av()
    per_frame = 1 / info.fps if (1 / info.fps).denominator <= 65535 else Fraction(1, round(info.fps) or 1)
    reason = ""
    for time_base in dict.fromkeys((info.time_base, per_frame)):
        try:
            _encoder(info, settings, time_base).open()
        except (av.error.FFmpegError, ValueError) as error:
            reason = _reason(error)
            continue
        if time_base != info.time_base:
            log.info("%s cannot count time in %s s ticks: timestamps are rounded to %s s", settings.codec,
                     info.time_base, time_base)  # fmt: skip
        return time_base
    raise VideoError(f"{settings.codec} cannot encode this video with these options ({reason})")


class SegmentWriter:
    """Encode consecutive frames of the output into a segment file (written atomically).

    Use as a context manager; :meth:`write` takes display-orientation RGB frames and their timestamps in
    the input's time base. A segment is a NUT file (it keeps any time base exactly) holding the video
    stream only; :func:`join_segments` puts segments and audio together.
    """

    def __init__(self, path: str | os.PathLike, info: VideoInfo, plan: OutputPlan):
        self.path = Path(path)
        self.info = info
        self.plan = plan
        self._stack = contextlib.ExitStack()
        self._scale = info.time_base / plan.time_base

    def __enter__(self) -> SegmentWriter:
        av = _av()
        tmp = self._stack.enter_context(atomic_output(self.path))
        self._container = self._stack.enter_context(av.open(str(tmp), "w", format="nut"))
        self._stream = self._container.add_stream(self.plan.settings.codec, rate=self.info.fps)
        self._stream.width, self._stream.height = self.info.width, self.info.height
        self._stream.pix_fmt = self.plan.settings.pix_fmt
        self._stream.time_base = self.plan.time_base
        _configure(self._stream.codec_context, self.info, self.plan.settings, self.plan.time_base)
        return self

    def write(self, image: np.ndarray, pts: int, duration: int) -> None:
        """Encode one frame: ``image`` RGB ``[height, width, 3]`` uint8 in display orientation; ``pts`` and
        ``duration`` in the input's time base."""
        av = _av()
        frame = av.VideoFrame.from_ndarray(self.info.orientation.to_stored(image), format="rgb24")
        colorspace = self.info.colour.get("colorspace") or None
        frame = frame.reformat(format=self.plan.settings.pix_fmt, dst_colorspace=colorspace)
        for name, value in self.info.colour.items():
            setattr(frame, name, value)
        frame.pts = int(round(pts * self._scale))
        frame.duration = max(int(round(duration * self._scale)), 1)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def __exit__(self, kind, error, traceback) -> None:
        try:
            if kind is None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        finally:
            self._stack.__exit__(kind, error, traceback)


def join_segments(info: VideoInfo, plan: OutputPlan, table: FrameTable, segments: Sequence[Path]) -> Path:
    """Remux the segments, in order, and the input's audio into ``plan.path`` (atomically; nothing is
    re-encoded but audio the output container cannot hold). Each frame keeps the duration ``table``
    gives it."""
    av = _av()
    if not segments:
        raise VideoError("there are no video segments to join")
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_output(plan.path))
        options = {"movflags": "+faststart"} if plan.muxer in ("mp4", "mov") else {}
        output = stack.enter_context(av.open(str(tmp), "w", format=plan.muxer, options=options))
        output.metadata.update(info.metadata)
        with av.open(str(segments[0])) as first:
            video = output.add_stream_from_template(first.streams.video[0])
        video.time_base = plan.time_base
        video.codec_context.framerate = info.fps
        if info.orientation.matrix is not None:
            video.set_display_matrix(list(info.orientation.matrix))
        source = stack.enter_context(av.open(str(info.path)))
        audio = _audio_outputs(info, source, output)
        if info.others:
            kinds = ", ".join(n.kind + (f" {n.codec}" if n.codec != "unknown" else "") for n in info.others)
            log.info("dropping %d stream(s) of %s that the output does not carry (%s)", len(info.others),
                     info.path.name, kinds)  # fmt: skip
        scale = info.time_base / plan.time_base
        durations = {
            int(round(p * scale)): max(int(round(d * scale)), 1)
            for p, d in zip(table.pts, table.durations, strict=True)
        }
        packets = [_segment_packets(segments, video, durations)]
        if audio:
            packets.append(_audio_packets(source, audio))
        for packet in heapq.merge(*packets, key=_packet_time):
            output.mux(packet)
    return plan.path


def _packet_time(packet) -> float:
    stamp = packet.dts if packet.dts is not None else packet.pts
    return float(stamp * packet.time_base) if stamp is not None else 0.0


def _segment_packets(segments: Sequence[Path], video, durations: Mapping[int, int]) -> Iterator:
    for segment in segments:
        with _av().open(str(segment)) as container:
            for packet in container.demux(container.streams.video[0]):
                if packet.size:
                    packet.duration = durations.get(packet.pts, packet.duration)
                    packet.stream = video
                    yield packet


@dataclass
class _AudioOutput:
    stream: object
    copy: bool


def _audio_outputs(info: VideoInfo, source, output) -> dict[int, _AudioOutput]:
    """One output stream per input audio stream: a copy when the container takes the codec, else an
    encoder of the first codec it takes."""
    av = _av()
    supported = set(output.supported_codecs)
    outputs = {}
    for note in info.audio:
        stream = source.streams[note.index]
        if note.codec in supported:
            outputs[note.index] = _AudioOutput(output.add_stream_from_template(stream), True)
        else:
            name = next((c for c in _AUDIO_PREFERENCE if c in supported and c in av.codecs_available), None)
            if name is None:
                log.info("dropping audio stream %d (%s): a %s file takes no audio codec FFmpeg can encode",
                         note.index, note.codec, output.format.name)  # fmt: skip
                continue
            rates = av.codec.Codec(name, "w").audio_rates
            rate = stream.rate if not rates or stream.rate in rates else max(rates)
            encoded = output.add_stream(name, rate=rate, layout=stream.layout.name)
            log.info("audio stream %d (%s) cannot go into this container as it is: re-encoding it as %s",
                     note.index, note.codec, name)  # fmt: skip
            outputs[note.index] = _AudioOutput(encoded, False)
        outputs[note.index].stream.metadata.update(stream.metadata)
    return outputs


def _audio_packets(source, outputs: Mapping[int, _AudioOutput]) -> Iterator:
    streams = [source.streams[index] for index in outputs]
    for packet in source.demux(streams):
        target = outputs[packet.stream.index]
        if target.copy:
            if packet.size:
                packet.stream = target.stream
                yield packet
            continue
        for frame in packet.decode():
            frame.pts = None  # the encoder counts samples itself
            yield from target.stream.encode(frame)
    for target in outputs.values():
        if not target.copy:
            yield from target.stream.encode()
