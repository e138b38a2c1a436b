"""Stylizing speed: the blended synthesis of ``jojogan.stylization.stylize_latents`` on random full-size
weights.

    python benchmarks/stylize_speed.py --size 1024 --batch 1 --alpha 1.0 --json

Inversion is not included (see ``e4e_speed.py``). The last line printed is JSON with ``s_per_image``,
``images_per_s``, ``gflop_per_image``, ``achieved_gflops``, ``matmul_peak_gflops``, ``utilization`` and
``peak_rss_mb`` (``peak_cuda_mb`` on a GPU). ``--alpha`` strictly between 0 and 1 runs both generators.

On the CPU each call is timed as a single ``stylize`` call: the freed memory it kept for reuse
(``jojogan.op.memory``) is handed back at its end, so every call maps its memory anew. ``--in-job`` holds
that memory across calls instead, as one ``jojogan stylize`` command over several photos, a slider or
``with cpu_memory_reuse():`` around an API loop does.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from common import arg_parser, best_time, count_gflop, report, sync

from jojogan.api import pick_device
from jojogan.op.memory import cpu_memory_reuse
from jojogan.op.precision import autocast, precision_scope
from jojogan.stylegan2 import Generator
from jojogan.stylization import stylize_latents


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--in-job", action="store_true", help="keep freed CPU memory across calls")
    parser.add_argument(
        "--precision", default="auto", help="auto, fp32, tf32 or bf16 (autocast around the generators)"
    )
    args = parser.parse_args()

    device = pick_device(args.device)
    torch.manual_seed(0)
    original = Generator(args.size, 512, 8, 2).to(device).eval().requires_grad_(False)
    finetuned = copy.deepcopy(original)
    with torch.no_grad():
        for param in finetuned.parameters():
            param.add_(0.01 * torch.randn_like(param))
    w_plus = original.mean_latent(256).unsqueeze(1).repeat(args.batch, original.n_latent, 1)

    with precision_scope(args.precision, device) as precision:

        def run():
            # one API call is one job of the CPU memory policy (JoJoGAN.stylize enters it the same way)
            with torch.inference_mode(), cpu_memory_reuse(device), autocast(precision, device):
                out = stylize_latents(original, finetuned, w_plus, args.alpha)
            sync(device)
            return out

        gflop = count_gflop(run) / args.batch
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with cpu_memory_reuse(device) if args.in_job else contextlib.nullcontext():
            seconds = best_time(run, args.repeats) / args.batch
    report(
        {
            "benchmark": "stylize",
            "size": args.size,
            "batch": args.batch,
            "alpha": args.alpha,
            "in_job": args.in_job,
            "precision": precision,
        },
        seconds,
        gflop,
        device,
        "image",
        args.json,
    )


if __name__ == "__main__":
    main()
