"""One video's run as steps that different workers can take: how a batch splits a long video.

:func:`~jojogan.video.stylize_video` does every step in one process; here the same steps are separate
calls over the same chunk store (:mod:`jojogan.video.store`), so any mix of workers that share the
output's folder gives the file one process gives, byte for byte:

1. :func:`prepare` (once, it needs the whole clip in order): check the input, the output and the
   settings, open the store (keeping a matching earlier run's chunks), track the faces (cuts and landmark
   smoothing included) and store the tracks; returns a :class:`ChunkedVideo`, which is all a worker needs;
2. :func:`invert` (per chunk, anywhere): the raw codes of a chunk's faces;
3. :func:`smooth` (once, after every chunk is inverted): each chunk's final codes and colour targets
   (:func:`~jojogan.video.pipeline.chunk_faces`, smoothed across chunk borders exactly as one process
   smooths them), stored as ``final-NNNNN.safetensors``;
4. :func:`render` (per chunk, anywhere): the chunk's frames stylized, pasted and encoded into its segment;
5. :func:`join` (once): the segments and the input's audio into the output (atomically); the store goes.

A step whose file is already in the store is never redone (:meth:`ChunkedVideo.todo`), so an interrupted
run, here or in :func:`~jojogan.video.stylize_video` with the same output and settings, resumes where it
stopped. Steps 2 and 4 return the worker's name (host and process), so a caller can tell who did what.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from jojogan.config import StylizeConfig
from jojogan.errors import JojoganError
from jojogan.video.io import OutputPlan, SegmentWriter, VideoInfo, join_segments
from jojogan.video.pipeline import (
    ChunkFaces,
    CodeBook,
    Timings,
    VideoConfig,
    check_video,
    chunk_faces,
    chunk_ranges,
    face_batch,
    invert_chunk,
    render_chunk,
    run_record,
    track_faces,
    video_settings,
)
from jojogan.video.store import ChunkStore
from jojogan.video.track import Plan

__all__ = ["ChunkedVideo", "invert", "join", "prepare", "render", "smooth", "worker_name"]

STAGES = ("codes", "final", "render")
"""The per-chunk files of a run, in the order they are made."""


@dataclass(frozen=True)
class ChunkedVideo:
    """One prepared video run: what every step needs (plain values, so it travels to other processes).

    Attributes:
        info: the input (:func:`~jojogan.video.io.probe`). written: the frames written (the input's, or
            the stylized face's size without ``paste``). output: how the output is written.
        style: the style file. config: the stylize settings, filled in by the pipeline's domain profile.
        video: the video settings. size: the generator's side in pixels.
        record: the store's fingerprint (:func:`~jojogan.video.pipeline.run_record`).
        chunks: frames ``(start, end)`` of each chunk. tracks: face tracks found.
    """

    info: VideoInfo
    written: VideoInfo
    output: OutputPlan
    style: Path
    config: StylizeConfig
    video: VideoConfig
    size: int
    record: dict
    chunks: tuple[tuple[int, int], ...]
    tracks: int

    @property
    def frames(self) -> int:
        return self.chunks[-1][1] if self.chunks else 0

    def store(self) -> ChunkStore:
        return ChunkStore(self.output.path, self.record)

    def path(self, stage: str, chunk: int) -> Path:
        """The store's file of ``stage`` (one of :data:`STAGES`) for ``chunk``."""
        store = self.store()
        if stage == "codes":
            return store.codes_path(chunk)
        if stage == "render":
            return store.segment_path(chunk)
        if stage == "final":
            return store.path(f"final-{chunk:05d}.safetensors")
        raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")

    def todo(self, stage: str) -> list[int]:
        """The chunks whose ``stage`` file is not in the store yet."""
        return [n for n in range(len(self.chunks)) if not self.path(stage, n).is_file()]

    def plan(self) -> Plan:
        saved = self.store().read_arrays("plan.npz")
        if saved is None:
            raise JojoganError(f"the face tracks of {self.info.path} are gone from {self.store().folder}")
        return Plan.from_arrays(saved)

    def book(self) -> CodeBook:
        store = self.store()
        return CodeBook(lambda c: store.read_tensors(store.codes_path(c)), self.video.chunk_frames)


def worker_name() -> str:
    """This process, as ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def prepare(
    pipe, src, out, style, config: StylizeConfig | None = None, video: VideoConfig | None = None, *,
    resume: bool = True,
) -> ChunkedVideo:  # fmt: skip
    """Step 1: check everything, open the store beside ``out`` and track the faces (or read the tracks a
    matching earlier run stored).

    Args:
        pipe: the pipeline. src: the input video. out: the output video. style: the style file.
        config, video: as :func:`~jojogan.video.stylize_video` takes them.
        resume: keep the work of an earlier run with the same input, style, base and settings.

    Raises:
        JojoganError: what :func:`~jojogan.video.stylize_video` refuses before any work (bad input,
            output or settings), or no face in any frame; nothing is left in the store then.
    """
    video = VideoConfig() if video is None else video
    config = video_settings(pipe, config)
    info, written, output, loaded = check_video(pipe, src, out, style, config, video)
    store = ChunkStore(out, run_record(pipe, info, loaded, config, video))
    store.open(resume)
    try:
        plan = track_faces(info, config.face, video, store, Timings(), False)
    except JojoganError:
        store.remove()
        raise
    chunks = tuple(chunk_ranges(len(plan.table), video.chunk_frames))
    return ChunkedVideo(
        info, written, output, Path(style), config, video, pipe.size, store.record, chunks, len(plan.tracks)
    )


def invert(pipe, job: ChunkedVideo, chunk: int) -> str:
    """Step 2: invert the faces of ``chunk`` and store their raw codes; returns :func:`worker_name`."""
    start, end = job.chunks[chunk]
    codes = invert_chunk(pipe, job.info, job.plan(), start, end, job.config, face_batch(pipe, job.video))
    job.store().write_tensors(job.path("codes", chunk), codes.tensors())
    return worker_name()


def smooth(job: ChunkedVideo) -> int:
    """Step 3 (central): the final codes and colour targets of every chunk not yet rendered, from every
    chunk's raw codes; returns how many chunks it stored. Needs no model."""
    missing = [n for n in range(len(job.chunks)) if not job.path("codes", n).is_file()]
    if missing:
        raise JojoganError(f"chunk(s) {missing} of {job.info.path} are not inverted yet; nothing to smooth")
    plan, book, store = job.plan(), job.book(), job.store()
    done = 0
    for chunk in job.todo("render"):
        if job.path("final", chunk).is_file():
            continue
        start, end = job.chunks[chunk]
        faces = chunk_faces(job.size, job.info, plan, book, start, end, job.config, job.video)
        store.write_tensors(job.path("final", chunk), _tensors(faces))
        done += 1
    return done


def _tensors(faces: ChunkFaces) -> dict[str, torch.Tensor]:
    """A chunk's final codes and colour targets as tensors (colours in float64, as they were computed)."""
    keys = sorted(faces.codes)
    rows = torch.tensor(keys, dtype=torch.int64).reshape(-1, 2)
    tensors = {"rows": rows, "codes": torch.cat([faces.codes[k] for k in keys]) if keys else torch.zeros(0)}
    if faces.colours:
        tensors["colour"] = torch.stack([torch.from_numpy(faces.colours[k]) for k in keys])
    return tensors


def _faces(tensors: dict[str, torch.Tensor], size: int) -> ChunkFaces:
    keys = [(int(t), int(f)) for t, f in tensors["rows"].tolist()]
    codes = {key: tensors["codes"][i : i + 1] for i, key in enumerate(keys)}
    colours = {key: tensors["colour"][i].numpy() for i, key in enumerate(keys)} if "colour" in tensors else {}
    return ChunkFaces(codes, colours, Image.new("RGB", (size, size)))


def render(pipe, job: ChunkedVideo, chunk: int) -> str:
    """Step 4: stylize, paste and encode ``chunk`` into its segment, with the final codes :func:`smooth`
    stored; returns :func:`worker_name`."""
    final = job.path("final", chunk)
    if not final.is_file():
        raise JojoganError(f"chunk {chunk} of {job.info.path} has no final codes yet (smooth first)")
    faces = _faces(job.store().read_tensors(final), job.size)
    start, end = job.chunks[chunk]
    with SegmentWriter(job.path("render", chunk), job.written, job.output) as writer:
        render_chunk(
            pipe, job.info, job.plan(), job.book(), start, end, job.style, job.config, job.video, writer,
            faces=faces,
        )  # fmt: skip
    return worker_name()


def join(job: ChunkedVideo) -> Path:
    """Step 5: join every chunk's segment and the input's audio into the output (atomically), then remove
    the store. Needs no model."""
    missing = job.todo("render")
    if missing:
        raise JojoganError(f"chunk(s) {missing} of {job.info.path} are not rendered yet; nothing to join")
    store = job.store()
    segments = [store.segment_path(n) for n in range(len(job.chunks))]
    join_segments(job.written, job.output, job.plan().table, segments)
    store.remove()
    return job.output.path
