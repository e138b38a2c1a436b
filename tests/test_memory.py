"""Tests for ``jojogan.op.memory``: freed CPU memory is kept for reuse inside the context and handed back
after it, measured through glibc's own accounting (``mallinfo2``) and the process's resident size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest
import torch

from jojogan.op import memory

from conftest import _libc, large_blocks_are_mapped

BLOCK = 64 << 20  # twice glibc's largest mmap threshold (32 MB), so normally an mmap of its own


def _glibc_or_skip():
    libc = memory._glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        pytest.skip("needs Linux with glibc >= 2.33 (mallinfo2)")


# Run in a fresh interpreter: the heap then holds no free chunks left by earlier tests, so a new block
# either extends the heap or gets its own mapping, and resident sizes are not blurred by old pages.
# The probe loads the API first, as every job does (CLI commands and pipeline calls): in a bare process that
# imported only torch, glibc places a small allocation after each freed large block, and posix_memalign's
# alignment slack then keeps an exact-size request from reusing it, so the heap grows block after block.
# One interpreter measures each mode named on its command line, in that order: "system" first, whose
# blocks are all mappings of their own (unmapped when freed), so the heap is still fresh for the default.
_PROBE = """
import ctypes, json, os, sys
import torch
import jojogan.api
from jojogan.op import memory

MB = 1 << 20
BLOCK = 64 * MB
fields = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in fields]

libc = memory._glibc()
libc.mallinfo2.restype = MallInfo2

def mmapped():
    return libc.mallinfo2().hblkhd

def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def block(nbytes=BLOCK):
    b = torch.empty(nbytes // 4)
    b.fill_(1.0)  # touch every page
    return b

def measure():
    out = {}
    start = mmapped()
    b = block()
    out["mmap_outside"] = mmapped() - start
    del b
    with memory.cpu_memory_reuse("cpu") as active:
        out["active"] = active
        base_mmap, base_rss = mmapped(), rss()
        b = block()
        out["mmap_inside"] = mmapped() - base_mmap
        out["rss_grew"] = rss() - base_rss
        del b
        out["rss_after_free"] = rss() - base_rss
        with memory.cpu_memory_reuse("cpu"):
            pass
        for _ in range(8):  # a training loop's pattern: the same sizes again and again, before the exit
            b = block()
            del b
        out["mmap_after_inner_exit"] = mmapped() - base_mmap
    out["rss_after_exit"] = rss() - base_rss
    start = mmapped()
    nbytes = libc.mallinfo2().fordblks + BLOCK  # more than any free chunk could serve
    b = block(nbytes)
    out["mmap_after_exit"] = mmapped() - start - nbytes
    return out


found = {}
for mode in sys.argv[1:]:  # "default": the variable unset
    if mode == "default":
        os.environ.pop("JOJOGAN_CPU_MEMORY", None)
    else:
        os.environ["JOJOGAN_CPU_MEMORY"] = mode
    found[mode] = measure()
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def probed() -> dict:
    """What the probe measured in one fresh interpreter, by mode (``system``, then the default)."""
    _glibc_or_skip()
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, "system", "default"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "JOJOGAN_CPU_MEMORY"},
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(autouse=True)
def _reuse_mode(monkeypatch):
    monkeypatch.delenv("JOJOGAN_CPU_MEMORY", raising=False)
    yield
    if memory._glibc() is not None and _libc() is not None:
        assert large_blocks_are_mapped(), "a test left the CPU memory policy in force"


def test_inside_freed_memory_stays_for_reuse_and_is_handed_back_after(probed):
    found = probed["default"]
    assert found["active"]
    assert found["mmap_outside"] >= BLOCK  # glibc's default: a block this large gets its own mapping
    assert found["mmap_inside"] < BLOCK  # inside: it comes from the heap...
    assert found["rss_grew"] >= 0.9 * BLOCK
    assert found["rss_after_free"] >= 0.9 * BLOCK  # ...stays mapped when freed...
    assert found["mmap_after_inner_exit"] < BLOCK  # a nested context's exit changed nothing
    assert found["rss_after_exit"] < 0.1 * BLOCK  # leaving handed it back (malloc_trim)
    assert found["mmap_after_exit"] >= 0  # and glibc's defaults are back: a large block is mapped


