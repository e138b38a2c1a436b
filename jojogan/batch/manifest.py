"""The batch manifest: ``OUTDIR/manifest.jsonl``, one JSON object per input.

During a run each finished input is appended as one line (flushed and fsynced), so a killed run keeps
what it finished; a line cut short by the kill is ignored when the manifest is read back. At the end of a
run the manifest is rewritten atomically with exactly one line per input (the latest one).

A line: ``input`` (absolute path), ``status`` (``"ok"`` or ``"error"``), ``outputs`` (paths written,
relative to the output folder), ``faces``, ``error`` (one readable line, or ``None``), ``identity`` (one
object per face when measured: ``network``, ``similarity``, ``threshold``, ``same_person``, ``metric``,
``source``), ``input_sha256`` and ``settings_sha256`` (what resuming compares),
``seconds`` (the workers' time for the photo), ``align_seconds`` (the part of it spent aligning),
``worker_peak_rss_mb`` and ``align_worker_peak_rss_mb`` (the peak memory so far of the process that
stylized the photo and of the one that aligned it),
``skipped`` (reused from an earlier run) and ``engine``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from jojogan.fileio import atomic_output

__all__ = ["MANIFEST_NAME", "ManifestWriter", "read_manifest", "reusable", "write_manifest"]

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"


def read_manifest(path: str | os.PathLike) -> dict[str, dict]:
    """The latest line for each input of a manifest (empty when there is none).

    Lines that are not complete JSON objects (the tail of a killed run) are skipped with a warning.
    """
    path = Path(path)
    rows: dict[str, dict] = {}
    if not path.is_file():
        return rows
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s line %d is incomplete (an interrupted run?): ignored", path, number)
                continue
            if isinstance(row, dict) and isinstance(row.get("input"), str):
                rows[row["input"]] = row
    return rows


def reusable(
    row: dict | None, input_sha256: str, settings_sha256: str, outdir: Path, retry_errors: bool = False
) -> bool:
    """Whether an earlier line already holds this input's result for the same content and settings: ``ok``
    with every output still on disk, or (unless ``retry_errors``) an error, which the same bytes and
    settings would only repeat."""
    if (
        row is None
        or row.get("input_sha256") != input_sha256
        or row.get("settings_sha256") != settings_sha256
    ):
        return False
    if row.get("status") == "error":
        # an error line without its reason is no result (older runs wrote one for photos never reached)
        return not retry_errors and bool(row.get("error"))
    outputs = row.get("outputs") or []
    return row.get("status") == "ok" and bool(outputs) and all((outdir / n).is_file() for n in outputs)


class ManifestWriter:
    """Appends lines to a manifest, each one flushed to disk before the next input is reported."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def append(self, row: dict) -> None:
        self._handle.write(json.dumps(row, sort_keys=True) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


def write_manifest(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Replace the manifest by ``rows`` (atomically: a reader sees the old file or the new one)."""
    with atomic_output(path) as tmp:
        Path(tmp).write_text(
            "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows), encoding="utf-8"
        )
    return Path(path)
