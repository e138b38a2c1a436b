"""Where a fine-tuning step's GPU time goes: torch.profiler over a few 1024 px steps (CUDA).

    python benchmarks/profile_step.py --size 1024 --steps 5 --precision tf32

Prints the profiler's table of CUDA kernel time (top rows), then one JSON line with the total GPU kernel
time per step and the number of kernel launches per step.
"""

from __future__ import annotations

import json

import torch
from common import arg_parser
from torch.profiler import ProfilerActivity, profile

from jojogan.config import FinetuneConfig
from jojogan.finetune import finetune
from jojogan.stylegan2 import Discriminator, Generator


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    device = torch.device("cuda")
    torch.manual_seed(0)
    gen = Generator(args.size, 512, 8, 2).to(device)
    disc = Discriminator(args.size, 2).to(device)
    refs = torch.rand(1, 3, args.size, args.size, device=device) * 2 - 1
    latents = gen.mean_latent(64).unsqueeze(1).repeat(1, gen.n_latent, 1)

    def run(steps: int) -> None:
        config = FinetuneConfig(iterations=steps, precision=args.precision)
        finetune(gen, disc, refs, latents, config, show_progress=False, device=device)

    run(3)  # warm-up: build, autotune
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run(args.steps)
    events = prof.key_averages()
    print(events.table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=70))
    kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    total_us = sum(e.device_time_total for e in kernels)
    launches = sum(e.count for e in kernels)
    print(
        json.dumps(
            {
                "benchmark": "profile_step",
                "size": args.size,
                "precision": args.precision,
                "gpu_ms_per_step": round(total_us / args.steps / 1e3, 2),
                "kernels_per_step": launches / args.steps,
            }
        )
    )


if __name__ == "__main__":
    main()
