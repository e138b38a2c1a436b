"""Batch stylization of many photos, resumable, on one machine (``local``) or on Ray Data (``ray``).

:func:`stylize_many` lists the inputs, skips those whose outputs an earlier run already wrote for the same
content and settings, runs the rest on the chosen engine, writes each output atomically and records
every input in ``OUTDIR/manifest.jsonl`` (see :mod:`jojogan.batch.manifest`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jojogan.batch.errors import BatchError, EngineUnavailableError
from jojogan.batch.inputs import InputItem, input_sha256, list_inputs, unreadable
from jojogan.batch.job import BatchSettings, PhotoResult
from jojogan.batch.manifest import MANIFEST_NAME, ManifestWriter, read_manifest, reusable, write_manifest
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
    """

    rows: list[dict]
    seconds: float
    first_result_seconds: float | None = None
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
        return (
            f"{c['ok']} ok, {c['error']} errors, {c['skipped']} skipped in {self.seconds:.1f} s "
            f"({self.photos_per_minute:.1f} photos/min)"
        )


def _row(item: InputItem, engine: str, input_sha256: str | None, settings_sha256: str) -> dict:
    return {
        "input": str(item.path),
        "input_sha256": input_sha256,
        "settings_sha256": settings_sha256,
        "engine": engine,
        "status": "error",
        "outputs": [],
        "faces": 0,
        "identity": [],
        "error": None,
        "seconds": 0.0,
        "skipped": False,
    }


def _write_outputs(outdir: Path, result: PhotoResult) -> list[str]:
    for name, data in result.outputs:
        with atomic_output(outdir / name) as tmp:
            Path(tmp).write_bytes(data)
    return [name for name, _ in result.outputs]


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
) -> BatchReport:
    """Stylize every photo named by ``inputs`` into ``output``; resumable; bad photos become error lines.

    Args:
        inputs: folders (searched recursively), globs, ``.txt``/``.csv`` lists of paths, or photos; local
            paths or URIs of filesystems pyarrow understands (:mod:`jojogan.batch.inputs`).
        settings: what to do with each photo.
        output: the output folder (``manifest.jsonl`` and ``STEM_styled.png`` files).
        engine: ``"local"`` (this process) or ``"ray"`` (Ray Data; ``pip install 'jojogan[ray]'``).
        workers: stylize actors for ``ray`` (the ``local`` engine has one).
        address: for ``ray``: a cluster address (default ``$RAY_ADDRESS``, else a local Ray).
        num_cpus: for a local Ray: its CPUs (default all).
        progress: show a progress bar (counts, rate, ETA) on stderr.
        on_row: called with each new manifest line as it is written (after its outputs).
        retry_errors: run again the inputs that failed before with the same content and settings
            (by default their error line is kept: the same bytes and settings fail the same way).
        filesystem: a ``pyarrow.fs.FileSystem`` in which every input is a path (default: local paths and
            URIs).
        batch_size: faces stylized together on the device (default: 1 on the CPU, 16 on CUDA); with 1,
            outputs are byte-identical to ``jojogan stylize``, with more equal within float tolerance.
        separate_align: for ``ray``: align in a pool of CPU actors (``True``) or in the stylize actors
            (``False``); ``None`` follows :func:`jojogan.batch.ray_engine.plan_resources`.

    Returns:
        The report: one manifest line per input, counts, timings.

    Raises:
        BatchError: no inputs, an unknown engine, or (as :class:`EngineUnavailableError`) Ray is missing.
    """
    if engine not in ENGINES:
        raise BatchError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if workers < 1:
        raise BatchError(f"workers must be at least 1, got {workers}")
    if batch_size is not None and batch_size < 1:
        raise BatchError(f"batch_size must be at least 1, got {batch_size}")
    if engine == "ray":
        from jojogan.batch.ray_engine import _import_ray

        _import_ray()  # fail before any work when the extra is missing
    start = time.perf_counter()
    items = list_inputs(inputs, filesystem)
    outdir = Path(output)
    if outdir.exists() and not outdir.is_dir():
        raise BatchError(f"the output {outdir} is a file; expected a folder")
    outdir.mkdir(parents=True, exist_ok=True)
    manifest_path = outdir / MANIFEST_NAME
    previous = read_manifest(manifest_path)
    fingerprint = settings.fingerprint()

    rows: dict[Path, dict] = {}
    todo: list[InputItem] = []
    for item in items:
        try:
            digest = input_sha256(item)
        except OSError as error:
            row = _row(item, engine, None, fingerprint)
            row["error"] = unreadable(item, error)
            rows[item.path] = row
            continue
        earlier = previous.get(str(item.path))
        if reusable(earlier, digest, fingerprint, outdir, retry_errors):
            rows[item.path] = {**earlier, "skipped": True}
        else:
            rows[item.path] = _row(item, engine, digest, fingerprint)
            todo.append(item)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), unit="photo", disable=not progress, dynamic_ncols=True)
    writer = ManifestWriter(manifest_path)
    first = results = None
    try:
        for row in rows.values():
            if row["error"] is not None and not row["skipped"]:
                writer.append(row)  # unreadable inputs: recorded now, in case the run is killed
        if engine == "local":
            from jojogan.batch.local import run_local

            results = run_local(todo, settings, batch_size=batch_size)
        else:
            from jojogan.batch.ray_engine import run_ray

            results = run_ray(
                todo, settings, workers=workers, address=address, num_cpus=num_cpus, batch_size=batch_size,
                separate_align=separate_align,
            )  # fmt: skip
        counts = {"ok": 0, "error": 0}
        for item, result in results:
            first = first if first is not None else time.perf_counter() - start
            row = rows[item.path]
            row.update(
                faces=result.faces,
                identity=result.identity,
                seconds=round(result.seconds, 4),
                align_seconds=round(result.align_seconds, 4),
                worker_peak_rss_mb=round(result.peak_rss_mb, 1),
                align_worker_peak_rss_mb=round(result.align_peak_rss_mb, 1),
            )
            if result.error is None:
                row.update(status="ok", outputs=_write_outputs(outdir, result), error=None)
            else:
                row.update(status="error", error=result.error)
            writer.append(row)
            counts[row["status"]] += 1
            bar.set_postfix(counts, refresh=False)
            bar.update(1)
            if on_row is not None:
                on_row(row)
    finally:
        if results is not None:
            results.close()  # an engine that started Ray stops it, also when the run is interrupted
        bar.close()
        writer.close()
        # one line per input: this run's inputs in order, then earlier inputs this run did not list
        listed = {str(p) for p in rows}
        kept = [row for key, row in read_manifest(manifest_path).items() if key not in listed]
        # an input the run did not reach (interrupted) has no line yet: it is neither ok nor an error
        done = [row for row in rows.values() if row["status"] == "ok" or row["error"] is not None]
        write_manifest(manifest_path, done + kept)
    return BatchReport(
        rows=list(rows.values()), seconds=time.perf_counter() - start, first_result_seconds=first
    )
