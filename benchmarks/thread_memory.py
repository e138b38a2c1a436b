"""The CPU memory policy on a worker thread: a 1024 px synthesis on the main thread, on a worker thread,
and on a worker thread of a process started with ``jojogan.op.memory.worker_env()`` (``MALLOC_ARENA_MAX=1``).

    python benchmarks/thread_memory.py --size 1024 --json

Each case runs in a fresh process with one torch thread: ``--repeats`` syntheses of random full-size
weights inside ``cpu_memory_reuse``, on the thread named by the case. Ray Data calls its actors on worker
threads, so the third case is how the ray engine's CPU stylize actors run. The last line printed is JSON:
per case the seconds of each synthesis and the minor page faults of that thread over all of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from common import arg_parser

_CASE = """
import json, resource, sys, threading, time
import torch
from jojogan.op.memory import cpu_memory_reuse
from jojogan.stylegan2 import Generator

size, repeats, where = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
torch.set_num_threads(1)
torch.manual_seed(0)
generator = Generator(size, 512, 8).requires_grad_(False)
w = generator.to_w_plus(generator.get_latent(torch.randn(1, 512)))

def job(out):
    with cpu_memory_reuse("cpu"), torch.no_grad():
        faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            generator.synthesis(w)
            seconds.append(round(time.perf_counter() - start, 3))
        faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - faults
        out.update(seconds=seconds, minor_faults=faults)

out = {}
if where == "main":
    job(out)
else:
    thread = threading.Thread(target=job, args=(out,))
    thread.start()
    thread.join()
print(json.dumps(out))
"""


def _run(size: int, repeats: int, where: str, env: dict[str, str]) -> dict:
    inherited = {key: value for key, value in os.environ.items() if key != "MALLOC_ARENA_MAX"}
    result = subprocess.run(
        [sys.executable, "-c", _CASE, str(size), str(repeats), where],
        env={**inherited, "OMP_NUM_THREADS": "1", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.splitlines()[-1])


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from jojogan.op.memory import worker_env

    cases = {
        "main_thread": ("main", {}),
        "worker_thread": ("thread", {}),
        "worker_thread_with_worker_env": ("thread", worker_env()),
    }
    results = {name: _run(args.size, args.repeats, where, env) for name, (where, env) in cases.items()}
    for name, result in results.items():
        if not args.json:
            print(f"{name}: {result['seconds']} s, {result['minor_faults']} minor page faults")
    summary = {"benchmark": "thread_memory", "size": args.size, "worker_env": worker_env(), **results}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
