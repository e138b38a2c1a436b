"""The ``local`` engine: one process, one pipeline; the next photos are aligned on a CPU thread while the
generator works on the current one."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence

from jojogan.batch.inputs import InputItem, is_video
from jojogan.batch.job import BatchSettings, PhotoResult, Stylizer, align_photo

__all__ = ["PREFETCH", "run_local"]

PREFETCH = 2
"""Photos aligned ahead of the one being stylized (a bound on the crops held in memory)."""


def _align_ahead(
    items: Sequence[InputItem], settings: BatchSettings, size: int, ready: queue.Queue, stop: threading.Event
) -> None:
    """The alignment thread: puts one ``AlignedPhoto`` per item into ``ready``, in input order, until
    ``stop`` is set."""
    for item in items:
        aligned = align_photo(item, settings, size)  # never raises: a failure is aligned.error
        while not stop.is_set():
            try:
                ready.put(aligned, timeout=0.1)
                break
            except queue.Full:
                continue
        if stop.is_set():
            return


def _take(ready: queue.Queue, thread: threading.Thread):
    """The next aligned photo; fails instead of waiting forever if the alignment thread died."""
    while True:
        try:
            return ready.get(timeout=0.5)
        except queue.Empty:
            if not thread.is_alive() and ready.empty():
                raise RuntimeError("the alignment thread stopped before every photo was aligned") from None


def run_local(
    items: Sequence[InputItem], settings: BatchSettings, batch_size: int | None = None, workdir=None
) -> Iterator[tuple[InputItem, PhotoResult]]:
    """Stylize ``items`` in this process, yielding each result as soon as it is ready.

    The pipeline is loaded once, on the first call to ``next``; a model that cannot load raises there.
    A thread aligns photos ahead (up to :data:`PREFETCH`, or a batch, waiting), so alignment overlaps
    inversion and stylization; dlib and torch both leave Python's lock while they compute.

    Args:
        items: the photos and videos (each video one job, stylized after the photos).
        settings: the batch's settings.
        batch_size: faces batched on the device (see :class:`Stylizer`); with 1 (the CPU's default) each
            photo's result is the one ``jojogan stylize`` gives it, byte for byte.
        workdir: the output folder, where videos are made resumably (see :class:`Stylizer`).
    """
    if not items:
        return
    from jojogan.op.memory import cpu_memory_reuse

    videos = [item for item in items if is_video(item)]
    items = [item for item in items if not is_video(item)]
    stylizer = Stylizer(settings, batch_size, workdir)
    if not items:  # videos only
        with cpu_memory_reuse(stylizer.pipe.device):
            yield from ((video, stylizer.video(video)) for video in videos)
        return
    ready: queue.Queue = queue.Queue(maxsize=max(PREFETCH, stylizer.batch_size))
    stop = threading.Event()
    thread = threading.Thread(
        target=_align_ahead, args=(items, settings, stylizer.size, ready, stop), name="jojogan-align",
        daemon=True,
    )  # fmt: skip
    thread.start()
    try:
        # the batch is one job, as one `jojogan stylize` command is: freed CPU memory stays mapped
        with cpu_memory_reuse(stylizer.pipe.device):
            for first in range(0, len(items), stylizer.batch_size):
                group = items[first : first + stylizer.batch_size]
                aligned = [_take(ready, thread) for _ in group]
                yield from zip(group, stylizer.finish_many(group, aligned), strict=True)
            # each video is one job, after the photos (the alignment thread has finished its work)
            yield from ((video, stylizer.video(video)) for video in videos)
    finally:
        stop.set()  # an interrupted batch: the thread stops after its current photo
        thread.join()
