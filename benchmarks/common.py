"""Shared helpers for the benchmark scripts (each script prints one JSON line last)."""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def arg_parser(doc: str | None) -> argparse.ArgumentParser:
    """The scripts' shared options: ``--device`` (auto/cpu/cuda/mps) and ``--json``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    return parser


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_gflops(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 matmul throughput measured now, on this device with the current thread settings."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def count_gflop(fn) -> float:
    """FLOPs (in GFLOP) that torch's FLOP counter sees while ``fn()`` runs."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict:
    info = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def emit(result: dict) -> None:
    print(json.dumps(result))


def best_time(fn, repeats: int) -> float:
    """Fastest of ``repeats`` timed calls of ``fn`` (after one untimed warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def report(
    fields: dict, seconds: float, gflop: float, device: torch.device, unit: str, as_json: bool
) -> None:
    """Complete a result with throughput, peak and memory figures, print it, JSON line last.

    Args:
        fields: what identifies the run (benchmark name, sizes, ...).
        seconds: seconds per ``unit`` ("image" or "iter").
        gflop: GFLOP per ``unit`` (NaN or ``None``: not counted).
    """
    peak = matmul_peak_gflops(device)
    counted = gflop is not None and gflop == gflop  # NaN: not counted
    result = {
        **fields,
        "device": str(device),
        f"s_per_{unit}": round(seconds, 5),
        f"{unit}s_per_s": round(1 / seconds, 3),
        f"gflop_per_{unit}": round(gflop, 1) if counted else None,
        "achieved_gflops": round(gflop / seconds, 1) if counted else None,
        "matmul_peak_gflops": round(peak, 1),
        "utilization": round(gflop / seconds / peak, 3) if counted else None,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        **machine(),
    }
    if device.type == "cuda":
        result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    if not as_json:
        for key, value in result.items():
            print(f"{key:>20}: {value}")
    emit(result)
