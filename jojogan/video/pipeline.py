"""Stylizing a video: the face tracks, then every frame's faces through the pipeline's public stages.

:func:`stylize_video` runs, over the frames of ``SRC``:

1. **check** the input (:func:`~jojogan.video.io.probe`), the output (:func:`~jojogan.video.io.check_output`),
   the style and the settings, before anything is written;
2. **track** the faces (:func:`~jojogan.video.track.analyse`, one pass over all frames);
3. **invert**, chunk by chunk: each face of each frame is cropped from its smoothed square
   (:func:`~jojogan.inversion.align.align_quad`) and inverted in batches (``JoJoGAN.invert_faces``: the
   encoder of ``StylizeConfig.inversion``, restored first with ``restore_input``); the raw codes, the
   crop's geometry and its colour target go to the chunk store;
4. **render**, chunk by chunk: each face's code for the latent mode (:mod:`jojogan.video.latents`) goes
   through both generators in batches (``JoJoGAN.render_many``, blended by alpha, cleaned up when asked;
   the generators' stored noise, so the noise is fixed for the whole video), its colour is matched when
   asked, and it is pasted back (:func:`~jojogan.inversion.paste.paste_faces`) - frames without a face
   pass through unchanged - and the chunk is encoded into its own segment;
5. **join** the segments and the audio into ``OUT`` (atomically), and measure the run's figures
   (:mod:`jojogan.video.figures`): flicker, and the identity of each face track when
   ``StylizeConfig.identity`` names a network.

A chunk, frames ``[start, end)``, depends only on the tracks (step 2) and, for ``smooth`` and ``shot``,
on the raw codes of its neighbours (step 3): :func:`invert_chunk` and :func:`render_chunk` can run on
different workers and :func:`~jojogan.video.io.join_segments` puts the segments together. The chunk
store beside ``OUT`` keeps every finished chunk, so an interrupted run resumes where it stopped and gives
the same file as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from jojogan.config import StylizeConfig, check_alpha
from jojogan.errors import JojoganError
from jojogan.fileio import atomic_output
from jojogan.inversion.align import AlignedFace, align_quad
from jojogan.inversion.paste import paste_faces, photo_mask
from jojogan.video import figures
from jojogan.video.config import VideoConfig
from jojogan.video.io import (
    Orientation,
    OutputPlan,
    ReadStats,
    SegmentWriter,
    VideoInfo,
    check_output,
    join_segments,
    probe,
    read_frames,
)
from jojogan.video.latents import colour_target, final_codes, match_colour, windowed
from jojogan.video.store import ChunkStore
from jojogan.video.track import FaceTrack, Plan, analyse

__all__ = ["VideoConfig", "VideoResult", "invert_chunk", "render_chunk", "stylize_video", "video_settings"]

log = logging.getLogger("jojogan")

DEFAULT_BATCH = {"cuda": 16, "mps": 8, "cpu": 4}
"""Faces per encoder/generator batch when ``batch_size`` is not given, by device type."""


@dataclass
class VideoResult:
    """A stylized video: its ``path``, the ``report`` (counts, timings, figures) and the report's file
    (``None`` unless ``report`` was asked for)."""

    path: Path
    report: dict
    report_path: Path | None = None

    @property
    def flicker(self) -> dict | None:
        """Per region (``face``, ``seam``): the warping error of the output and of the input, their
        ``ratio`` (1.0: as steady as the input) and the pairs measured; ``None`` without paste or with
        ``flicker_every=0``."""
        return self.report["flicker"]

    @property
    def identity(self) -> list[dict] | None:
        """Per face track: the sampled frames' identity scores and the verdict
        (:func:`jojogan.video.figures.track_identity`); ``None`` when no network was asked for."""
        return self.report["identity"]


# ------------------------------------------------------------------ timings


class Timings:
    """Seconds per stage, each stage's own (time in a nested stage counts there, not in its parent)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.frames: dict[str, int] = defaultdict(int)
        self._stack: list[list] = []

    @contextlib.contextmanager
    def __call__(self, stage: str, frames: int = 0) -> Iterator[None]:
        self._stack.append([time.perf_counter(), 0.0])
        try:
            yield
        finally:
            start, nested = self._stack.pop()
            elapsed = time.perf_counter() - start
            self.seconds[stage] += elapsed - nested
            self.frames[stage] += frames
            if self._stack:
                self._stack[-1][1] += elapsed

    def iterate(self, stage: str, items: Iterable) -> Iterator:
        """``items``, with the time spent producing each one counted as ``stage``."""
        iterator = iter(items)
        while True:
            with self(stage):
                item = next(iterator, _END)
            if item is _END:
                return
            self.frames[stage] += 1
            yield item

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            stage: {
                "seconds": round(seconds, 4),
                "frames": self.frames[stage],
                "frames_per_second": round(self.frames[stage] / seconds, 3) if seconds > 0 else None,
            }
            for stage, seconds in self.seconds.items()
        }


