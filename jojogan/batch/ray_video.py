"""Videos on the Ray engine: each video split into chunks over the stylize workers, then joined.

A video at a local path (every worker reads it, and the output folder is shared, as the engine requires)
goes through the steps of :mod:`jojogan.video.chunks`, over the chunk store in the batch's workspace
(:func:`~jojogan.batch.job.video_workspace`):

1. one worker prepares it: checks, the face tracks (cuts and landmark smoothing need the whole clip in
   order), the store (keeping the chunks an interrupted run finished, here or on the local engine);
2. the workers invert its chunks, each chunk going to the next idle worker (:class:`ray.util.ActorPool`);
3. one worker smooths the codes of every chunk (once, centrally: across chunk borders as one process does);
4. the workers render its chunks into their segments;
5. the driver joins the segments and the input's audio (PyAV) into the workspace, atomically, reads the
   output for the manifest writer and clears the workspace.

The file equals the local engine's byte for byte (tested). The workers load the pipeline once and serve
every video of the batch, and its photos too when the plan has no alignment pool (one pipeline load per
worker, not one for the photos' actors and another for the videos'); otherwise they start after the
photos' pipeline has finished and given its CPUs back.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from jojogan.batch.inputs import InputItem
from jojogan.batch.job import (
    BatchSettings,
    PhotoResult,
    Stylizer,
    clear_workspace,
    error_line,
    video_output,
    video_workspace,
)

__all__ = ["run_videos"]

log = logging.getLogger(__name__)


def _attempt(step, *args) -> tuple[object, str | None]:
    """``(step(*args), None)``, or ``(None, the error's line)``: a bad video is a manifest line."""
    try:
        return step(*args), None
    except Exception as error:
        return None, error_line(error)


class _RayVideoWorker:
    """One video worker (a Ray actor): the pipeline loaded once; each method is one step of one video and
    returns ``(value, error line or None)``."""

    def __init__(self, settings: BatchSettings, batch_size: int | None = None):
        from jojogan.op.memory import cpu_memory_reuse

        self.stylizer = Stylizer(settings, batch_size)
        self._job = contextlib.ExitStack()  # the actor is one long job of the CPU memory policy
        self._job.enter_context(cpu_memory_reuse(self.stylizer.pipe.device))

    def photo(self, index: int, item: InputItem) -> tuple[int, PhotoResult]:
        """One photo (or video at a URI) of a mixed batch, as a stylize actor aligning its own photos
        makes it (:class:`jojogan.batch.ray_engine._RayStylizer`): the pipeline is loaded once per batch."""
        from jojogan.batch.inputs import is_video
        from jojogan.batch.job import align_photo

        if is_video(item):
            return index, self.stylizer.video(item)
        aligned = align_photo(item, self.stylizer.settings, self.stylizer.size)
        (result,) = self.stylizer.finish_many([item], [aligned])
        return index, result

    def prepare(self, source: str, made: str):
        from jojogan.video import chunks

        settings = self.stylizer.settings
        return _attempt(
            chunks.prepare, self.stylizer.pipe, source, made, settings.style, settings.config, settings.video
        )

    def invert(self, job, chunk: int):
        from jojogan.video import chunks

        return _attempt(chunks.invert, self.stylizer.pipe, job, chunk)

    def smooth(self, job):
        from jojogan.video import chunks

        return _attempt(chunks.smooth, job)

    def render(self, job, chunk: int):
        from jojogan.video import chunks

        return _attempt(chunks.render, self.stylizer.pipe, job, chunk)


def run_videos(
    ray,
    items: Sequence[InputItem],
    settings: BatchSettings,
    workdir: Path,
    workers: int,
    resources: dict,
    batch_size: int | None = None,
    photos: Sequence[InputItem] = (),
) -> Iterator[tuple[InputItem, PhotoResult]]:
    """Stylize local videos on ``workers`` video actors, each video split into chunks over them; first
    ``photos``, the rest of a mixed batch, one at a time on the same actors.

    Args:
        ray: the connected ``ray`` module.
        items: the videos (local paths).
        settings: the batch's settings. workdir: the output folder (shared with the workers).
        workers: video actors to start. resources: what each reserves (``{"num_cpus": 1}``, ...,
            ``runtime_env`` included).
        batch_size: the stylize actors' photo batch (the videos' face batch is ``settings.video``'s).
    """
    if not items and not photos:
        return
    from ray.util import ActorPool

    actor = ray.remote(**resources)(_RayVideoWorker)
    pool = [actor.remote(settings, batch_size) for _ in range(workers)]
    try:
        done = ActorPool(pool).map_unordered(lambda a, i: a.photo.remote(i, photos[i]), range(len(photos)))
        for index, result in done:
            yield photos[index], result
        for item in items:
            start = time.perf_counter()
            result = _video(ray, pool, item, Path(workdir))
            result.seconds = time.perf_counter() - start
            yield item, result
    finally:
        for handle in pool:
            ray.kill(handle)


def _video(ray, pool: list, item: InputItem, workdir: Path) -> PhotoResult:
    """One video through the five steps, made in the batch's workspace (afterwards the file goes, and the
    folders left empty: a failed video's finished chunks stay for the next run)."""
    made = video_workspace(workdir, video_output(item))
    made.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _steps(ray, pool, item, made)
    finally:
        clear_workspace(made, workdir)


def _steps(ray, pool: list, item: InputItem, made: Path) -> PhotoResult:
    """Prepare, invert, smooth, render on the workers, join here; a failed step is the video's line."""
    from ray.util import ActorPool

    from jojogan.video import chunks

    job, error = ray.get(pool[0].prepare.remote(str(item.path), str(made)))
    if error is not None:
        return PhotoResult(outputs=[], error=error)
    resumed = sum(len(job.chunks) - len(job.todo(stage)) for stage in ("codes", "render"))
    names: set[str] = set()
    for method, stage in (("invert", "codes"), ("smooth", None), ("render", "render")):
        if stage is None:  # the central step, on one worker
            calls = [ray.get(pool[0].smooth.remote(job))]
        else:
            todo = job.todo(stage)
            calls = ActorPool(pool).map_unordered(lambda a, n, m=method: getattr(a, m).remote(job, n), todo)
        errors = []
        for value, error in calls:  # every call is waited for, failed or not
            if error is not None:
                errors.append(error)
            elif isinstance(value, str):
                names.add(value)
        if errors:
            return PhotoResult(outputs=[], error=errors[0])
    path, error = _attempt(chunks.join, job)
    if error is not None:
        return PhotoResult(outputs=[], error=error)
    log.info("%s: %d chunks on %d worker(s), %d chunk file(s) resumed", item.path, len(job.chunks),
             len(names), resumed)  # fmt: skip
    return PhotoResult(
        outputs=[(video_output(item), path.read_bytes())], faces=job.tracks, frames=job.frames,
        chunks=len(job.chunks), chunks_resumed=resumed, chunk_workers=len(names),
    )  # fmt: skip
