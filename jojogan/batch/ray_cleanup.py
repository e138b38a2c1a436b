"""What a batch does so that the local Ray it starts never outlives it.

Every way out the driver survives (the end, an error, Ctrl-C, ``SIGTERM``, ``SIGHUP``) goes through
``ray.shutdown()``: :func:`signals_as_exit` turns the two signals into ``SystemExit`` while the batch runs.
A driver killed outright (``SIGKILL``, the OOM killer) cannot clean up: Ray's dashboard and runtime-env
agents then keep running, reparented to init. So the driver records the cluster it started
(:func:`record_cluster`: its own pid and start time, and the cluster's session folder), and the next batch
run on this machine (:func:`clean_orphans`) stops the processes of every recorded cluster whose driver is
gone — found by the files they hold open in that session folder — and forgets the record.

Linux only (``/proc``); elsewhere recording and cleaning do nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["clean_orphans", "forget_cluster", "record_cluster", "signals_as_exit"]

log = logging.getLogger(__name__)

_GRACE_S = 5.0


def records_dir() -> Path:
    """Where drivers record the clusters they started (one JSON file per driver)."""
    return Path(tempfile.gettempdir()) / f"jojogan-ray-{os.getuid()}"


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22), which tells a
    process from a later one that got the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def record_cluster(session_dir: str | os.PathLike) -> Path | None:
    """Record that this process started the local Ray cluster of ``session_dir``; ``None`` without
    ``/proc`` or a writable temporary folder."""
    started = _start_time(os.getpid())
    if started is None:
        return None
    record = records_dir() / f"{os.getpid()}.json"
    try:
        record.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = record.with_suffix(".tmp")
        tmp.write_text(json.dumps({"driver": os.getpid(), "started": started, "session": str(session_dir)}))
        os.replace(tmp, record)
    except OSError as error:
        log.debug("cannot record the Ray cluster in %s: %s", record, error)
        return None
    return record


def forget_cluster(record: Path | None) -> None:
    """The cluster of ``record`` was shut down by its driver."""
    if record is not None:
        record.unlink(missing_ok=True)


def _holds_files_in(pid: int, session: str) -> bool:
    folder = Path(f"/proc/{pid}/fd")
    try:
        for fd in os.listdir(folder):
            with contextlib.suppress(OSError):
                if os.readlink(folder / fd).startswith(session + os.sep):
                    return True
    except OSError:
        pass
    return False


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (an exited process nobody has reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _cluster_processes(session: str) -> list[int]:
    """Running processes of this user that hold files open in the session folder."""
    pids = (int(entry) for entry in os.listdir("/proc") if entry.isdigit() and int(entry) != os.getpid())
    return [pid for pid in pids if _running(pid) and _holds_files_in(pid, session)]


def _wait_until_gone(pids: list[int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.05)


def _stop(pids: list[int]) -> None:
    """SIGTERM, then SIGKILL for those still running after a grace period."""
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    _wait_until_gone(pids, _GRACE_S)
    for pid in pids:
        if _running(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    _wait_until_gone(pids, _GRACE_S)


def clean_orphans() -> list[int]:
    """Stop what the local Ray clusters of killed drivers left running, and forget their records.

    Returns:
        The pids stopped.
    """
    folder = records_dir()
    if not Path("/proc").is_dir() or not folder.is_dir():
        return []
    stopped: list[int] = []
    for record in folder.glob("*.json"):
        try:
            data = json.loads(record.read_text())
            driver, started, session = int(data["driver"]), int(data["started"]), str(data["session"])
        except (OSError, ValueError, KeyError, TypeError):
            record.unlink(missing_ok=True)
            continue
        if _start_time(driver) == started:
            continue  # its driver runs: a batch in progress
        pids = _cluster_processes(session) if session.startswith(os.sep) and len(session) > 1 else []
        if pids:
            log.warning(
                "stopping %d processes of the Ray cluster a killed batch left (%s)", len(pids), session
            )
            _stop(pids)
            stopped += pids
        record.unlink(missing_ok=True)
    return stopped


class _Signalled(SystemExit):
    """The batch was asked to stop by a signal; exits with 128 + its number, as a shell reports it."""


@contextlib.contextmanager
def signals_as_exit() -> Iterator[None]:
    """While the block runs (in the main thread), ``SIGTERM`` and ``SIGHUP`` raise ``SystemExit`` so that
    ``finally`` blocks (``ray.shutdown()``) run; the previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(signum, frame):
        raise _Signalled(128 + signum)

    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None:
            previous[number] = signal.signal(number, leave)
    try:
        yield
    finally:
        for number, handler in previous.items():  # None: a handler set outside Python (Ray's own)
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
