"""CodeFormer speed: one restoration at 512 px with random weights in the official layout.

    python benchmarks/codeformer_speed.py --batch 1 --fidelity 0.7 --json
    python benchmarks/codeformer_speed.py --channels-last --in-job --json

``--fidelity 0`` skips the encoder-to-decoder fusion (fewer FLOPs). ``--channels-last`` runs the network
and the input in channels-last memory format (oneDNN's preferred layout for convolutions on the CPU);
``--in-job`` keeps freed CPU memory for reuse across calls (``jojogan.op.memory``), as a command over
several photos does. The last line printed is JSON (see ``common.report``).
"""

from __future__ import annotations

import contextlib

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
    args = parser.parse_args()

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
    with cpu_memory_reuse(device) if args.in_job else contextlib.nullcontext():
        seconds = best_time(run, args.repeats) / args.batch
    report(
        {
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


if __name__ == "__main__":
    main()
