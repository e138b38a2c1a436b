"""Turning the user's INPUT arguments (folders, globs, list files, single files) into a list of photos.

Inputs are local paths, ``file://`` URIs, or URIs of any filesystem pyarrow understands (``s3://``,
``gs://``, ``hdfs://``, ...; pyarrow comes with the ``ray`` extra), listed and read through
``pyarrow.fs.FileSystem.from_uri``. :func:`list_inputs` also takes a pyarrow filesystem in which every
INPUT is a path (e.g. a ``SubTreeFileSystem``).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from jojogan.batch.errors import BatchError, EngineUnavailableError
from jojogan.batch.walk import MAX_LIST_BYTES, MAX_PHOTOS, Exclusions, Lister
from jojogan.fileio import file_kind

__all__ = [
    "IMAGE_SUFFIXES",
    "LIST_SUFFIXES",
    "VIDEO_SUFFIXES",
    "MAX_PHOTO_BYTES",
    "InputItem",
    "Listing",
    "input_sha256",
    "is_video",
    "list_inputs",
    "local_photo",
    "scan_inputs",
    "unreadable",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}
)
"""Suffixes collected when a folder is searched; files named explicitly are taken whatever their suffix."""

VIDEO_SUFFIXES: frozenset[str] = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"})
"""Suffixes of videos collected when a folder is searched; each video is one job of the batch."""

_COLLECTED = IMAGE_SUFFIXES | VIDEO_SUFFIXES

LIST_SUFFIXES: frozenset[str] = frozenset({".txt", ".csv", ".lst"})
"""An INPUT with one of these suffixes lists photo paths (one a line; for CSV, the first column)."""

MAX_PHOTO_BYTES = 2 << 30
"""The largest photo file read (a larger one is an error line, never hashed for minutes)."""

_GLOB_CHARS = frozenset("*?[")
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class InputItem:
    """One photo to stylize.

    Attributes:
        path: where it is: an absolute local path, or, on another filesystem, its name as the manifest
            records it (the URI, or the path inside the filesystem given to :func:`list_inputs`).
        stem: the output's name without suffix, relative to the output folder (POSIX separators): the
            path below the searched folder for folder inputs, else the file's stem.
        filesystem: the ``pyarrow.fs.FileSystem`` holding the photo, ``None`` for a local file.
        fs_path: the photo's path inside ``filesystem``.
    """

    path: Path | str
    stem: str
    filesystem: Any = None
    fs_path: str | None = None


def _from_list(text: str, suffix: str) -> list[str]:
    """The names a text or CSV list holds, in order."""
    if suffix == ".csv":
        names = [row[0].strip() for row in csv.reader(text.splitlines()) if row and row[0].strip()]
        if names and names[0].lower() in {"path", "input", "file", "filename"}:
            names = names[1:]  # a header row
    else:
        names = [line.strip() for line in text.splitlines()]
    return [n for n in names if n and not n.startswith("#")]


def _is_uri(text: str) -> bool:
    scheme = urlparse(text).scheme
    return len(scheme) > 1 and "://" in text  # "C:\\photos" is a Windows drive, not a scheme


def _file_uri_path(text: str) -> Path:
    parsed = urlparse(text)
    if parsed.netloc not in ("", "localhost"):
        raise BatchError(f"{text}: a file:// URI names a file on this machine (file:///path), not a host")
    return Path(unquote(parsed.path))


def _pyarrow_fs():
    try:
        import pyarrow.fs
    except ImportError as error:
        raise EngineUnavailableError(
            "reading inputs from a URI other than file:// needs pyarrow: pip install 'jojogan[ray]'"
        ) from error
    return pyarrow.fs


def _remote(spec: str, filesystem: Any, name: str) -> list[tuple[str, str, str]]:
    """``(name, path in filesystem, stem)`` of the photos a folder, list or file on ``filesystem`` names.

    ``name`` is how ``spec`` is shown (its URI, or the path itself); names below it extend it.
    """
    fs = _pyarrow_fs()
    info = filesystem.get_file_info(spec)
    if info.type == fs.FileType.Directory:
        infos = filesystem.get_file_info(fs.FileSelector(spec, recursive=True))
        files = sorted(
            i.path for i in infos if i.type == fs.FileType.File and PurePosixPath(i.path).suffix.lower()
            in _COLLECTED
        )  # fmt: skip
        base = PurePosixPath(spec)
        found = []
        for path in files:
            below = PurePosixPath(path).relative_to(base)
            found.append((f"{name.rstrip('/')}/{below.as_posix()}", path, below.with_suffix("").as_posix()))
        return found
    suffix = PurePosixPath(spec).suffix.lower()
    if info.type == fs.FileType.File and suffix in LIST_SUFFIXES:
        try:
            with filesystem.open_input_stream(spec) as handle:
                text = handle.read().decode("utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise BatchError(f"could not read the list of inputs {name}: {error}") from error
        found = []
        for entry in _from_list(text, suffix):
            if _is_uri(entry) or os.path.isabs(entry):
                raise BatchError(
                    f"{name} lists {entry}: a list on another filesystem names photos relative to itself"
                )
            path = (PurePosixPath(spec).parent / entry).as_posix()
            shown = f"{name.rsplit('/', 1)[0]}/{entry}" if "/" in name else entry
            found.append((shown, path, PurePosixPath(entry).stem))
        return found
    return [(name, spec, PurePosixPath(spec).stem)]  # a missing file stays: the batch reports it


def _list_file(path: Path) -> list[str]:
    """The names a local list file holds; only a regular file of a bounded size is read."""
    try:
        info = os.stat(path)
        kind = file_kind(info.st_mode)
        if kind is not None:
            raise BatchError(f"the list of inputs {path} is {kind}, not a regular file")
        if info.st_size > MAX_LIST_BYTES:
            raise BatchError(
                f"the list of inputs {path} has {info.st_size:,} bytes; a list is read up to "
                f"{MAX_LIST_BYTES:,}"
            )
        return _from_list(path.read_text(encoding="utf-8"), path.suffix.lower())
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise BatchError(f"could not read the list of inputs {path}: {reason}") from error


def _local(text: str, lister: Lister) -> list[tuple[Path, str]]:
    """``(path, stem)`` of the photos a local folder, glob, list or file names."""
    path = Path(text)
    if path.is_dir():
        files = sorted(p for p in lister.walk(path) if p.suffix.lower() in _COLLECTED)
        lister.count(text, len(files))
        return [(p, PurePosixPath(*p.relative_to(path).with_suffix("").parts).as_posix()) for p in files]
    if _GLOB_CHARS & set(text) and not path.exists():
        matches = lister.glob(text)
        lister.count(text, len(matches))
        return [(p, p.stem) for p in matches]
    if path.suffix.lower() in LIST_SUFFIXES and os.path.lexists(path) and not path.is_dir():
        names = _list_file(path)
        lister.count(text, len(names))
        paths = [Path(n) if os.path.isabs(n) else path.parent / n for n in names]
        return [(p, p.stem) for p in paths]
    lister.count(text)
    return [(path, path.stem)]


@dataclass
class Listing:
    """The photos :func:`scan_inputs` found, and what it could not list.

    Attributes:
        items: the photos, in order, without duplicates.
        problems: one line per folder that could not be read (its photos are missing from ``items``).
        excluded: files not taken as inputs because they are outputs of an earlier run of the batch.
    """

    items: list[InputItem]
    problems: list[str]
    excluded: int = 0


def list_inputs(specs: list[str | os.PathLike], filesystem: Any = None) -> list[InputItem]:
    """Every photo named by ``specs``, in order, without duplicates (see :func:`scan_inputs`); a folder
    that cannot be read is a warning here.

    Raises:
        BatchError: nothing at all was found, a list file cannot be read, or the bounds were passed.
        EngineUnavailableError: a URI other than ``file://`` (or ``filesystem``) without pyarrow installed.
    """
    listing = scan_inputs(specs, filesystem)
    for line in listing.problems:
        log.warning("%s", line)
    return listing.items


def scan_inputs(
    specs: list[str | os.PathLike],
    filesystem: Any = None,
    exclusions: Exclusions | None = None,
    max_photos: int = MAX_PHOTOS,
) -> Listing:
    """Every photo named by ``specs``, in order, without duplicates.

    A folder is searched recursively for files with an image or video suffix (:data:`IMAGE_SUFFIXES`,
    :data:`VIDEO_SUFFIXES`); a local
    pattern with ``*``, ``?`` or ``[`` is expanded (``**`` recurses); a ``.txt``/``.csv``/``.lst`` file lists
    paths (relative ones are relative to the list's folder); anything else is one photo. A named file that
    does not exist is kept, so that the batch reports it as an error line instead of dropping it silently.
    ``file://`` URIs are local paths; other URIs are opened with ``pyarrow.fs.FileSystem.from_uri``.
    Local walks enter each folder once (symlink loops end) and stop past :data:`MAX_ENTRIES` entries.

    Args:
        specs: the INPUT arguments.
        filesystem: a ``pyarrow.fs.FileSystem`` in which every spec is a path (default: local paths and
            URIs). A plain ``LocalFileSystem`` is the same as none.
        exclusions: what the batch writes, never listed (its output folder, earlier outputs).
        max_photos: more photos than this is an error.

    Raises:
        BatchError: nothing at all was found, a list file cannot be read, or a bound was passed.
        EngineUnavailableError: a URI other than ``file://`` (or ``filesystem``) without pyarrow installed.
    """
    lister = Lister(exclusions or Exclusions(), max_photos)
    found = [entry for spec in specs for entry in _found(os.fspath(spec), filesystem, lister)]
    if not found and not lister.problems:
        shown = ", ".join(map(os.fspath, specs)) or "(nothing)"
        raise BatchError(f"no photos found in {shown}: expected folders, globs, list files or image files")
    items: list[InputItem] = []
    seen: set[str] = set()
    stems: set[str] = set()
    excluded = 0
    for path, stem, remote, fs_path in found:
        if remote is None:
            path = Path(path).absolute()
            if lister.exclusions.excludes(path):
                excluded += 1  # an output of an earlier run of this batch is never a photo to stylize
                continue
        if str(path) in seen:
            continue
        seen.add(str(path))
        if stem in stems:
            # two photos with one name (from different folders or lists): the path keeps them apart, the
            # same way on every run, so resuming finds the same outputs
            stem = f"{stem}-{hashlib.sha256(os.fsencode(str(path))).hexdigest()[:8]}"
        stems.add(stem)
        items.append(InputItem(path=path, stem=stem, filesystem=remote, fs_path=fs_path))
    return Listing(items, lister.problems, excluded)


def _found(text: str, filesystem: Any, lister: Lister) -> list[tuple[Path | str, str, Any, str | None]]:
    """``(path or name, stem, filesystem or None, path in filesystem)`` of what one INPUT names."""
    if filesystem is not None and type(filesystem).__name__ != "LocalFileSystem":
        found = [(name, stem, filesystem, path) for name, path, stem in _remote(text, filesystem, text)]
        lister.count(text, len(found))
        return found
    if _is_uri(text) and urlparse(text).scheme == "file":
        return [(p, stem, None, None) for p, stem in _local(os.fspath(_file_uri_path(text)), lister)]
    if not _is_uri(text):
        return [(p, stem, None, None) for p, stem in _local(text, lister)]
    fs_type = _pyarrow_fs()
    try:
        remote, path = fs_type.FileSystem.from_uri(text)
    except (OSError, ValueError) as error:
        raise BatchError(f"{text}: not a filesystem pyarrow can open ({error})") from error
    if isinstance(remote, fs_type.LocalFileSystem):
        return [(p, stem, None, None) for p, stem in _local(path, lister)]
    found = [(name, stem, remote, p) for name, p, stem in _remote(path, remote, text)]
    lister.count(text, len(found))
    return found


def is_video(item: InputItem) -> bool:
    """Whether an input is a video (by its suffix, :data:`VIDEO_SUFFIXES`): one job of the batch."""
    name = item.fs_path if item.filesystem is not None else str(item.path)
    return PurePosixPath(str(name)).suffix.lower() in VIDEO_SUFFIXES


def unreadable(item: InputItem, error: OSError) -> str:
    """The manifest's error line for a photo that could not be read."""
    return f"{item.path} cannot be read: {error.strerror or error}"


def _refusal(kind: str) -> OSError:
    return OSError(errno.EINVAL, f"it is {kind}, not a regular file (only photo files are read)")


def input_sha256(item: InputItem) -> str:
    """sha256 of the photo's bytes, read from wherever it is; only a regular file of at most
    :data:`MAX_PHOTO_BYTES` is read (a FIFO, ``/dev/zero`` or a device is refused, never waited on).

    Raises:
        OSError: it cannot be read, or is not a regular file, or is too large (the reason in words).
    """
    digest = hashlib.sha256()
    if item.filesystem is None:
        info = os.stat(item.path)
        kind = file_kind(info.st_mode)
        if kind is not None:
            raise _refusal(kind)
        _check_size(info.st_size)
        with open(item.path, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # replaced since the check
                raise _refusal("no longer a regular file")
            while chunk := handle.read(_READ_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()
    info = item.filesystem.get_file_info(item.fs_path)
    kinds = _pyarrow_fs().FileType
    if info.type == kinds.NotFound:
        raise OSError(errno.ENOENT, "no such file")
    if info.type != kinds.File:
        raise _refusal("a folder" if info.type == kinds.Directory else "not a file")
    _check_size(info.size or 0)
    with item.filesystem.open_input_stream(item.fs_path) as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_size(size: int) -> None:
    if size > MAX_PHOTO_BYTES:
        raise OSError(errno.EFBIG, f"{size:,} bytes, above the {MAX_PHOTO_BYTES:,} a photo may have")


@contextlib.contextmanager
def local_photo(item: InputItem) -> Iterator[Path]:
    """The photo as a local file: its own path, or a temporary copy (same name) of a photo on another
    filesystem, removed afterwards. Reading goes through the filesystem; a failure to read raises
    ``OSError``."""
    if item.filesystem is None:
        yield Path(item.path)
        return
    with tempfile.TemporaryDirectory(prefix="jojogan-input-") as folder:
        local = Path(folder) / PurePosixPath(item.fs_path).name
        with item.filesystem.open_input_stream(item.fs_path) as source, open(local, "wb") as target:
            while chunk := source.read(_READ_CHUNK):
                target.write(chunk)
        yield local
