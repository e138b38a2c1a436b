"""Shared test fixtures.

Data that cannot live in the repository (parity fixtures, real photos, checkpoint layouts) is read from
``../shared`` beside the checkout, or from ``$JOJOGAN_SHARED``. Tests that need it skip with a reason
when it is absent.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest
import torch

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


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test reaches the internet: the weights manager stays offline unless a test serves the files on
    127.0.0.1 itself (those tests switch this off)."""
    monkeypatch.setenv("JOJOGAN_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One intra-op thread for the whole session (module fixtures included); ``slow`` tests get them back.

    The tests' models are tiny: their kernels gain nothing from a second thread, and OpenMP's hand-offs and
    spin-waiting on a shared 2-core machine make them several times slower. Results that depend on the
    thread count in the last bits (batch outputs compared with single-photo runs) are compared at one
    thread on both sides.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield threads
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _slow_threads(request, _one_thread):
    """Full-size ``slow`` tests run with torch's default thread count."""
    if not request.node.get_closest_marker("slow"):
        yield
        return
    torch.set_num_threads(_one_thread)
    yield
    torch.set_num_threads(1)