_END = object()


def _bar(total: int, desc: str, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not show, dynamic_ncols=True, leave=False)


# ------------------------------------------------------------------ the chunk's codes


@dataclass
class ChunkCodes:
    """The raw codes of the faces of frames ``[start, end)``.

    Attributes:
        rows: ``[m, 2]`` (track, frame) of each face.
        codes: ``[m, n_latent, style_dim]`` raw W+ codes.
        to_photo: ``[m, 3, 3]`` each crop's crop-to-photo matrix. quads: ``[m, 4, 2]`` its corners.
        colour: ``[m, s, s, 3]`` colour targets (``s = 0`` when colour is not matched).
    """

    rows: torch.Tensor
    codes: torch.Tensor
    to_photo: torch.Tensor
    quads: torch.Tensor
    colour: torch.Tensor

    def tensors(self) -> dict[str, torch.Tensor]:
        return dataclasses.asdict(self)


def _crop(frame_image: np.ndarray, track: FaceTrack, row: int, size: int) -> AlignedFace:
    return align_quad(frame_image, track.quads[row], track.landmarks[row], size, face_index=track.track)


def invert_chunk(
    pipe,
    info: VideoInfo,
    plan: Plan,
    start: int,
    end: int,
    config: StylizeConfig,
    batch_size: int,
    timings: Timings | None = None,
    progress=None,
) -> ChunkCodes:
    """Crop and invert every tracked face of frames ``[start, end)`` (values in, values out).

    Args:
        pipe: the :class:`~jojogan.api.JoJoGAN` pipeline.
        info, plan: the video and its face tracks.
        start, end: the chunk's frames.
        config: the stylize settings (inversion, restore_input, match_colour), already filled in by
            ``pipe.settings``.
        batch_size: faces per encoder call.
        timings: stage timings to add to. progress: a tqdm bar to advance per frame.
    """
    timings = timings or Timings()
    rows, geometry, codes, colours, pending = [], [], [], [], []
    for frame in timings.iterate("decode", read_frames(info, start, end, plan.table)):
        for track, row in plan.faces_at(frame.index):
            with timings("alignment", frames=1):
                crop = _crop(frame.image, track, row, pipe.size)
            if config.match_colour:
                with timings("paste"):
                    colours.append(colour_target(crop))
            rows.append((track.track, frame.index))
            geometry.append((crop.to_photo, crop.quad))  # the crop itself goes once it is inverted
            pending.append(crop)
            if len(pending) >= batch_size:
                codes += _invert(pipe, pending, config, timings)
                pending = []
        if progress is not None:
            progress.update(1)
    codes += _invert(pipe, pending, config, timings)
    return _chunk_codes(pipe, rows, geometry, codes, colours)


def _invert(pipe, crops: list[AlignedFace], config: StylizeConfig, timings: Timings) -> list[torch.Tensor]:
    """Raw codes ``[n_latent, style_dim]`` of crops (restored first with ``restore_input``)."""
    if not crops:
        return []
    with timings("inversion", frames=len(crops)):
        faces = pipe.invert_faces([f"face {c.face_index}" for c in crops], crops, config)
    return [face.w_plus[0].detach().float().cpu() for face in faces]


def _chunk_codes(pipe, rows, geometry, codes, colours) -> ChunkCodes:
    n_latent, style_dim = pipe.generator.n_latent, pipe.generator.style_dim
    colour_shape = colours[0].shape if colours else (0, 0, 3)
    return ChunkCodes(
        rows=torch.tensor(rows, dtype=torch.int64).reshape(-1, 2),
        codes=torch.stack(codes) if codes else torch.zeros(0, n_latent, style_dim),
        to_photo=torch.tensor(np.array([m for m, _ in geometry])).reshape(-1, 3, 3),
        quads=torch.tensor(np.array([q for _, q in geometry])).reshape(-1, 4, 2),
        colour=torch.tensor(np.array(colours, dtype=np.float32)).reshape(len(colours), *colour_shape),
    )


