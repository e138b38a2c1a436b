"""Turning the user's INPUT arguments (folders, globs, list files, single files) into a list of photos."""

from __future__ import annotations

import csv
import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from jojogan.batch.errors import BatchError

__all__ = ["IMAGE_SUFFIXES", "LIST_SUFFIXES", "InputItem", "list_inputs"]

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}
)
"""Suffixes collected when a folder is searched; files named explicitly are taken whatever their suffix."""

LIST_SUFFIXES: frozenset[str] = frozenset({".txt", ".csv", ".lst"})
"""An INPUT with one of these suffixes lists photo paths (one a line; for CSV, the first column)."""

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class InputItem:
    """One photo to stylize.

    Attributes:
        path: where it is (absolute).
        stem: the output's name without suffix, relative to the output folder (POSIX separators): the
            path below the searched folder for folder inputs, else the file's stem.
    """

    path: Path
    stem: str


def _from_list(path: Path) -> list[Path]:
    """The paths named by a text or CSV list; relative ones are relative to the list's folder."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        names = [row[0].strip() for row in csv.reader(text.splitlines()) if row and row[0].strip()]
        if names and names[0].lower() in {"path", "input", "file", "filename"}:
            names = names[1:]  # a header row
    else:
        names = [line.strip() for line in text.splitlines()]
    names = [n for n in names if n and not n.startswith("#")]
    return [Path(n) if os.path.isabs(n) else path.parent / n for n in names]


def list_inputs(specs: list[str | os.PathLike]) -> list[InputItem]:
    """Every photo named by ``specs``, in order, without duplicates.

    A folder is searched recursively for files with an image suffix (:data:`IMAGE_SUFFIXES`); a pattern
    with ``*``, ``?`` or ``[`` is expanded (``**`` recurses); a ``.txt``/``.csv``/``.lst`` file lists paths;
    anything else is one photo. A named file that does not exist is kept, so that the batch reports it as
    an error line instead of dropping it silently.

    Raises:
        BatchError: nothing at all was found, or a list file cannot be read.
    """
    found: list[tuple[Path, str]] = []
    for spec in specs:
        text = os.fspath(spec)
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            found += [
                (p, PurePosixPath(*p.relative_to(path).with_suffix("").parts).as_posix()) for p in files
            ]
        elif _GLOB_CHARS & set(text) and not path.exists():
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            found += [(p, p.stem) for p in matches if p.is_file()]
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            try:
                found += [(p, p.stem) for p in _from_list(path)]
            except (OSError, UnicodeDecodeError) as error:
                raise BatchError(f"could not read the list of inputs {path}: {error}") from error
        else:
            found.append((path, path.stem))
    if not found:
        shown = ", ".join(map(os.fspath, specs)) or "(nothing)"
        raise BatchError(f"no photos found in {shown}: expected folders, globs, list files or image files")
    items: list[InputItem] = []
    seen: set[Path] = set()
    stems: set[str] = set()
    for path, stem in found:
        path = path.absolute()
        if path in seen:
            continue
        seen.add(path)
        if stem in stems:
            # two photos with one name (from different folders or lists): the path keeps them apart, the
            # same way on every run, so resuming finds the same outputs
            stem = f"{stem}-{hashlib.sha256(os.fsencode(path)).hexdigest()[:8]}"
        stems.add(stem)
        items.append(InputItem(path=path, stem=stem))
    return items
