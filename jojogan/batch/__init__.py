"""Batch stylization of many photos, resumable, on one machine (``local``) or on Ray Data (``ray``).

:func:`stylize_many` lists the inputs, skips those whose outputs an earlier run already wrote for the same
content and settings, runs the rest on the chosen engine, writes each output atomically and records
every input in ``OUTDIR/manifest.jsonl`` (see :mod:`jojogan.batch.manifest`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jojogan.batch.errors import BatchError, EngineUnavailableError
from jojogan.batch.inputs import InputItem, is_video, list_inputs
from jojogan.batch.job import BatchSettings, PhotoResult
from jojogan.batch.manifest import ManifestWriter, write_manifest
from jojogan.batch.plan import BatchPlan, plan_batch
from jojogan.batch.walk import MAX_PHOTOS
from jojogan.fileio import atomic_output

__all__ = [
    "ENGINES",
    "BatchError",
    "BatchReport",
    "BatchSettings",
    "EngineUnavailableError",
    "list_inputs",
    "stylize_many",
]

log = logging.getLogger(__name__)

ENGINES: tuple[str, ...] = ("local", "ray")


@dataclass
class BatchReport:
    """The outcome of a batch: the manifest's lines for this run's inputs, in input order, and counts.

    Attributes:
        rows: one manifest line (a dict) per input.
        seconds: wall time of the run.
        first_result_seconds: from the start to the first photo finished by the engine (``None``: none).
        unlisted: one line per folder that could not be read (its photos were not listed).
    """

    rows: list[dict]
    seconds: float
    first_result_seconds: float | None = None
    unlisted: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        skipped = sum(bool(r.get("skipped")) for r in self.rows)
        errors = sum(r["status"] == "error" and not r.get("skipped") for r in self.rows)
        self.counts = {"ok": len(self.rows) - errors - skipped, "error": errors, "skipped": skipped}

    @property
    def photos_per_minute(self) -> float:
        """Photos the engine finished (ok or error, not skipped) per minute of wall time."""
        done = self.counts["ok"] + self.counts["error"]
        return 60.0 * done / self.seconds if self.seconds > 0 else 0.0

    def table(self):
        """The rows as a ``pyarrow.Table`` (needs pyarrow, which the ``ray`` extra brings)."""
        import pyarrow

        return pyarrow.Table.from_pylist(self.rows)

    def summary(self) -> str:
        c = self.counts
        unread = f", {len(self.unlisted)} folders not readable" if self.unlisted else ""
        return (
            f"{c['ok']} ok, {c['error']} errors, {c['skipped']} skipped{unread} in {self.seconds:.1f} s "
            f"({self.photos_per_minute:.1f} photos/min)"
        )


def stylize_many(
    inputs: Sequence[str | os.PathLike],
    settings: BatchSettings,
    output: str | os.PathLike,
    engine: str = "local",
    workers: int = 1,
    address: str | None = None,
    num_cpus: int | None = None,
    progress: bool = True,
    on_row: Callable[[dict], None] | None = None,
    retry_errors: bool = False,
    filesystem=None,
    batch_size: int | None = None,
    separate_align: bool | None = None,
    force: bool = False,
    max_photos: int = MAX_PHOTOS,
) -> BatchReport:
    """Stylize every photo named by ``inputs`` into ``output``; resumable; bad photos become error lines.
    Plan (:func:`~jojogan.batch.plan.plan_batch`, before any model loads) → run (the engine) → record.

    Args:
        inputs: folders (searched recursively), globs, ``.txt``/``.csv`` lists, or photos; local paths or
            URIs of filesystems pyarrow understands (:mod:`jojogan.batch.inputs`).
        settings: what to do with each photo.
        output: the output folder (``manifest.jsonl`` and ``STEM_styled.png`` files).
        engine: ``"local"`` (this process) or ``"ray"`` (Ray Data; ``pip install 'jojogan[ray]'``).
        workers, address, num_cpus, separate_align: for ``ray``: stylize actors, a cluster address
            (default ``$RAY_ADDRESS``, else a local Ray) and its CPUs, and where alignment runs
            (:func:`jojogan.batch.ray_engine.run_ray`).
        progress, on_row: a progress bar on stderr; a function called with each manifest line written.
        retry_errors: run again the inputs that failed before with the same content and settings.
        filesystem: a ``pyarrow.fs.FileSystem`` in which every input is a path.
        batch_size: faces stylized together (default: 1 on the CPU, byte-identical to ``jojogan stylize``;
            16 on CUDA, equal within float tolerance).
        force: replace outputs an earlier run left (other settings or content); without it such a rerun
            stops before any model loads and says what it would redo.
        max_photos: the most photos one batch lists.

    Returns:
        The report: one manifest line per input, counts, timings, folders that could not be read.
    Raises:
        BatchError: no inputs, an unknown engine, an output that would replace an input or (without
            ``force``) an earlier output, or (as :class:`EngineUnavailableError`) Ray is missing.
        OutputError: the output folder cannot take files, or a write failed (full disk): the batch stops.
    """
    _check_arguments(engine, workers, batch_size)
    start = time.perf_counter()
    plan = plan_batch(
        inputs, settings, output, engine=engine, filesystem=filesystem, retry_errors=retry_errors,
        force=force, max_photos=max_photos,
    )  # fmt: skip
    engine_args = dict(engine=engine, workers=workers, address=address, num_cpus=num_cpus)  # noqa: C408
    engine_args.update(batch_size=batch_size, separate_align=separate_align, workdir=plan.outdir)
    first = _execute(plan, settings, engine_args, progress, on_row, start)
    return BatchReport(
        rows=list(plan.rows.values()), seconds=time.perf_counter() - start, first_result_seconds=first,
        unlisted=plan.unlisted,
    )  # fmt: skip


def _check_arguments(engine: str, workers: int, batch_size: int | None) -> None:
    if engine not in ENGINES:
        raise BatchError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if workers < 1:
        raise BatchError(f"workers must be at least 1, got {workers}")
    if batch_size is not None and batch_size < 1:
        raise BatchError(f"batch_size must be at least 1, got {batch_size}")
    if engine == "ray":
        from jojogan.batch.ray_engine import _import_ray

        _import_ray()  # fail before any work when the extra is missing


def _engine(todo: list[InputItem], settings: BatchSettings, args: dict) -> Iterator:
    """The engine's results, ``(item, PhotoResult)`` as they finish (it loads the models on first use)."""
    args = dict(args)
    if args.pop("engine") == "local":
        from jojogan.batch.local import run_local

        return run_local(todo, settings, batch_size=args["batch_size"], workdir=args["workdir"])
    from jojogan.batch.ray_engine import run_ray

    return run_ray(todo, settings, **args)