# ------------------------------------------------------------------ reading the codes back


class CodeBook:
    """The raw codes, geometry and colour targets of every face, read from the chunk files on demand.

    Args:
        load: reads chunk ``c``'s :class:`ChunkCodes` (a dict of tensors).
        chunk_frames: frames per chunk.
        keep: chunk files kept in memory.
    """

    def __init__(self, load: Callable[[int], dict[str, torch.Tensor]], chunk_frames: int, keep: int = 4):
        self._load = load
        self._chunk_frames = chunk_frames
        self._keep = keep
        self._cache: OrderedDict[int, tuple[dict, dict]] = OrderedDict()

    def _chunk(self, frame: int) -> tuple[dict[str, torch.Tensor], dict[tuple[int, int], int]]:
        chunk = frame // self._chunk_frames
        if chunk not in self._cache:
            tensors = self._load(chunk)
            index = {(int(t), int(f)): i for i, (t, f) in enumerate(tensors["rows"].tolist())}
            self._cache[chunk] = (tensors, index)
            while len(self._cache) > self._keep:
                self._cache.popitem(last=False)
        self._cache.move_to_end(chunk)
        return self._cache[chunk]

    def get(self, name: str, track: int, frames: Iterable[int]) -> torch.Tensor:
        """``name`` ("codes", "colour", "to_photo", "quads") of ``track`` at ``frames``, stacked."""
        picked = []
        for frame in frames:
            tensors, index = self._chunk(frame)
            picked.append(tensors[name][index[(track, frame)]])
        return torch.stack(picked)


def _geometry(book: CodeBook, track: FaceTrack, row: int, source_size, placeholder) -> AlignedFace:
    """The aligned face's geometry as it was cropped (its image is a placeholder of the crop's size)."""
    frame = int(track.frames[row])
    to_photo = book.get("to_photo", track.track, [frame])[0].double().numpy()
    return AlignedFace(
        image=placeholder,
        quad=book.get("quads", track.track, [frame])[0].double().numpy(),
        landmarks=track.landmarks[row],
        face_index=track.track,
        num_faces=1,
        source_size=source_size,
        to_aligned=np.linalg.inv(to_photo),
        to_photo=to_photo,
    )


# ------------------------------------------------------------------ rendering a chunk


@dataclass
class ChunkFaces:
    """What rendering one chunk needs besides its frames: the final code ``[1, n_latent, style_dim]``
    and colour target of each face by (track, frame), from its neighbours too (:func:`chunk_faces`)."""

    codes: dict[tuple[int, int], torch.Tensor]
    colours: dict[tuple[int, int], np.ndarray]
    placeholder: Image.Image


def chunk_faces(
    size: int, info: VideoInfo, plan: Plan, book: CodeBook, start, end, config, video
) -> ChunkFaces:
    """The final code (and colour target) of every face in frames ``[start, end)``, for a ``size`` px
    generator (reads the raw codes of the neighbouring chunks that the latent mode's window reaches)."""
    times = plan.table.seconds(info.time_base)
    spf = float(1 / info.fps)
    codes, colours = {}, {}
    for track in plan.tracks:
        frames = [int(f) for f in track.frames if start <= f < end]
        if not frames:
            continue
        number = track.track
        raw = functools.partial(book.get, "codes", number)
        found = final_codes(video.latent, raw, track.frames, times, frames, video.code_sigma * spf)
        codes.update({(number, f): code[None] for f, code in zip(frames, found, strict=True)})
        if config.match_colour:
            targets = windowed(
                lambda fr, n=number: book.get("colour", n, fr).numpy(),
                track.frames,
                times,
                frames,
                video.colour_sigma * spf,
            )
            colours.update({(number, f): target for f, target in zip(frames, targets, strict=True)})
    return ChunkFaces(codes, colours, Image.new("RGB", (size, size)))


