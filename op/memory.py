"""Keep freed CPU memory for reuse while a heavy job runs (glibc only).

A 1024 px StyleGAN2 step allocates and frees tens of activation tensors of 32–128 MB each. glibc's
``malloc`` serves every block over 32 MB with a fresh ``mmap`` and returns it with ``munmap`` on free, so
each step the kernel hands out (and zeroes) gigabytes of new pages again: on a 2-core machine that was
more than half of a fine-tuning step's wall time, almost all of it system time. Inside
:func:`cpu_memory_reuse` large blocks come from the heap and freed memory stays there, so later tensors
reuse pages already mapped. Leaving the outermost context restores glibc's defaults and hands free
memory back to the system (``malloc_trim``), so an idle process does not keep its peak.

The cost is a higher peak resident size (heap fragmentation: about 1.5× for fine-tuning at 1024 px).
``JOJOGAN_CPU_MEMORY=system`` turns the policy off; elsewhere than Linux with glibc it does nothing.

Threads: glibc gives a thread other than the main one an arena of its own, whose memory lives in heaps
of at most 64 MB that glibc shrinks and unmaps as memory is freed, so the policy cannot keep it (a 1024 px
synthesis on a worker thread took 3.1–3.4 s with 1.38 M page faults against 2.0–2.4 s with 0.23 M on the main
thread). A process that runs its jobs on worker threads (Ray Data's actors) is started with
:func:`worker_env`, so that every thread shares the main arena. (Setting the arena limit with ``mallopt``
in a running process was tried and does not do it reliably: threads may still get arenas of their own.)
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import platform
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from jojogan.op._dispatch import env_choice

if TYPE_CHECKING:
    import torch

# torch is imported inside cpu_memory_reuse: Ray's driver reads worker_env here and never computes.

logger = logging.getLogger(__name__)

MODES = ("reuse", "system")  # the first is the default

# mallopt parameter numbers and glibc's defaults (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
_DEFAULT_MMAP_MAX = 65536
_INT_MAX = 2**31 - 1

_lock = threading.Lock()
_depth = 0
_libc: ctypes.CDLL | None = None
_libc_checked = False


def memory_mode() -> str:
    """The policy named by ``JOJOGAN_CPU_MEMORY`` (default ``reuse``); raises ``ValueError`` if unknown."""
    return env_choice("JOJOGAN_CPU_MEMORY", MODES)


def _glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (``mallopt``/``malloc_trim`` exist), else ``None``."""
    global _libc, _libc_checked
    if not _libc_checked:
        _libc_checked = True
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                libc.malloc_trim.argtypes = [ctypes.c_size_t]
                _libc = libc
            except (OSError, AttributeError) as error:
                logger.debug("glibc malloc tuning unavailable: %s", error)
    return _libc


def memory_report() -> str:
    """One line for ``jojogan env``: the CPU memory policy and whether it can act here."""
    try:
        mode = memory_mode()
    except ValueError as error:
        return str(error)
    if mode == "system":
        return "system (JOJOGAN_CPU_MEMORY=system)"
    if _glibc() is None:
        return "system (reuse needs Linux with glibc)"
    return "reuse during CPU jobs (JOJOGAN_CPU_MEMORY=system turns it off)"


def _policy_applies() -> bool:
    try:
        return memory_mode() == "reuse" and _glibc() is not None
    except ValueError:
        return False  # a bad JOJOGAN_CPU_MEMORY is reported where the policy is entered


def worker_env() -> dict[str, str]:
    """Environment variables for a process that will run CPU jobs on threads other than its main one.

    ``MALLOC_ARENA_MAX=1``: glibc reads it at start-up, so every thread of the process allocates from the
    main arena, where :func:`cpu_memory_reuse` keeps freed memory. Empty when the policy is off or cannot
    act here.
    """
    return {"MALLOC_ARENA_MAX": "1"} if _policy_applies() else {}


def missing_worker_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of :func:`worker_env` that ``environ`` (a process's environment) does not set so."""
    return {key: value for key, value in worker_env().items() if environ.get(key) != value}


@contextlib.contextmanager
def cpu_memory_reuse(device: str | torch.device = "cpu") -> Iterator[bool]:
    """While inside, freed CPU memory stays mapped for reuse instead of going back to the system.

    Re-entrant and thread-safe: only the outermost context changes and restores the allocator settings.
    Does nothing for non-CPU devices, with ``JOJOGAN_CPU_MEMORY=system``, or without glibc.

    Args:
        device: the device the job runs on.

    Yields:
        whether the reuse policy is in force.
    """
    import torch

    global _depth
    libc = _glibc() if torch.device(device).type == "cpu" and memory_mode() == "reuse" else None
    if libc is None:
        yield False
        return
    with _lock:
        if _depth == 0:
            # order matters: no new mmap-ed blocks first, then no trimming of the heap's top
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX)
        _depth += 1
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)