def test_system_mode_keeps_glibcs_defaults(probed):
    found = probed["system"]
    assert not found["active"]
    assert found["mmap_inside"] >= BLOCK
    assert found["rss_after_free"] < 0.1 * BLOCK


def test_nested_contexts_restore_only_at_the_outermost():
    _glibc_or_skip()
    assert large_blocks_are_mapped()  # glibc's defaults
    with memory.cpu_memory_reuse("cpu"):
        with memory.cpu_memory_reuse("cpu") as inner:
            assert inner and not large_blocks_are_mapped()
        assert not large_blocks_are_mapped()  # the inner exit left the outer context's policy in force
    assert large_blocks_are_mapped()


def test_concurrent_threads_share_one_setting():
    _glibc_or_skip()
    inside, releases = threading.Barrier(3), [threading.Event(), threading.Event()]

    def job(release):
        with memory.cpu_memory_reuse("cpu"):
            inside.wait()
            release.wait()

    threads = [threading.Thread(target=job, args=(release,), daemon=True) for release in releases]
    for thread in threads:
        thread.start()
    try:
        inside.wait(timeout=30)
        assert not large_blocks_are_mapped()
        releases[0].set()
        threads[0].join(timeout=30)
        assert not large_blocks_are_mapped()  # the other job still runs: its policy stays in force
        releases[1].set()
        threads[1].join(timeout=30)
        assert large_blocks_are_mapped()
    finally:  # a failed check must not leave the jobs waiting
        for release in releases:
            release.set()
        for thread in threads:
            thread.join(timeout=30)


@pytest.mark.parametrize("device", ["cuda", "mps", torch.device("meta")])
def test_other_devices_leave_the_allocator_alone(device):
    _glibc_or_skip()
    with memory.cpu_memory_reuse(device) as active:
        assert not active
        assert large_blocks_are_mapped()


def test_system_mode_is_reported(monkeypatch):
    monkeypatch.setenv("JOJOGAN_CPU_MEMORY", "system")
    with memory.cpu_memory_reuse("cpu") as active:
        assert not active
    assert "system" in memory.memory_report()


def test_unknown_mode_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("JOJOGAN_CPU_MEMORY", "jemalloc")
    with pytest.raises(ValueError, match="JOJOGAN_CPU_MEMORY must be one of"):
        with memory.cpu_memory_reuse("cpu"):
            pass
    assert "JOJOGAN_CPU_MEMORY must be one of" in memory.memory_report()


def test_the_environment_report_names_the_policy():
    from jojogan.cli.env import environment_report

    assert "cpu memory" in environment_report()


def test_worker_env_names_one_arena_when_the_policy_acts():
    # what it buys is measured in benchmarks/thread_memory.py: a small model's page faults on a thread
    # depend on the heap's layout too much to make a reliable test
    _glibc_or_skip()
    assert memory.worker_env() == {"MALLOC_ARENA_MAX": "1"}


def test_missing_worker_env_names_what_a_process_lacks():
    _glibc_or_skip()
    assert memory.missing_worker_env({}) == {"MALLOC_ARENA_MAX": "1"}
    assert memory.missing_worker_env({"MALLOC_ARENA_MAX": "8"}) == {"MALLOC_ARENA_MAX": "1"}
    assert memory.missing_worker_env({"MALLOC_ARENA_MAX": "1"}) == {}


def test_worker_env_is_empty_when_the_policy_is_off(monkeypatch):
    monkeypatch.setenv("JOJOGAN_CPU_MEMORY", "system")
    assert memory.worker_env() == {}
    assert memory.missing_worker_env({}) == {}
