"""e4e inversion speed: the official-size Encoder4Editing (IR-SE50) on random weights.

    python benchmarks/e4e_speed.py --batch 1 --json

Times ``E4EInverter.forward`` on ``[batch, 3, 256, 256]`` inputs (alignment excluded). The last line
printed is JSON with ``s_per_image``, ``images_per_s``, ``gflop_per_image``, ``achieved_gflops``,
``matmul_peak_gflops``, ``utilization`` and ``peak_rss_mb`` (``peak_cuda_mb`` on a GPU).
"""

from __future__ import annotations

import torch
from common import arg_parser, best_time, count_gflop, report, sync

from jojogan.api import pick_device
from jojogan.inversion.e4e import E4EInverter, Encoder4Editing


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    device = pick_device(args.device)
    torch.manual_seed(0)
    inverter = E4EInverter(Encoder4Editing(), torch.zeros(18, 512)).to(device).eval().requires_grad_(False)
    x = torch.rand(args.batch, 3, 256, 256, device=device) * 2 - 1

    def run():
        with torch.inference_mode():
            out = inverter(x)
        sync(device)
        return out

    gflop = count_gflop(run) / args.batch
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = best_time(run, args.repeats) / args.batch
    report({"benchmark": "e4e", "batch": args.batch}, seconds, gflop, device, "image", args.json)


if __name__ == "__main__":
    main()