def _execute(plan: BatchPlan, settings, engine_args, progress, on_row, start) -> float | None:
    """Run the engine over the plan's photos and record each result; the manifest is rewritten with one
    line per input on every way out (a stop by the user, a full disk)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(plan.todo), unit="photo", disable=not progress, dynamic_ncols=True)
    writer = results = None
    try:
        writer = ManifestWriter(plan.manifest)
        for row in plan.rows.values():
            if row["error"] is not None and not row["skipped"]:
                writer.append(row)  # unreadable inputs: recorded now, in case the run is killed
        results = _engine(plan.todo, settings, engine_args)
        first = _record(plan, results, writer, bar, on_row, start)
    except BaseException:
        _close(plan, results, bar, writer, quiet=True)  # the first error is the one to report
        raise
    _close(plan, results, bar, writer, quiet=False)
    return first


def _record(plan: BatchPlan, results, writer: ManifestWriter, bar, on_row, start: float) -> float | None:
    """Write each finished photo's outputs, then its manifest line; returns when the first one came."""
    first = None
    counts = {"ok": 0, "error": 0}
    for item, result in results:
        first = first if first is not None else time.perf_counter() - start
        row = plan.rows[item.path]
        row.update(
            faces=result.faces, identity=result.identity, seconds=round(result.seconds, 4),
            align_seconds=round(result.align_seconds, 4), worker_peak_rss_mb=round(result.peak_rss_mb, 1),
            align_worker_peak_rss_mb=round(result.align_peak_rss_mb, 1),
        )  # fmt: skip
        if is_video(item):
            row.update(
                frames=result.frames, chunks=result.chunks, chunks_resumed=result.chunks_resumed,
                chunk_workers=result.chunk_workers,
            )  # fmt: skip
        try:
            if result.error is not None:
                raise _Refused(result.error)
            row.update(status="ok", outputs=_write_outputs(plan, item, result), error=None)
        except _Refused as refused:
            row.update(status="error", outputs=[], error=str(refused))
        writer.append(row)
        counts[row["status"]] += 1
        bar.set_postfix(counts, refresh=False)
        bar.update(1)
        if on_row is not None:
            on_row(row)
    return first


class _Refused(Exception):
    """A photo's result that is not written (its error, or an output the rule refuses)."""


def _write_outputs(plan: BatchPlan, item: InputItem, result: PhotoResult) -> list[str]:
    """Write a photo's outputs atomically, after checking all of them against the output rule."""
    for name, _ in result.outputs:
        target = plan.outdir / name
        source = plan.inputs.holding(target)
        if source is not None:
            raise _Refused(f"its output {name} would replace the input {source}; nothing was written")
        if os.path.lexists(target) and not plan.force:
            raise _Refused(
                f"its output {target} exists (not from an earlier run); pass --force to replace it"
            )
    for name, data in result.outputs:
        with atomic_output(plan.outdir / name) as tmp:
            Path(tmp).write_bytes(data)
    return [name for name, _ in result.outputs]


def _close(plan: BatchPlan, results, bar, writer: ManifestWriter | None, quiet: bool) -> None:
    """Stop the engine (a Ray it started shuts down), close the bar and the log, and rewrite the manifest:
    this run's inputs in order, then earlier inputs this run did not list."""
    try:
        if results is not None:
            results.close()
        bar.close()
        if writer is not None:
            writer.close()
        listed = {str(p) for p in plan.rows}
        kept = [row for key, row in plan.previous.items() if key not in listed]
        # an input the run did not reach (interrupted) has no line yet: it is neither ok nor an error
        done = [row for row in plan.rows.values() if row["status"] == "ok" or row["error"] is not None]
        write_manifest(plan.manifest, done + kept)
    except Exception as error:
        if not quiet:
            raise
        log.warning("while stopping: %s", error)
