"""CodeFormer speed: one restoration at 512 px with random weights in the official layout.

    python benchmarks/codeformer_speed.py --batch 1 --fidelity 0.7 --json
    python benchmarks/codeformer_speed.py --channels-last --in-job --json

``--fidelity 0`` skips the encoder-to-decoder fusion (fewer FLOPs). ``--channels-last`` runs the network
and the input in channels-last memory format (oneDNN's preferred layout for convolutions on the CPU);
``--in-job`` keeps freed CPU memory for reuse across calls (``jojogan.op.memory``), as a command over
several photos does. The last line printed is JSON (see ``common.report``).

``--threads 1 --cpu-time`` adds figures measured in this process's CPU time (``time.process_time``)
instead of wall time: on a machine shared with other jobs the wall clock counts their time too, while one
thread's CPU time counts only this network's work (and the matmul peak is measured the same way).
"""

from __future__ import annotations

import contextlib
import time

import torch
from common import arg_parser, best_time, count_gflop, report, sync

from jojogan.api import pick_device
from jojogan.cleanup import CodeFormer
from jojogan.op.memory import cpu_memory_reuse


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--fidelity", type=float, default=0.7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--in-job", action="store_true", help="keep freed CPU memory across calls")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--cpu-time", action="store_true", help="also report CPU-time figures (use 1 thread)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = pick_device(args.device)
    torch.manual_seed(0)
    model = CodeFormer().to(device).eval().requires_grad_(False)
    x = torch.rand(args.batch, 3, 512, 512, device=device) * 2 - 1
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def run():
        with torch.inference_mode():
            out = model(x, args.fidelity)
        sync(device)
        return out

    gflop = count_gflop(run) / args.batch
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    extra = {}
    with cpu_memory_reuse(device) if args.in_job else contextlib.nullcontext():
        seconds = best_time(run, args.repeats) / args.batch
        if args.cpu_time:
            cpu = _best_cpu_time(run, args.repeats) / args.batch
            peak = _matmul_cpu_gflops()
            extra = {
                "cpu_s_per_image": round(cpu, 3),
                "cpu_achieved_gflops": round(gflop / cpu, 1),
                "cpu_matmul_peak_gflops": round(peak, 1),
                "cpu_utilization": round(gflop / cpu / peak, 3),
            }
    report(
        {
            **extra,
            "benchmark": "codeformer",
            "size": 512,
            "batch": args.batch,
            "fidelity": args.fidelity,
            "channels_last": args.channels_last,
            "in_job": args.in_job,
        },
        seconds,
        gflop,
        device,
        "image",
        args.json,
    )


def _best_cpu_time(fn, repeats: int) -> float:
    """Least process CPU time of ``repeats`` calls (the warm-up was done by ``best_time``)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def _matmul_cpu_gflops(n: int = 2048, repeats: int = 5) -> float:
    """fp32 matmul throughput in process CPU time, with the current thread setting."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        a @ b
        best = min(best, time.process_time() - start)
    return 2 * n**3 / best / 1e9


if __name__ == "__main__":
    main()