def render_chunk(
    pipe,
    info: VideoInfo,
    plan: Plan,
    book: CodeBook,
    start: int,
    end: int,
    style,
    config: StylizeConfig,
    video: VideoConfig,
    writer: SegmentWriter,
    timings: Timings | None = None,
    progress=None,
    faces: ChunkFaces | None = None,
) -> None:
    """Stylize, paste and encode frames ``[start, end)`` into ``writer`` (an open segment).

    Args:
        pipe: the pipeline. info, plan: the video and its tracks.
        book: every face's raw codes (this chunk's and, for ``smooth``/``shot``, its neighbours').
        start, end: the chunk's frames.
        style: a style file or loaded :class:`~jojogan.style_file.StyleFile`.
        config: the stylize settings (filled in by ``pipe.settings``). video: the video settings.
        writer: the chunk's open :class:`~jojogan.video.io.SegmentWriter`.
        timings, progress: stage timings to add to, a tqdm bar to advance per frame.
        faces: the chunk's :func:`chunk_faces`, when they were computed elsewhere (once, centrally).
    """
    timings = timings or Timings()
    chunk = (
        faces if faces is not None else chunk_faces(pipe.size, info, plan, book, start, end, config, video)
    )
    batch = face_batch(pipe, video)
    waiting, faces = [], 0
    for frame in timings.iterate("decode", read_frames(info, start, end, plan.table)):
        waiting.append(frame)
        faces += len(plan.faces_at(frame.index))
        if faces >= batch or len(waiting) >= batch:  # decoded frames wait for one batch at most
            _render_frames(
                pipe, info, plan, book, chunk, waiting, style, config, video, writer, timings, progress
            )
            waiting, faces = [], 0
    _render_frames(pipe, info, plan, book, chunk, waiting, style, config, video, writer, timings, progress)


def _render_frames(
    pipe, info, plan, book, chunk, frames, style, config, video, writer, timings, progress
) -> None:
    """Render the faces of ``frames`` as one batch, then paste and encode each frame in order."""
    from jojogan.results import Face

    todo = [(frame, track, row) for frame in frames for track, row in plan.faces_at(frame.index)]
    geometry = [_geometry(book, t, r, info.display_size, chunk.placeholder) for _, t, r in todo]
    styled = []
    if todo:
        prepared = [
            Face(f"frame {frame.index}", aligned, chunk.codes[(track.track, frame.index)], config.inversion)
            for (frame, track, _), aligned in zip(todo, geometry, strict=True)
        ]
        with timings("synthesis", frames=len(prepared)):
            styled = pipe.render_many(prepared, style, config=config)
    pasted: dict[int, list] = defaultdict(list)
    for (frame, track, _), aligned, image in zip(todo, geometry, styled, strict=True):
        if config.match_colour:
            with timings("paste"):
                image = match_colour(image, aligned, chunk.colours[(track.track, frame.index)])
        pasted[frame.index].append((image, aligned))
    for frame in frames:
        with timings("paste", frames=1):
            pixels = _output_frame(frame.image, pasted[frame.index], config, video, pipe.size)
        with timings("encode", frames=1):
            writer.write(pixels, frame.pts, frame.duration)
        if progress is not None:
            progress.update(1)


def _output_frame(image: np.ndarray, faces: list, config: StylizeConfig, video: VideoConfig, size: int):
    """The frame written: the photo with its faces pasted back (unchanged without faces), or without
    ``paste`` the stylized face itself (black while there is none)."""
    if not config.paste:
        return np.asarray(faces[0][0]) if faces else np.zeros((size, size, 3), np.uint8)
    if not faces:
        return image
    return np.asarray(paste_faces(image, faces, feather=video.feather))


def face_batch(pipe, video: VideoConfig) -> int:
    if video.batch_size is not None:
        return video.batch_size
    return DEFAULT_BATCH.get(torch.device(pipe.device).type, DEFAULT_BATCH["cpu"])


# ------------------------------------------------------------------ the whole video


