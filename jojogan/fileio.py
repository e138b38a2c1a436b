"""Writing result files: the one overwrite rule of every command, and writes that never leave half a file.

:func:`claim_outputs` is the rule, applied to every output before any model loads: an output is never an
input (compared by path and by file identity, so a symlink or a hard link to an input counts as the input),
two outputs are never one file, an existing file is replaced only with ``force``, and the folder that will
receive it must be one we can write (not a file, not read-only, names not too long).

:func:`atomic_output` writes through a temporary file beside the target, named recognisably
(``.NAME.PID.RANDOM.jojogan.tmp``), renamed over the target only when complete. A process killed while
writing leaves its temporary file behind; the next write of the same target (or the next claim of it)
removes the temporary files of that target whose process is gone.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import secrets
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from jojogan.errors import JojoganError

__all__ = [
    "TEMP_SUFFIX",
    "OutputError",
    "atomic_output",
    "check_folder_writable",
    "claim_outputs",
    "file_key",
    "file_kind",
    "not_a_file",
    "remove_stale_temporaries",
    "write_error",
]

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".jojogan.tmp"
"""How every temporary file of :func:`atomic_output` ends."""

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
_DEFAULT_NAME_MAX = 255
# what a temporary name adds to the target's: ".", ".", pid (<= 10 digits), ".", 8 hex digits, TEMP_SUFFIX
_TEMP_EXTRA = 1 + 1 + 10 + 1 + 8 + len(TEMP_SUFFIX)

# torch.save reports a failed write (full disk, folder gone) as a RuntimeError from its C++ writer
_TORCH_WRITE_FAILURES = ("PytorchStreamWriter", "inline_container", "iostream error", "file write failed")


class OutputError(JojoganError):
    """An output cannot be written where it was asked for (it is an input, exists, or its folder cannot
    take it); the message names the path and what to do."""


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_KINDS = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


def file_kind(mode: int) -> str | None:
    """What a file that is not a regular file is, in words (``None`` for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def not_a_file(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a regular file one can read (``"does not exist"``, ``"is a folder"``, ``"is a
    character device, not a regular file"``), or ``None`` when it is one."""
    try:
        kind = file_kind(os.stat(path).st_mode)
    except FileNotFoundError:
        return "does not exist"
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if kind is None:
        return None
    return "is a folder" if kind == "a folder" else f"is {kind}, not a regular file"


def file_key(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of the file ``path`` finally points to (``None``: there is none)."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: compare it as written
        return path.absolute()


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return _DEFAULT_NAME_MAX


def _reason(error: OSError) -> str:
    """What an ``OSError`` means for a file we write, in words."""
    reasons = {
        errno.EROFS: "the file system is read-only",
        errno.ENOSPC: "no space is left on the device",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENAMETOOLONG: "the file name is too long for this file system",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EISDIR: "it is a folder",
    }
    return reasons.get(error.errno, error.strerror or str(error))


def write_error(path: str | os.PathLike, error: OSError) -> OutputError:
    """The one-line error for a failed write of ``path``."""
    return OutputError(f"could not write {path}: {_reason(error)}")


def _nearest_existing(path: Path) -> Path:
    """``path`` or the closest folder above it that exists (what creating ``path`` would start from)."""
    current = path
    while not os.path.lexists(current) and current.parent != current:
        current = current.parent
    return current


def check_folder_writable(folder: str | os.PathLike, for_path: str | os.PathLike | None = None) -> None:
    """Refuse, in one line, a folder that cannot receive files: one under a file, on a read-only file
    system, without write permission, on a full disk, or with a name too long to create.

    Nothing is left behind: the folder is not created; a probe file is created and removed in the
    nearest existing folder above it.

    Args:
        folder: the folder files will be written into (it may not exist yet).
        for_path: the output the check is for, named in the message (default: ``folder``).

    Raises:
        OutputError: the folder cannot take files, with the reason.
    """
    folder = Path(folder)
    shown = for_path if for_path is not None else folder
    start = _check_names(folder, shown)
    if not start.is_dir():
        kind = "a file" if start.exists() else "a broken link"
        raise OutputError(f"cannot write {shown}: {start} is {kind}, not a folder")
    try:
        handle = os.open(start / f".jojogan-write-check.{os.getpid()}{TEMP_SUFFIX}", _CREATE, 0o600)
    except OSError as error:
        raise OutputError(f"cannot write {shown}: {start}: {_reason(error)}") from error
    os.close(handle)
    os.unlink(start / f".jojogan-write-check.{os.getpid()}{TEMP_SUFFIX}")
    if _disk_full(start):
        raise OutputError(f"cannot write {shown}: no space is left on the device of {start}")


def _disk_full(folder: Path) -> bool:
    try:
        space = os.statvfs(folder)
    except OSError:
        return False
    return (space.f_bfree if os.geteuid() == 0 else space.f_bavail) == 0


def _check_names(path: Path, shown: str | os.PathLike | None = None) -> Path:
    """Every name ``path`` would create fits the file system; returns the nearest existing folder above."""
    start = _nearest_existing(path.absolute())
    limit = _name_max(start if start.is_dir() else start.parent)
    for part in path.absolute().relative_to(start).parts:
        length = len(os.fsencode(part))
        if length > limit:
            raise OutputError(
                f"cannot write {shown or path}: the name {part[:24]}... has {length} characters, this file "
                f"system allows {limit}"
            )
    return start


def claim_outputs(
    inputs: Iterable[str | os.PathLike | None],
    outputs: Iterable[str | os.PathLike],
    force: bool,
    folders: Iterable[str | os.PathLike] = (),
) -> None:
    """The one overwrite rule of every command, applied to what it will write before any work starts.

    Args:
        inputs: every file the command reads (images, style, base, ...); ``None`` entries are skipped.
        outputs: every file the command will (or may, like a rescue file) write.
        force: existing outputs that are not inputs may be replaced (``--force``).
        folders: folders the command writes files into beside ``outputs`` (e.g. previews): each must be
            a folder or not exist yet, and writable.

    Raises:
        OutputError: an output is an input (by path, symlink or hard link), two outputs are one file, an
            output is a folder, exists without ``force``, or its folder cannot take it.
    """
    sources = [Path(p) for p in inputs if p is not None]
    by_path = {_resolved(p): p for p in sources}
    by_key = {key: p for p in sources if (key := file_key(p)) is not None}
    seen: dict[Path, Path] = {}
    for output in map(Path, outputs):
        _check_names(output)
        here = _resolved(output)
        source = by_path.get(here) or by_key.get(file_key(output))  # type: ignore[arg-type]
        if source is not None:
            raise OutputError(
                f"the output {output} is also an input ({source}); an output never replaces an input "
                "(choose another -o)"
            )
        if here in seen:
            raise OutputError(f"two outputs would both be written to {output}")
        seen[here] = output
        if output.is_dir():
            raise OutputError(f"the output {output} is a folder; expected a file name")
        if os.path.lexists(output) and not force:
            raise OutputError(f"{output} exists; pass --force to replace it")
    for folder in map(Path, folders):
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"{folder} is a file; it is where this command writes files (a folder)")
    parents = {_resolved(o.parent): o for o in seen.values()} | {_resolved(f): f for f in map(Path, folders)}
    for parent, example in parents.items():
        check_folder_writable(parent, example)
    for output in seen.values():
        remove_stale_temporaries(output)
    log.debug("outputs: %s", ", ".join(map(str, seen.values())))


# ---------------------------------------------------------------------------------------------- temporaries
def _temp_prefix(path: Path) -> str:
    """``.NAME.`` with NAME shortened so that the whole temporary name fits the file system."""
    room = _name_max(path.parent) - _TEMP_EXTRA
    name = os.fsencode(path.name)[: max(room, 16)].decode(errors="ignore")
    return f".{name}."


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or not a pid we can ask about): leave its file alone
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed writes of ``path`` (or of files named ``path``'s name plus a
    suffix, like ``OUT.resume.pt`` for ``OUT``) left beside it: those whose writing process is gone.

    Returns:
        The files removed.
    """
    path = Path(path)
    prefix = _temp_prefix(path)
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(TEMP_SUFFIX)):
            continue
        fields = entry.name[: -len(TEMP_SUFFIX)].rsplit(".", 2)
        if len(fields) != 3 or not fields[1].isdigit() or _alive(int(fields[1])):
            continue
        with contextlib.suppress(OSError):
            if stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
                log.info("removed %s, left by an interrupted write of %s", entry.path, path)
    return removed


def _new_temporary(path: Path) -> Path:
    for _ in range(100):
        tmp = path.parent / f"{_temp_prefix(path)}{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
        try:
            os.close(os.open(tmp, _CREATE, 0o600))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


def _torch_write_failure(error: RuntimeError, path: Path) -> OutputError | None:
    """A ``torch.save`` failure as a write error (its C++ writer raises ``RuntimeError``), else ``None``."""
    text = str(error)
    if not any(mark in text for mark in _TORCH_WRITE_FAILURES):
        return None
    if _disk_full(path.parent):
        return OutputError(f"could not write {path}: no space is left on the device")
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return OutputError(f"could not write {path}: the file system refused the data ({first[:120]})")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, rename it over ``path``.

    The temporary file gets the permissions a normal ``open()`` would give. If the block raises, the
    temporary file is removed and ``path`` is left as it was. Stale temporary files of ``path`` (from
    killed processes) are removed first.

    Raises:
        OutputError: the folder cannot be created or the file cannot be written (full disk, read-only,
            permissions, a name too long, a file where a folder should be), with the path and the reason.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:  # a file where a folder of the path should be
        blocker = _nearest_existing(path.parent.absolute())
        raise OutputError(f"could not write {path}: {blocker} is a file, not a folder") from error
    except OSError as error:
        raise write_error(path, error) from error
    try:
        remove_stale_temporaries(path)
        tmp = _new_temporary(path)
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        tmp = None
    except OSError as error:
        raise write_error(path, error) from error
    except RuntimeError as error:
        failure = _torch_write_failure(error, path)
        if failure is None:
            raise
        raise failure from error
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
