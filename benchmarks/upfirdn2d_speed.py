"""``upfirdn2d`` on the shapes of a real 1024 px fine-tuning step, per implementation (CUDA only).

    python benchmarks/upfirdn2d_speed.py --size 1024 --json

Records every call a fine-tuning step makes to the CUDA extension (forward and backward, one reference,
random full-size weights), then times each distinct call with CUDA events for three implementations:

* ``generic``: the extension's generic kernel (one flat 64-bit index per output),
* ``small``: the extension's kernel specialised for 4-tap filters and factors 1 or 2,
* ``ref``: the PyTorch reference (cuDNN depthwise or transposed convolutions),

in float32 and bfloat16. Each line printed is JSON: one per call shape and implementation (median µs,
GB/s counting the input read and the output written once, the largest error relative to the float64
reference), then a summary with each implementation's total per fine-tuning step (every call weighted by
how often the step makes it).
"""

from __future__ import annotations

import collections
import json
import sys
from unittest import mock

import torch
from common import arg_parser, machine

from jojogan.config import FinetuneConfig
from jojogan.finetune import finetune
from jojogan.op import _build
from jojogan.op.upfirdn2d import make_kernel, upfirdn2d_ref
from jojogan.stylegan2 import Discriminator, Generator

IMPLEMENTATIONS = ("generic", "small", "ref")


def record_calls(size: int, device: torch.device) -> collections.Counter:
    """How often one fine-tuning step calls the extension's upfirdn2d, per argument tuple."""
    ext = _build.load_extension()
    real = ext.upfirdn2d
    torch.manual_seed(0)
    gen = Generator(size, 512, 8, 2).to(device)
    disc = Discriminator(size, 2).to(device)
    refs = torch.rand(1, 3, size, size, device=device) * 2 - 1
    latents = gen.mean_latent(64).unsqueeze(1).repeat(1, gen.n_latent, 1)

    def count(iterations: int) -> collections.Counter:
        calls: collections.Counter = collections.Counter()

        def spy(x, kernel, *args, **kwargs):
            calls[(tuple(x.shape), tuple(kernel.shape), *args)] += 1
            return real(x, kernel, *args, **kwargs)

        with mock.patch.object(ext, "upfirdn2d", spy):
            config = FinetuneConfig(iterations=iterations, precision="fp32")
            finetune(gen, disc, refs, latents, config, show_progress=False, device=device)
        return calls

    return count(2) - count(1)


def time_us(fn, repeats: int) -> float:
    """Median of ``repeats`` CUDA-event timings of ``fn()`` in µs, after three warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000)
    return sorted(times)[len(times) // 2]


def measure(key: tuple, dtype: torch.dtype, impl: str, repeats: int, device: torch.device) -> dict:
    x_shape, k_shape, up_x, up_y, down_x, down_y, x0, x1, y0, y1 = key
    ext = _build.load_extension()
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(x_shape, device=device, generator=generator)
    kernel = make_kernel([1, 3, 3, 1]) if k_shape == (4, 4) else torch.rand(k_shape)
    kernel = kernel.to(device)
    up, down, pad = (up_x, up_y), (down_x, down_y), (x0, x1, y0, y1)
    xd, kd = x.to(dtype), kernel.to(dtype)
    if impl == "ref":

        def fn():
            return upfirdn2d_ref(xd, kd, up, down, pad)

    else:

        def fn():
            return ext.upfirdn2d(
                xd, kd, up_x, up_y, down_x, down_y, x0, x1, y0, y1, allow_small=impl == "small"
            )

    out = fn()
    exact = upfirdn2d_ref(x.double(), kernel.double(), up, down, pad)
    error = ((out.double() - exact).abs().max() / exact.abs().max().clamp_min(1e-30)).item()
    us = time_us(fn, repeats)
    moved = (xd.numel() + out.numel()) * xd.element_size()
    return {
        "shape": list(x_shape),
        "up": up_x,
        "down": down_x,
        "pad": [x0, x1, y0, y1],
        "dtype": str(dtype).removeprefix("torch."),
        "impl": impl,
        "us": round(us, 2),
        "gb_per_s": round(moved / us / 1e3, 1),
        "rel_max_error": error,
    }


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"benchmark": "upfirdn2d", "skipped": "needs a CUDA GPU"}))
        sys.exit(0)
    device = torch.device("cuda")
    # The reference's convolutions must not run in TF32 when their error is measured.
    torch.backends.cudnn.allow_tf32 = False
    calls = record_calls(args.size, device)
    totals = {(impl, dtype): 0.0 for impl in IMPLEMENTATIONS for dtype in ("float32", "bfloat16")}
    worst = dict.fromkeys(totals, 0.0)
    for key, count in sorted(calls.items(), key=lambda item: -item[1]):
        for dtype in (torch.float32, torch.bfloat16):
            for impl in IMPLEMENTATIONS:
                row = measure(key, dtype, impl, args.repeats, device)
                row["calls_per_step"] = count
                print(json.dumps({"benchmark": "upfirdn2d", **row}))
                totals[(impl, row["dtype"])] += count * row["us"]
                worst[(impl, row["dtype"])] = max(worst[(impl, row["dtype"])], row["rel_max_error"])
    summary = {
        "benchmark": "upfirdn2d_summary",
        "size": args.size,
        "calls_per_step": sum(calls.values()),
        "distinct_calls": len(calls),
        "us_per_step": {f"{impl}/{dtype}": round(us, 1) for (impl, dtype), us in totals.items()},
        "worst_rel_error": {f"{impl}/{dtype}": err for (impl, dtype), err in worst.items()},
        **machine(),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