def video_settings(pipe, config: StylizeConfig | None = None, **overrides) -> StylizeConfig:
    """The stylize settings of a video: ``config`` (default: pasted back) filled in by the pipeline's
    domain profile, checked for what applies to video.

    Raises:
        JojoganError: the base's pictures are not faces, ``aligned`` (the tracker aligns every frame),
            or ``face="all"`` without ``paste`` (one output frame holds one face).
    """
    config = StylizeConfig(paste=True) if config is None else config
    config = pipe.settings(config, **overrides)
    if not pipe.profile.faces:
        raise JojoganError(f"video stylizes faces; this base's pictures are {pipe.profile.name} pictures")
    if config.aligned:
        raise JojoganError("video frames are aligned face by face by the tracker; aligned does not apply")
    if config.face == "all" and not config.paste:
        raise JojoganError("face 'all' needs paste: without it each output frame shows one stylized face")
    if not config.paste:
        log.info(
            "paste is off: the output is the stylized face itself (paste=True puts it back in the frames)"
        )
    return config


def check_video(pipe, src, out, style, config: StylizeConfig, video: VideoConfig):
    """Every check that needs no frame decoded beyond the first: the input, the output, the style."""
    info = probe(src, config.max_pixels)
    written = info if config.paste else face_video(info, pipe.size)
    output = check_output(written, out, video.encode)
    loaded = pipe.load_style(style)
    check_alpha(config.alpha, loaded.generator.num_styles)
    pipe.recognizer_for(config)  # loaded now: a missing weights file fails before the first frame
    return info, written, output, loaded


def face_video(info: VideoInfo, size: int) -> VideoInfo:
    """What is written without paste: the stylized faces, ``size`` square, upright."""
    return dataclasses.replace(info, width=size, height=size, orientation=Orientation())


def run_record(pipe, info: VideoInfo, loaded, config: StylizeConfig, video: VideoConfig) -> dict:
    """What identifies a run's output: its input, style, base and every setting that changes frames."""
    from jojogan import __version__
    from jojogan.fileio import file_sha256

    stat = info.path.stat()
    stylize = dataclasses.replace(config, identity=None, identity_weights=None)  # a figure, not frames
    return {
        "version": __version__,
        "input": [str(info.path.resolve()), stat.st_size, stat.st_mtime_ns],
        "style": file_sha256(loaded.path) if loaded.path is not None else id(loaded),
        "base": pipe.base_sha256(),
        "size": pipe.size,
        "stylize": dataclasses.asdict(stylize),
        "video": frame_settings(video),
    }


FIGURE_SETTINGS = ("report", "flow_size", "flicker_every", "identity_frames")
"""The video settings that change what is measured and reported, never a frame."""


def frame_settings(video: VideoConfig) -> dict:
    """The video settings that can change the frames written, as a dict (what identifies a run's output
    beside the stylize settings): every field but :data:`FIGURE_SETTINGS` and the tracker's
    ``alignment_workers`` (the same tracks for any number)."""
    settings = dataclasses.asdict(video)
    for name in FIGURE_SETTINGS:
        settings.pop(name)
    settings["track"].pop("alignment_workers")
    return settings


def track_faces(
    info: VideoInfo, face, video: VideoConfig, store: ChunkStore, timings: Timings, show: bool
) -> Plan:
    """The face tracks: from the store, or from one pass over the video (then stored)."""
    saved = store.read_arrays("plan.npz")
    if saved is not None:
        return Plan.from_arrays(saved)
    stats = ReadStats()
    with _bar(info.packets, "tracking faces", show) as bar, timings("tracking"):
        frames = _advancing(timings.iterate("decode", read_frames(info, stats=stats)), bar)
        plan = analyse(frames, info, video.track, stats, face=face)
    timings.frames["tracking"] += len(plan.table)
    if plan.table.corrupt:
        log.warning("skipped %d corrupt frame(s) of %s", plan.table.corrupt, info.path.name)
    if not plan.tracks:
        raise JojoganError(f"no face was found in any frame of {info.path}")
    store.write_arrays("plan.npz", plan.to_arrays())
    return plan


def _advancing(items: Iterable, bar) -> Iterator:
    for item in items:
        yield item
        bar.update(1)


def chunk_ranges(count: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, count)) for start in range(0, count, size)]


@dataclass
class _Run:
    """One video's run: what every pass shares."""

    pipe: object
    info: VideoInfo
    written: VideoInfo
    output: OutputPlan
    plan: Plan
    store: ChunkStore
    style: object
    config: StylizeConfig
    video: VideoConfig
    timings: Timings
    show: bool
    on_chunk: Callable[[str, int], None] | None


