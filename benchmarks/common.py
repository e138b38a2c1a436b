"""Shared helpers for the benchmark scripts (each script prints one JSON line last)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from fractions import Fraction
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

SHARED = Path(os.environ.get("JOJOGAN_SHARED", Path(__file__).resolve().parents[2] / "shared"))
"""The shared test data (photos)."""


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


def tiny_channels(size: int) -> dict[int, int]:
    """A tiny generator's or discriminator's channel table up to ``size`` px: 8 channels up to 16 px, 4
    above (what the tests' tiny models use)."""
    return {res: 8 if res <= 16 else 4 for res in (2**k for k in range(2, size.bit_length()))}


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def camera_clip(path: Path, frames: int, width: int, height: int) -> Path:
    """A camera path with hand shake over the shared face photo (``$JOJOGAN_SHARED``), H.264 + AAC."""
    import av
    import numpy as np
    from PIL import Image

    with Image.open(SHARED / "images" / "jojogan" / "test_input" / "iu.jpeg") as photo:
        photo = photo.convert("RGB")
    scale = 1.3 * height / photo.height
    centre = np.array([photo.width / 2, photo.height * 0.5])
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=44100, layout="mono")
        for i in range(frames):
            t = i / max(frames - 1, 1)
            turn = np.deg2rad(3 * np.sin(2 * t))
            zoom = scale * (0.9 + 0.1 * t)
            linear = zoom * np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
            shift = np.array([width / 2 + 30 * t - 15, height / 2]) + rng.normal(0, 1.5, 2)
            matrix = np.linalg.inv(np.vstack([np.c_[linear, shift - linear @ centre], [0, 0, 1]]))
            image = photo.transform((width, height), Image.Transform.AFFINE, tuple(matrix[:2].ravel()))
            frame = av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        samples = np.sin(2 * np.pi * 440 * np.arange(int(44100 * frames / 30)) / 44100).astype(np.float32)
        tone = av.AudioFrame.from_ndarray(0.3 * samples[None], format="flt", layout="mono")
        tone.sample_rate, tone.pts, tone.time_base = 44100, 0, Fraction(1, 44100)
        for packet in [*audio.encode(tone), *audio.encode()]:
            container.mux(packet)
    return path
