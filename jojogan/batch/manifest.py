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
``skipped`` (reused from an earlier run) and ``engine``; a video's line also has ``frames`` (frames written;
its one output is the stylized video, ``STEM_styled.mp4`` or the input's container when it holds H.264),
``chunks``, ``chunks_resumed`` (chunk files an interrupted run had finished) and ``chunk_workers`` (the
processes that did its chunks in this run).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from jojogan.batch.errors import BatchError
from jojogan.config import STYLED_SUFFIX
from jojogan.fileio import atomic_output, write_error

__all__ = [
    "MANIFEST_NAME",
    "OUTPUT_SUFFIX",
    "ManifestWriter",
    "check_manifest_path",
    "face_outputs",
    "output_name",
    "video_output_name",
    "read_manifest",
    "reusable",
    "row_problem",
    "write_manifest",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"

OUTPUT_SUFFIX = STYLED_SUFFIX
"""How a batch names its results, as ``jojogan stylize`` does in a folder: ``STEM_styled.png``."""


def output_name(stem: str, face_index: int | None = None) -> str:
    """The output file of a photo (relative to the output folder): ``STEM_styled.png``, or with ``--face
    all`` (one file per face) ``STEM_face{i}_styled.png``."""
    return f"{stem}{OUTPUT_SUFFIX}" if face_index is None else f"{stem}_face{face_index}{OUTPUT_SUFFIX}"


H264_SUFFIXES: frozenset[str] = frozenset({".mp4", ".m4v", ".mov", ".mkv"})
"""Video containers that hold H.264: a video's output keeps its input's container when it is one of them."""


def video_output_name(stem: str, suffix: str) -> str:
    """The output of a video: ``STEM_styled`` with the input's suffix when that container holds H.264, else
    ``STEM_styled.mp4``."""
    suffix = suffix.lower() if suffix.lower() in H264_SUFFIXES else ".mp4"
    return f"{stem}{Path(OUTPUT_SUFFIX).stem}{suffix}"


def face_outputs(outdir: Path, stem: str) -> list[Path]:
    """The per-face outputs of ``stem`` already in ``outdir`` (their number is known only once aligned)."""
    relative = PurePosixPath(stem)
    folder = outdir.joinpath(*relative.parent.parts)
    pattern = re.compile(re.escape(relative.name) + r"_face\d+" + re.escape(OUTPUT_SUFFIX) + r"\Z")
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(folder / name for name in names if pattern.match(name))


MAX_LINE_BYTES = 1 << 20
"""A manifest line longer than this is not one of ours: ignored (read in pieces, never held whole)."""

_SHOWN_WARNINGS = 5
_HEX = frozenset("0123456789abcdef")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _digest(value: object) -> bool:
    return value is None or (isinstance(value, str) and len(value) == 64 and set(value) <= _HEX)


def _safe_output(name: object, outdir: Path | None) -> bool:
    """An output name: a relative path below the output folder (no ``..``, not absolute, and not leaving
    it through a symlink)."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        return False
    relative = PurePosixPath(name)
    if relative.is_absolute() or any(part in ("..", ".") for part in relative.parts):
        return False
    if outdir is None:
        return True
    root = outdir.resolve()
    try:
        return (root / relative).resolve().is_relative_to(root)
    except (OSError, RuntimeError):
        return False


def _identity_entry(value: object) -> bool:
    """One face's identity score: an object whose ``similarity`` and ``threshold`` (when present) are
    finite numbers (a bare number in manifests written before the verdicts)."""
    if _number(value):
        return True
    if not isinstance(value, dict) or not _number(value.get("similarity")):
        return False
    return value.get("threshold") is None or _number(value["threshold"])


def row_problem(row: object, outdir: Path | None = None) -> str | None:
    """Why a manifest line is not a record this code wrote (``None``: it is one).

    Every field that is present must have its type and range: ``input`` a non-empty string, ``status``
    ``"ok"`` or ``"error"``, ``outputs`` a list of file names inside ``outdir``, ``faces`` a count,
    ``error`` a string or ``null``, ``identity`` scores with finite numbers, the sha256 fields 64 hex
    digits, the timings finite numbers.
    """
    if not isinstance(row, dict):
        return "not a JSON object"
    if not isinstance(row.get("input"), str) or not row["input"]:
        return "no input path"
    if row.get("status") not in ("ok", "error"):
        return f"status {row.get('status')!r} is neither ok nor error"
    outputs = row.get("outputs", [])
    if not isinstance(outputs, list) or not all(_safe_output(name, outdir) for name in outputs):
        return "outputs must be a list of file names inside the output folder"
    for count in ("faces", "frames", "chunks", "chunks_resumed", "chunk_workers"):
        if count in row and not (isinstance(row[count], int) and not isinstance(row[count], bool)):
            return f"{count} is not a count"
    if not (row.get("error") is None or isinstance(row["error"], str)):
        return "error is not a line of text"
    identity = row.get("identity", [])
    if not isinstance(identity, list) or not all(_identity_entry(v) for v in identity):
        return "identity must be a list of scores (objects with a finite similarity)"
    if not (_digest(row.get("input_sha256")) and _digest(row.get("settings_sha256"))):
        return "a sha256 field is not 64 hex digits"
    timings = ("seconds", "align_seconds", "worker_peak_rss_mb", "align_worker_peak_rss_mb")
    if any(key in row and not _number(row[key]) for key in timings):
        return "a timing is not a finite number"
    return None


def _lines(handle) -> Iterator[tuple[int, bytes | None]]:
    """``(number, line)`` of a manifest read in binary; a line over :data:`MAX_LINE_BYTES` is ``None``."""
    number = 0
    while chunk := handle.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(chunk) > MAX_LINE_BYTES and not chunk.endswith(b"\n"):
            while (rest := handle.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
            yield number, None
            continue
        yield number, chunk


def _parse(line: bytes | None, outdir: Path | None) -> tuple[dict | None, str]:
    if line is None:
        return None, f"longer than {MAX_LINE_BYTES:,} bytes"
    try:
        row = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except RecursionError:
        return None, "JSON nested too deeply"
    except ValueError:
        return None, "not complete JSON (an interrupted run?)"
    problem = row_problem(row, outdir)
    return (None, problem) if problem else (row, "")


def check_manifest_path(path: str | os.PathLike) -> None:
    """Refuse a manifest path that is not a file we can read and append to (a folder, a device).

    Raises:
        BatchError: one line naming the path.
    """
    path = Path(path)
    if path.is_dir():
        raise BatchError(f"{path} is a folder; it is where the batch keeps its manifest (a file): remove it")
    if os.path.lexists(path) and not path.is_file():
        raise BatchError(f"{path} is not a regular file; it is where the batch keeps its manifest")


def read_manifest(path: str | os.PathLike, outdir: str | os.PathLike | None = None) -> dict[str, dict]:
    """The latest valid line for each input of a manifest (empty when there is none).

    Lines that are not records this code wrote (the torn tail of a killed run, bytes that are not UTF-8,
    a field of the wrong type, an output outside the output folder) are never trusted: skipped with a
    warning.

    Args:
        path: the manifest.
        outdir: the output folder its outputs must lie in (default: the manifest's folder).

    Raises:
        BatchError: the manifest is a folder, not a regular file, or cannot be read.
    """
    path = Path(path)
    outdir = Path(outdir) if outdir is not None else path.parent
    rows: dict[str, dict] = {}
    if not os.path.lexists(path):
        return rows
    check_manifest_path(path)
    ignored = 0
    try:
        with open(path, "rb") as handle:
            for number, line in _lines(handle):
                row, problem = _parse(line, outdir)
                if row is None:
                    ignored += 1
                    if ignored <= _SHOWN_WARNINGS:
                        log.warning("%s line %d is ignored: %s", path, number, problem)
                    continue
                rows[row["input"]] = row
    except OSError as error:
        raise BatchError(f"cannot read the manifest {path}: {error.strerror or error}") from error
    if ignored > _SHOWN_WARNINGS:
        log.warning("%s: %d more lines ignored", path, ignored - _SHOWN_WARNINGS)
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
        try:
            self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as error:
            raise write_error(self.path, error) from error

    def append(self, row: dict) -> None:
        """Write one line and wait until it is on disk (a full disk is one :class:`OutputError` line)."""
        try:
            self._handle.write(json.dumps(row, sort_keys=True) + "\n")
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as error:
            raise write_error(self.path, error) from error

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a full disk: append already said so
            self._handle.close()


def write_manifest(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Replace the manifest by ``rows`` (atomically: a reader sees the old file or the new one)."""
    with atomic_output(path) as tmp:
        Path(tmp).write_text(
            "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows), encoding="utf-8"
        )
    return Path(path)