def _run_chunks(run: _Run) -> int:
    """Steps 3 and 4 over every chunk not already in the store; returns how many were found done."""
    store, table = run.store, run.plan.table
    chunks = chunk_ranges(len(table), run.video.chunk_frames)
    book = CodeBook(lambda c: store.read_tensors(store.codes_path(c)), run.video.chunk_frames)
    done = 0
    for stage, path, desc in (
        ("codes", store.codes_path, "inverting faces"),
        ("render", store.segment_path, "rendering"),
    ):
        with _bar(len(table), desc, run.show) as bar:
            for number, (start, end) in enumerate(chunks):
                if path(number).is_file():
                    done += 1
                    bar.update(end - start)
                    continue
                _run_chunk(run, stage, number, start, end, book, bar)
                if run.on_chunk is not None:
                    run.on_chunk(stage, number)
    return done


def _run_chunk(run: _Run, stage: str, number: int, start: int, end: int, book: CodeBook, bar) -> None:
    if stage == "codes":
        batch = face_batch(run.pipe, run.video)
        codes = invert_chunk(run.pipe, run.info, run.plan, start, end, run.config, batch, run.timings, bar)
        run.store.write_tensors(run.store.codes_path(number), codes.tensors())
        return
    with SegmentWriter(run.store.segment_path(number), run.written, run.output) as writer:
        render_chunk(
            run.pipe, run.info, run.plan, book, start, end, run.style, run.config, run.video, writer,
            run.timings, bar,
        )  # fmt: skip


def stylize_video(
    pipe,
    src: str | os.PathLike,
    out: str | os.PathLike,
    style,
    config: StylizeConfig | None = None,
    video: VideoConfig | None = None,
    *,
    resume: bool = True,
    show_progress: bool = False,
    on_chunk: Callable[[str, int], None] | None = None,
    **overrides,
) -> VideoResult:
    """Stylize every tracked face of a video and write the result, sound and timing kept.

    Args:
        pipe: a :class:`~jojogan.api.JoJoGAN` pipeline.
        src: the input video (any container and codec FFmpeg decodes).
        out: the output video (``.mp4``, ``.mkv``, ``.mov``, ...; written atomically).
        style: a style file or a loaded style.
        config: the stylize settings (:class:`~jojogan.config.StylizeConfig`; default: pasted back), with
            keyword ``overrides`` of its fields. Without ``paste`` the output is the stylized face itself
            (the generator's size), black while no face is tracked.
        video: the video settings (:class:`VideoConfig`).
        resume: continue the work an interrupted run left beside ``out`` (when its settings match).
        show_progress: progress bars (frames/s and the time left) for each pass.
        on_chunk: called as ``on_chunk(stage, chunk)`` after each chunk is stored ("codes", "render").

    Returns:
        The output's path and the run's report.

    Raises:
        JojoganError: bad input (not a video, no video stream, no frames, frames above ``max_pixels``,
            no face in any frame), an output that cannot be written as asked (the input itself, a
            container that cannot hold the codec), or settings or a style that do not apply; nothing is
            written.
    """
    video = VideoConfig() if video is None else video
    started = time.perf_counter()
    # 1. check everything that can be checked before any work
    config = video_settings(pipe, config, **overrides)
    info, written, output, loaded = check_video(pipe, src, out, style, config, video)
    store = ChunkStore(out, run_record(pipe, info, loaded, config, video))
    store.open(resume)
    timings = Timings()
    # 2. the face tracks
    try:
        plan = track_faces(info, config.face, video, store, timings, show_progress)
    except JojoganError:
        store.remove()
        raise
    # 3-4. codes and segments, chunk by chunk
    run = _Run(
        pipe, info, written, output, plan, store, loaded, config, video, timings, show_progress, on_chunk
    )
    resumed = _run_chunks(run)
    # 5. the output, the report
    return _finish(run, resumed, started)


def _finish(run: _Run, resumed: int, started: float) -> VideoResult:
    """Join the segments into the output, measure the figures, write the report, clear the store."""
    chunks = len(chunk_ranges(len(run.plan.table), run.video.chunk_frames))
    with run.timings("join"):
        segments = [run.store.segment_path(n) for n in range(chunks)]
        join_segments(run.written, run.output, run.plan.table, segments)
    measured = _figures(run)
    report = {**_report(run, resumed, time.perf_counter() - started), **measured}
    report_path = _write_report(run.output.path, report) if run.video.report else None
    run.store.remove()
    return VideoResult(run.output.path, report, report_path)


