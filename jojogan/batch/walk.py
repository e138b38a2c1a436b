"""Listing local photos so that nothing can hang: folder walks and globs that never enter a folder twice
(a symlink loop is walked once), bounded in entries and photos, with every unreadable folder reported.

Python's ``glob.glob(..., recursive=True)`` follows symlinked folders without remembering where it has
been, so ``photos/**/*.jpg`` through ``ln -s .. photos/loop`` grows until the path is too long, in time
and memory exponential in the number of loops. Here a folder is identified by ``(st_dev, st_ino)`` and
entered once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from jojogan.batch.errors import BatchError

__all__ = ["MAX_ENTRIES", "MAX_LIST_BYTES", "MAX_PHOTOS", "Exclusions", "Lister"]

log = logging.getLogger(__name__)

MAX_PHOTOS = 100_000
"""Photos one batch lists at most (a larger library is several batches, or a bigger ``max_photos``)."""

MAX_ENTRIES = 2_000_000
"""Folder entries a listing looks at before it stops (a walk of ``/`` ends with one line, not never)."""

MAX_LIST_BYTES = 64 << 20
"""The largest ``.txt``/``.csv`` list of inputs read (about a million paths)."""

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Exclusions:
    """What a listing leaves out because a batch writes it.

    Attributes:
        folder: the output folder (resolved): a walk never enters it below its own root, so outputs
            written inside an input folder are never listed as photos.
        files: earlier outputs (resolved) recorded in the output folder's manifest: never inputs.
    """

    folder: Path | None = None
    files: frozenset[Path] = frozenset()

    def excludes(self, path: Path) -> bool:
        """Whether ``path`` is an earlier output."""
        return bool(self.files) and _resolved(path) in self.files


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


def _translate(pattern: str) -> re.Pattern:
    """A glob pattern over POSIX relative paths as a regex: ``*``/``?``/``[...]`` within a name, ``**`` any
    number of folders; names starting with a dot match only a pattern part that does."""
    parts = PurePosixPath(pattern).parts
    out = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        hidden = "" if part.startswith(".") else r"(?!\.)"
        if part == "**":
            out.append(rf"(?:{hidden}[^/]+/)*" + (rf"{hidden}[^/]+" if last else ""))
            continue
        out.append(hidden + _translate_name(part) + ("" if last else "/"))
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _translate_name(part: str) -> str:
    out, i = [], 0
    while i < len(part):
        char = part[i]
        i += 1
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            start = i + (part[i : i + 1] == "!")
            start += part[start : start + 1] == "]"  # a "]" first in the set is one of its characters
            end = part.find("]", start)
            if end == -1:  # no closing bracket: a plain "["
                out.append(re.escape(char))
                continue
            body = part[i:end].replace("\\", "\\\\")
            out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
            i = end + 1
        else:
            out.append(re.escape(char))
    return "".join(out)


@dataclass
class Lister:
    """One listing's state: the folders entered, the entries looked at, what could not be read.

    Args:
        exclusions: what a batch writes (never listed).
        max_photos: the bound on photos; more is a :class:`BatchError`.
    """

    exclusions: Exclusions = field(default_factory=Exclusions)
    max_photos: int = MAX_PHOTOS
    problems: list[str] = field(default_factory=list)
    _entries: int = field(default=0, init=False, repr=False)
    _photos: int = field(default=0, init=False, repr=False)
    _entered: set[tuple[int, int]] = field(default_factory=set, init=False, repr=False)

    def count(self, spec: str, photos: int = 1) -> None:
        """Count photos found for ``spec``; past :attr:`max_photos` the listing stops with one line."""
        self._photos += photos
        if self._photos > self.max_photos:
            raise BatchError(
                f"more than {self.max_photos:,} photos are listed (reached in {spec}); one batch takes at "
                f"most {self.max_photos:,}: split it into several runs"
            )

    def walk(self, root: Path, depth: int | None = None) -> Iterator[Path]:
        """Every file below ``root`` (not folders), each folder entered once, at most ``depth`` levels down.

        Symlinked folders are followed, except into a folder already entered or one that holds ``root``
        (a loop: ``ln -s .. photos/loop``). A folder that cannot be read is reported in :attr:`problems`,
        one line each.
        """
        above = {key for folder in _resolved(root).parents if (key := _key(folder)) is not None}
        pending = [(root, 0)]
        while pending:
            folder, level = pending.pop()
            key = _key(folder)
            if key is None or key in self._entered or key in above:
                continue
            self._entered.add(key)
            for entry in self._scan(folder):
                if self._is_folder(entry):
                    if depth is None or level + 1 < depth:
                        below = Path(entry.path)
                        if self.exclusions.folder is not None and _resolved(below) == self.exclusions.folder:
                            continue  # the batch's own output folder inside an input folder
                        pending.append((below, level + 1))
                else:
                    yield Path(entry.path)

    def _scan(self, folder: Path) -> list[os.DirEntry]:
        try:
            with os.scandir(folder) as entries:
                found = []
                for entry in entries:
                    self._entries += 1
                    if self._entries > MAX_ENTRIES:
                        raise BatchError(
                            f"listing {folder} looked at more than {MAX_ENTRIES:,} files and folders; name "
                            "the photos' own folder, or list them in a .txt file"
                        )
                    found.append(entry)
                return found
        except OSError as error:
            reason = error.strerror or str(error)
            self.problems.append(f"{folder}: the folder cannot be read ({reason}); its photos are not listed")
            return []

    @staticmethod
    def _is_folder(entry: os.DirEntry) -> bool:
        try:
            return entry.is_dir()  # follows a symlink: a loop is stopped by the folders entered
        except OSError:
            return False

    def glob(self, pattern: str) -> list[Path]:
        """The files matching a local glob pattern (``**`` any number of folders), sorted."""
        path = PurePosixPath(Path(pattern).as_posix())
        fixed = list(_fixed_parts(path.parts))
        root = Path(*fixed) if fixed else Path(".")
        rest = PurePosixPath(*path.parts[len(fixed) :])
        if not root.is_dir():
            return []
        regex = _translate(rest.as_posix())
        depth = None if "**" in rest.parts else len(rest.parts)
        matches = []
        for file in self.walk(root, depth):
            relative = PurePosixPath(*file.relative_to(root).parts).as_posix()
            if regex.match(relative):
                matches.append(file)
        return sorted(matches)


def _fixed_parts(parts: tuple[str, ...]) -> Iterator[str]:
    for part in parts:
        if _GLOB_CHARS & set(part):
            return
        yield part


def _key(path: Path) -> tuple[int, int] | None:
    with contextlib.suppress(OSError):
        info = os.stat(path)
        return info.st_dev, info.st_ino
    return None
