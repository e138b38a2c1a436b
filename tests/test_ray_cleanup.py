"""Issue 23: the local Ray a batch starts never outlives it. SIGTERM goes through ``ray.shutdown()``; what a
SIGKILLed driver leaves (Ray's dashboard and runtime-env agents) is stopped by the next run. Each test
has a real local Ray in a subprocess (about 5 s to start on the shared 2-core machine; both start at
once)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jojogan.batch import ray_cleanup

from conftest import time_cap

pytest.importorskip("ray", reason="the ray engine needs the optional extra: pip install 'jojogan[ray]'")
pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="the cleanup reads /proc (Linux)")

DRIVER = """
import sys, time
from pathlib import Path
from jojogan.batch import ray_engine
from jojogan.batch.inputs import InputItem
from jojogan.batch.job import BatchSettings

def hold(*args):  # the pipeline, waiting: the driver is stopped while it runs
    print("running", flush=True)
    time.sleep(600)
    yield

ray_engine._run = hold
list(ray_engine.run_ray([InputItem(Path("a.png"), "a")], BatchSettings(style=Path("s")), num_cpus=1))
"""


def launch() -> subprocess.Popen:
    # no idle worker prestarted for the driver (a Python process of its own): the pipeline is a stub
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "RAY_USAGE_STATS_ENABLED": "0"}
    env["RAY_prestart_worker_first_driver"] = "0"
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )


@pytest.fixture(scope="module")
def drivers():
    """Each test's driver, launched together: their local Rays start side by side (seconds each)."""
    launched = {"sigterm": launch(), "sigkill": launch()}
    yield launched
    for process in launched.values():  # a test that did not run: its driver shuts its Ray down
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=60)


def start_driver(process: subprocess.Popen):
    """Wait until ``process`` runs the pipeline; its cluster's record, session and processes checked."""
    assert process.stdout.readline().strip() == "running"
    record = ray_cleanup.records_dir() / f"{process.pid}.json"
    assert record.is_file(), "the driver did not record the cluster it started"
    session = json.loads(record.read_text())["session"]
    processes = ray_cleanup._cluster_processes(session)
    assert len(processes) >= 3, processes  # gcs, raylet, agents, ...
    return process, record, session


def alive(pids: list[int]) -> list[int]:
    def running(pid):
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    return [pid for pid in pids if running(pid)]


def test_sigterm_shuts_the_local_ray_down(drivers):
    with time_cap(120, "a Ray driver stopped by SIGTERM"):
        process, record, session = start_driver(drivers["sigterm"])
        processes = ray_cleanup._cluster_processes(session)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 20
        while alive(processes) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert alive(processes) == [] and not record.exists()


def children(pid: int) -> list[int]:
    def parent(child):
        try:
            return int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None

    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and parent(entry) == pid]


def settled(processes: list[int], seconds: float) -> list[int]:
    """What is still running of ``processes`` once all but Ray's agents are gone (polled), or after
    ``seconds``: what dies with a killed driver has died by then."""

    def title(pid):
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return b""  # gone meanwhile: look again

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not all(b"Agent" in title(pid) for pid in alive(processes)):
        time.sleep(0.05)
    return alive(processes)


def test_what_a_sigkilled_driver_left_is_stopped_by_the_next_run(drivers, monkeypatch):
    # Ray's agents ignore SIGTERM (measured: still running 8 s after it): a shorter grace before SIGKILL
    monkeypatch.setattr(ray_cleanup, "_GRACE_S", 0.5)
    with time_cap(120, "a Ray driver killed by SIGKILL"):
        process, record, session = start_driver(drivers["sigkill"])
        processes = sorted(set(ray_cleanup._cluster_processes(session) + children(process.pid)))
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        settled(processes, seconds=5)  # gcs, raylet, ... die with the driver (in milliseconds)
        left = alive(ray_cleanup._cluster_processes(session))
        stopped = ray_cleanup.clean_orphans()
    assert left, "nothing was left running: the scenario did not happen"  # Ray's agents, as the probe saw
    assert set(left) <= set(stopped) and alive(left) == [] and not record.exists()
    assert ray_cleanup.clean_orphans() == []  # forgotten