def _report(run: _Run, resumed: int, seconds: float) -> dict:
    frames, plan, info = len(run.plan.table), run.plan, run.info
    return {
        "input": str(info.path),
        "output": str(run.output.path),
        "frames": frames,
        "corrupt_frames_skipped": plan.table.corrupt,
        "frames_with_faces": plan.stylized_frames,
        "shots": int(plan.shots.max()) + 1 if len(plan.shots) else 0,
        "tracks": len(plan.tracks),
        "tracks_found": plan.found,
        "size": list(run.written.display_size),
        "fps": float(info.fps),
        "duration_s": round(plan.table.duration(info.time_base), 6),
        "latent": run.video.latent,
        "chunks": len(chunk_ranges(frames, run.video.chunk_frames)),
        "chunks_resumed": resumed,
        "seconds": round(seconds, 3),
        "frames_per_second": round(frames / seconds, 3) if seconds > 0 else None,
        "timings": run.timings.summary(),
    }


def _mask_at(
    book: CodeBook, plan: Plan, info: VideoInfo, size: int, side: int
) -> Callable[[int], np.ndarray | None]:
    """The paste mask (union over the faces, ``[h, w]`` in [0, 1]) of a frame, ``None`` without faces;
    built at ``side`` (the flicker measurement's scale: at the generator's 1024 px it cost ten times more)."""
    placeholder = Image.new("RGB", (size, size))

    def mask(frame: int) -> np.ndarray | None:
        faces = plan.faces_at(frame)
        if not faces:
            return None
        masks = [photo_mask(_geometry(book, t, r, info.display_size, placeholder), side) for t, r in faces]
        return np.maximum.reduce(masks)

    return mask


def _figures(run: _Run) -> dict:
    """The flicker figure (with paste) and each face track's identity (with a network), measured on the
    written output (:mod:`jojogan.video.figures`)."""
    store, plan, video = run.store, run.plan, run.video
    book = CodeBook(lambda c: store.read_tensors(store.codes_path(c)), video.chunk_frames)
    recognizer = run.pipe.recognizer_for(run.config)
    output = probe(run.output.path, max_pixels=None) if run.config.paste else None
    mask_at = _mask_at(book, plan, run.info, run.pipe.size, min(run.pipe.size, video.flow_size))
    with run.timings("figures", frames=len(plan.table)):
        samples = figures.measure(
            run.info, plan, output, mask_at,
            every=video.flicker_every, flow_size=video.flow_size,
            crop_size=min(run.pipe.size, figures.IDENTITY_CROP),
            identity_frames=video.identity_frames if recognizer is not None else 0,
            timed=lambda: run.timings("identity"),
        )  # fmt: skip
    identity = None
    if recognizer is not None:
        with run.timings("identity", frames=len(samples.crops)):
            styled = _render_samples(run, book, samples.crops)
            identity = figures.track_identity(plan, samples.crops, styled, recognizer)
        log.info("%s", figures.identity_line(identity))
    for region, values in (samples.flicker or {}).items():
        if values["ratio"] is not None:
            log.info("flicker in the %s: %.2f x the input's (warping error, %d frame pairs)", region,
                     values["ratio"], values["pairs"])  # fmt: skip
    return {"flicker": samples.flicker, "identity": identity}


def _render_samples(run: _Run, book: CodeBook, crops: dict[tuple[int, int], AlignedFace]) -> dict:
    """The stylized face of each sampled ``(track, frame)``: its final code, rendered as in the video."""
    from jojogan.results import Face

    config = dataclasses.replace(run.config, match_colour=False)  # the codes only, no colour targets
    keys = sorted(crops)
    faces = []
    for track, frame in keys:
        codes = chunk_faces(
            run.pipe.size, run.info, run.plan, book, frame, frame + 1, config, run.video
        ).codes
        faces.append(Face(f"frame {frame}", crops[(track, frame)], codes[(track, frame)], config.inversion))
    batch, images = face_batch(run.pipe, run.video), []
    for start in range(0, len(faces), batch):
        images += run.pipe.render_many(faces[start : start + batch], run.style, config=config)
    return dict(zip(keys, images, strict=True))


def _write_report(out: Path, report: dict) -> Path:
    path = out.with_name(out.name + ".json")
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return path
