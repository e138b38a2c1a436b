"""ReStyle inversion speed against e4e, on random weights of the official architectures.

    python benchmarks/restyle_speed.py --json                      # small and full size
    python benchmarks/restyle_speed.py --scale full --iterations 5 --batch 16 --device cuda --json

For each scale, times on ``[batch, 3, 256, 256]`` photos (alignment excluded):

* ``e4e``: one forward of the e4e encoder (its whole inversion);
* per ReStyle encoder (pSp and e4e variants on IR-SE50, pSp on ResNet-34): ``encoder`` (one forward on
  the 6-channel input), ``reconstruct`` (the decoder's image of a code, pooled to 256 px: what every
  step but the last adds), ``steps_total`` for ``--iterations`` steps (``RestyleInverter.steps``, end to
  end) and ``per_step`` (that total / iterations).

Scales: ``full`` is the official size (IR-SE50 or ResNet-34 at 64-512 channels, 512-d styles, a 1024 px
config-f decoder); ``small`` divides every width by 4 (128-d styles, the decoder's channel table / 4), same
depths and resolutions. All times are per batch, in milliseconds, the best of ``--repeats`` after a warm-up:
``wall_ms`` and ``cpu_ms`` (this process's CPU time; with ``--threads 1``, the default, it equals the wall
time on an idle machine and stays put on a busy one).
The last line printed is JSON, with the CPU model from ``lscpu``, the thread count and the load average
before and after (the machine may be shared).
"""

from __future__ import annotations

import os
import subprocess
import time

import torch
from common import arg_parser, count_gflop, emit, machine, peak_rss_mb, sync

from jojogan.api import pick_device
from jojogan.inversion.e4e import E4EConfig, E4EInverter, Encoder4Editing
from jojogan.inversion.restyle import RestyleConfig, RestyleInverter, build_encoder
from jojogan.stylegan2.model import Generator, default_channels

RESTYLE_TYPES = ("BackboneEncoder", "ProgressiveBackboneEncoder", "ResNetBackboneEncoder")


def cpu_model() -> str:
    """``Model name`` from ``lscpu`` (empty when lscpu is missing)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""
    return next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name")), ""
    )


def widths(scale: str) -> dict:
    """Encoder widths, style width and decoder channel table for a scale."""
    div = {"full": 1, "small": 4}[scale]
    return {
        "stem_channels": 64 // div,
        "stage_channels": tuple(c // div for c in (64, 128, 256, 512)),
        "style_dim": 512 // div,
        "decoder_channels": {res: c // div for res, c in default_channels(2).items()},
    }


def timed(fn, repeats: int, device: torch.device) -> dict[str, float]:
    """Best wall-clock and best process-CPU milliseconds of ``repeats`` calls after one warm-up call.

    On a shared machine the CPU time of a one-thread run is the steadier figure: other processes stretch the
    wall clock, not the work this process does.
    """

    def run():
        with torch.inference_mode():
            fn()
        sync(device)

    run()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"wall_ms": round(min(walls) * 1000, 1), "cpu_ms": round(min(cpus) * 1000, 1)}


def bench_e4e(scale: str, x: torch.Tensor, repeats: int, device: torch.device) -> dict:
    w = widths(scale)
    config = E4EConfig(
        stem_channels=w["stem_channels"], stage_channels=w["stage_channels"], style_dim=w["style_dim"]
    )
    inverter = E4EInverter(Encoder4Editing(config), torch.zeros(18, w["style_dim"]))
    inverter = inverter.to(device).eval().requires_grad_(False)
    with torch.inference_mode():
        gflop = count_gflop(lambda: inverter(x))
    return {**timed(lambda: inverter(x), repeats, device), "gflop": round(gflop, 1)}


def bench_restyle(
    scale: str, encoder_type: str, x: torch.Tensor, iterations: int, repeats: int, device: torch.device
) -> dict:
    w = widths(scale)
    config = RestyleConfig(
        encoder_type=encoder_type,
        stem_channels=w["stem_channels"],
        stage_channels=w["stage_channels"],
        style_dim=w["style_dim"],
    )
    decoder = Generator(1024, w["style_dim"], 8, channels=w["decoder_channels"])
    inverter = RestyleInverter(build_encoder(config), decoder, torch.zeros(18, w["style_dim"]))
    inverter = inverter.to(device).eval().requires_grad_(False)
    pair = torch.cat([x, inverter.average_image.expand(x.shape[0], -1, -1, -1)], 1)
    code = inverter.latent_avg.expand(x.shape[0], -1, -1)
    with torch.inference_mode():
        encoder_gflop = count_gflop(lambda: inverter.encoder(pair))
        decoder_gflop = count_gflop(lambda: inverter.reconstruct(code))
    total = timed(lambda: inverter.steps(x, iterations), repeats, device)
    return {
        "encoder": timed(lambda: inverter.encoder(pair), repeats, device),
        "reconstruct": timed(lambda: inverter.reconstruct(code), repeats, device),
        "steps_total": total,
        "per_step": {key: round(value / iterations, 1) for key, value in total.items()},
        "encoder_gflop": round(encoder_gflop, 1),
        "reconstruct_gflop": round(decoder_gflop, 1),
    }


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--scale", choices=("small", "full", "both"), default="both")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, 256, 256, device=device) * 2 - 1
    result = {
        "benchmark": "restyle",
        "batch": args.batch,
        "iterations": args.iterations,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "load_average_before": [round(v, 2) for v in os.getloadavg()],
    }
    for scale in ("small", "full") if args.scale == "both" else (args.scale,):
        entry = {"e4e": bench_e4e(scale, x, args.repeats, device)}
        for encoder_type in RESTYLE_TYPES:
            entry[encoder_type] = bench_restyle(scale, encoder_type, x, args.iterations, args.repeats, device)
            if not args.json:
                print(scale, encoder_type, entry[encoder_type], flush=True)
        result[scale] = entry
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    result.update(cpu_model=cpu_model(), peak_rss_mb=round(peak_rss_mb(), 1), **machine())
    if device.type == "cuda":
        result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    emit(result)


if __name__ == "__main__":
    main()
