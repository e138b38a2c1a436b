"""Shared test fixtures.

Data that cannot live in the repository (parity fixtures, real photos, checkpoint layouts) is read from
``../shared`` beside the checkout, or from ``$JOJOGAN_SHARED``. Tests that need it skip with a reason
when it is absent.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import os
import platform
import signal
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("JOJOGAN_SHARED", REPO.parent / "shared"))


@contextlib.contextmanager
def time_cap(seconds: int, what: str):
    """Fail with ``TimeoutError`` instead of waiting when ``what`` (a server, a pipeline) hangs (SIGALRM)."""

    def expire(signum, frame):
        raise TimeoutError(f"{what} ran past its cap of {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def shared_path(*parts: str) -> Path:
    """Path inside the shared data folder; skips the calling test when it is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (shared test data; set JOJOGAN_SHARED to its folder)")
    return path


@pytest.fixture
def shared():
    """The ``shared_path`` helper as a fixture."""
    return shared_path


SLOWEST_FIRST = (
    "test_batch_ray.py",
    "test_batch_video.py",
    "test_ui_browser.py",
    "test_codeformer.py",
    "test_restyle.py",
    "test_batch.py",
    "test_ui.py",
    "test_ui_guard.py",
    "test_video_figures.py",
    "test_ray_cleanup.py",
    "test_api_e4e.py",
    "test_video.py",
    "test_identity_networks.py",
    "test_project.py",
)
"""Test files that take longest (``pytest --durations``), in that order. They are collected first, so that
pytest-xdist, which hands whole files to idle workers in collection order (``--no-loadscope-reorder``;
by default it would order them by their number of tests), never ends on one of them while the other
workers wait."""


LOCAL_RAY = "the local Ray's files"

SHARED_WORKER = {
    "test_batch_ray.py": LOCAL_RAY,
    "test_batch_video.py": LOCAL_RAY,
    "test_ui.py": "the Gradio app's files",
    "test_ui_guard.py": "the Gradio app's files",
}
"""Test files that pytest-xdist hands to one worker as one unit of work, by what they share in a process: the
session's local Ray (``local_ray``: each start is its daemons, agents and idle workers, seconds of CPU on a
2-core machine), or an imported Gradio (about 2.7 CPU-seconds to import)."""


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile``, except that the files of each ``SHARED_WORKER`` group are one unit of work."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedWorkers(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return SHARED_WORKER.get(scope.rsplit("/", 1)[-1], scope)

    return SharedWorkers(config, log)


def pytest_collection_modifyitems(config, items):
    rank = {name: place for place, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def pytest_collection_finish(session):
    """The cyclic garbage collector in each test process: what collection left alive (torch, Ray, the test
    modules: about half a million objects, kept as long as the process) is moved out of its view, and it
    runs after 10,000 net allocations instead of 700. Every full collection walked that heap again: the two
    workers of a run spent 9.3 CPU-seconds in 41 full and 9,600 younger collections, 4.9 with this (25 and
    3,350). No test waits for the collector to free an object."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test reaches the internet: the weights manager stays offline unless a test serves the files on
    127.0.0.1 itself (those tests switch this off)."""
    monkeypatch.setenv("JOJOGAN_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _seed():
    import torch

    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One intra-op thread for the whole session (module fixtures included) and in the processes its tests
    start (``OMP_NUM_THREADS``); ``slow`` tests get them back.

    The tests' models are tiny: their kernels gain nothing from a second thread, and OpenMP's hand-offs and
    spin-waiting on a shared 2-core machine make them several times slower. Results that depend on the
    thread count in the last bits (batch outputs compared with single-photo runs) are compared at one
    thread on both sides.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # the processes the tests start: CLI runs, workers, probes
    yield threads
    torch.set_num_threads(threads)
    if before is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = before


@pytest.fixture(autouse=True)
def _slow_threads(request, _one_thread):
    """Full-size ``slow`` tests run with torch's default thread count, unless pytest-xdist runs a worker per
    core already (a second thread then only waits for the core the other worker holds)."""
    import torch

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not request.node.get_closest_marker("slow") or workers >= _one_thread:
        yield
        return
    torch.set_num_threads(_one_thread)
    yield
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def dlib():
    """dlib, a required dependency: a missing or broken install fails the tests that use it (they skip
    only when the shared photos are absent)."""
    import dlib

    return dlib


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray (2 CPUs, no dashboard) for every Ray test of the session (of one pytest-xdist worker):
    starting one takes seconds. ``stylize_many`` leaves a running Ray as it found it. It is shut down once
    the worker has run the last test of the local Ray's files (``pytest_runtest_teardown``), not at the end
    of the session: an idle cluster's daemons keep about 5% of a core busy."""
    ray = pytest.importorskip(
        "ray", reason="the ray engine needs the optional extra: pip install 'jojogan[ray]'"
    )
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """After the last test of the local Ray's files (they run together, the slowest first), stop the Ray."""
    ray = sys.modules.get("ray")
    if ray is None or SHARED_WORKER.get(item.path.name) != LOCAL_RAY or not ray.is_initialized():
        return
    if nextitem is None or SHARED_WORKER.get(nextitem.path.name) != LOCAL_RAY:
        ray.shutdown()


def pytest_generate_tests(metafunc):
    """``device``: each device the pipeline tests run on, the CPU and CUDA when this machine has it (torch is
    imported here, in the workers that collect, not when pytest-xdist's controller loads this file)."""
    own = set()
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs["argnames"]
        own.update(name.strip() for name in (names.split(",") if isinstance(names, str) else names))
    if "device" not in metafunc.fixturenames or "device" in own:
        return  # no device, or a test that names its own
    import torch

    devices = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    metafunc.parametrize("device", devices, indirect=True)


@pytest.fixture
def device(request):
    """The ``torch.device`` of the test's parameter (see ``pytest_generate_tests``)."""
    import torch

    return torch.device(request.param)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    ]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library when it is glibc with ``mallinfo2`` (2.33 or later), else ``None``."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")  # our own handle: own signatures
    if not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = _MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    return libc


def large_blocks_are_mapped() -> bool:
    """Whether glibc serves a request larger than every free chunk with an ``mmap`` of its own (its
    defaults) rather than from the heap (what ``jojogan.op.memory.cpu_memory_reuse`` makes it do): the
    effect of the CPU memory policy, seen through glibc's own accounting. Skips without glibc >= 2.33.

    The block is never touched (no resident memory); inside the policy it is freed into the heap, which
    the outermost exit trims.
    """
    libc = _libc()
    if libc is None:
        pytest.skip("needs Linux with glibc >= 2.33 (mallinfo2)")
    before = libc.mallinfo2()
    nbytes = before.fordblks + (64 << 20)  # over glibc's largest mmap threshold (32 MB) and every hole
    pointer = libc.malloc(nbytes)
    try:
        return libc.mallinfo2().hblkhd - before.hblkhd >= nbytes
    finally:
        libc.free(pointer)
