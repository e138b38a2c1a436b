"""Time the README's test command, with the machine's speed measured before and after it.

    python benchmarks/suite_time.py --json
    python benchmarks/suite_time.py --json -- --durations=12     # extra pytest arguments after --

The command is read from the README (the second ``bash`` block of "Set up") and run in this checkout. On a
shared machine the same tests take a different number of CPU-seconds from one hour to the next (measured on
a 2-core AMD EPYC: 200 to 246 busy core-seconds for one tree), and a pure-Python loop does not see the
change. So the script also times a fixed calibration workload made of what the suite spends its time on
(tiny-generator projection steps with autograd, an FFT blur of a photo-sized plane), once before and once
after the suite, in this process with one thread. The last line printed is JSON with:

- ``wall_s``: the command's wall-clock time, the figure the README promises;
- ``busy_core_s``: CPU-seconds the whole machine spent (``/proc/stat``), the suite's work on an idle machine;
- ``calibration_s``: the workload's CPU-seconds before and after: the machine's speed at either end;
- ``busy_per_calibration``: ``busy_core_s`` over the mean calibration: a hint of the machine's state, not a
  correction for it (two runs of one tree in one hour gave 106 and 123: the speed changes within a run too);
- the summary line of pytest, the load average, the CPU model and the Python and torch versions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from common import cpu_model, tiny_channels

REPO = Path(__file__).resolve().parents[1]


def readme_test_command() -> str:
    """The second command of the README's "Set up" section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Set up", 1)[1]
    return re.findall(r"```bash\n(.+?)\n```", section, re.S)[1].strip()


def busy_jiffies() -> int | None:
    """Jiffies every CPU of the machine spent busy so far (Linux), else ``None``."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return user + nice + system + irq + softirq + steal


def calibration() -> dict[str, float]:
    """CPU-seconds of a fixed workload, one thread: 20 three-step projections on a tiny 128 px generator
    (small convolutions with autograd, like most tests) and a Gaussian blur of a 2000 x 2000 plane by FFT."""
    import numpy as np
    import torch

    from jojogan.inversion.align import _gaussian_blur
    from jojogan.inversion.project import ProjectionConfig, project
    from jojogan.stylegan2.model import Discriminator, Generator

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            channels = tiny_channels(128)
            generator = Generator(128, style_dim=16, n_mlp=2, channels=channels).eval()
            discriminator = Discriminator(128, channels=channels).eval()
            with torch.no_grad():
                target = generator(torch.randn(1, 16)).clamp(-1, 1)
        config = ProjectionConfig.from_total_steps(3)
        project(generator, target, config, discriminator=discriminator)  # warm-up: first-call costs
        start = time.process_time()
        for _ in range(20):
            project(generator, target, config, discriminator=discriminator)
        torch_s = time.process_time() - start
        plane = np.random.default_rng(0).uniform(0, 255, (2000, 2000, 1)).astype(np.float32)
        start = time.process_time()
        _gaussian_blur(plane, 20.0)
        numpy_s = time.process_time() - start
    finally:
        torch.set_num_threads(threads)
    return {
        "torch_s": round(torch_s, 3),
        "numpy_s": round(numpy_s, 3),
        "total_s": round(torch_s + numpy_s, 3),
    }


def timed_suite(extra: list[str]) -> dict:
    command = readme_test_command()
    args = [*shlex.split(command), *extra]
    load_before = os.getloadavg()
    busy_before = busy_jiffies()
    start = time.perf_counter()
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    busy_after = busy_jiffies()
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    busy = None if busy_before is None else (busy_after - busy_before) / os.sysconf("SC_CLK_TCK")
    return {
        "command": shlex.join(args),
        "returncode": done.returncode,
        "summary": lines[-1].strip("= ") if lines else done.stderr[-500:],
        "wall_s": round(wall, 1),
        "busy_core_s": None if busy is None else round(busy, 1),
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "tail": "\n".join(lines[-40:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("pytest_args", nargs="*", help="extra arguments for pytest (after --)")
    options = parser.parse_args()

    import torch

    calibration()  # warm-up: the first run in a process pays one-time costs (lazy imports, FFT plans)
    before = calibration()
    suite = timed_suite(options.pytest_args)
    after = calibration()
    tail = suite.pop("tail")
    mean = (before["total_s"] + after["total_s"]) / 2
    busy = suite["busy_core_s"]
    result = {
        "benchmark": "suite_time",
        **suite,
        "calibration_s": {"before": before, "after": after},
        "busy_per_calibration": None if busy is None else round(busy / mean, 1),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }
    if not options.json:
        print(tail)
    print(json.dumps(result))
    if suite["returncode"] != 0:
        sys.exit(suite["returncode"])


if __name__ == "__main__":
    main()
