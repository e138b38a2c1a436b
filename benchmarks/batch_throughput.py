"""Batch throughput: photos per minute for the local engine and for Ray Data with 1 and 2 workers.

    python benchmarks/batch_throughput.py --photos 8 --json
    python benchmarks/batch_throughput.py --size 1024 --photos 4 --json   # full-size random weights
    python benchmarks/batch_throughput.py --engines ray1,ray1+align --json  # aligner actors or not

Builds a seeded StyleGAN2 (``--size 128``: the tests' tiny channel table; ``--size 1024``: the official
config-f architecture with random weights) and a style fine-tuned from it for one step, copies the real
test photos (``$JOJOGAN_SHARED/images/jojogan/test_input``) to ``--photos`` inputs, and stylizes them with
optimisation inversion (``--inversion-steps``). Every engine runs one torch thread per worker (Ray gives
each 1-CPU actor one OpenMP thread; the local engine is set to one). The last line printed is JSON with,
per engine (``local``; ``rayN``: N stylize actors aligning their own photos; ``rayN+align``: N
stylize actors fed by a pool of alignment actors on the CPUs left): ``align`` (where alignment ran),
wall seconds, ``photos_per_min`` (end to end, actor start-up included), ``steady_photos_per_min``
(between the first and the last result), ``first_result_s``, ``align_s_per_photo`` and
``stylize_s_per_photo`` (which stage limits the rate), ``worker_peak_rss_mb`` (a stylize worker) and
``align_worker_peak_rss_mb`` (the process that aligned); then ``scaling_2_over_1`` (steady rate of 2
Ray workers over 1, both aligning in their stylize actors) and the load average before and after (the
machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from common import tiny_channels

from jojogan.batch import BatchSettings, stylize_many
from jojogan.config import StylizeConfig
from jojogan.models import Models

REPO = Path(__file__).resolve().parents[1]


def build_base(folder: Path, size: int) -> Path:
    """A seeded official-layout checkpoint: tiny channels at small sizes, config-f at 1024 px."""
    from jojogan.stylegan2.model import Discriminator, Generator

    torch.manual_seed(0)
    if size == 1024:
        gen, disc = Generator(1024, style_dim=512, n_mlp=8, channel_multiplier=2), Discriminator(1024)
    else:
        table = tiny_channels(size)
        gen, disc = (
            Generator(size, style_dim=16, n_mlp=2, channels=table),
            Discriminator(size, channels=table),
        )
    gen.eval()
    path = folder / "base.pt"
    torch.save(
        {"g_ema": gen.state_dict(), "d": disc.state_dict(), "latent_avg": gen.mean_latent(256)[0]}, path
    )
    return path


def build_style(folder: Path, base: Path, steps: int) -> Path:
    from jojogan.api import JoJoGAN
    from jojogan.config import FinetuneConfig
    from jojogan.imaging import to_pil

    pipe = JoJoGAN.from_pretrained(base=base, device="cpu")
    with torch.no_grad():
        face = to_pil(pipe.generator(torch.randn(1, pipe.generator.style_dim))[0])
    out = pipe.finetune(
        [face], FinetuneConfig(iterations=1), inversion="optimize", inversion_steps=steps, aligned=True,
        show_progress=False,
    )  # fmt: skip
    return out.save(folder / "style.safetensors")


def measure(
    engine: str, workers: int, photos: Path, settings: BatchSettings, folder: Path, split: bool | None
) -> dict:
    times: list[float] = []
    start = time.perf_counter()
    report = stylize_many(
        [photos], settings, folder / f"out-{engine}-{workers}-{split}", engine=engine, workers=workers,
        progress=False, on_row=lambda row: times.append(time.perf_counter() - start), separate_align=split,
    )  # fmt: skip
    wall = time.perf_counter() - start
    done = len(times)
    steady = 60 * (done - 1) / (times[-1] - times[0]) if done > 1 and times[-1] > times[0] else None
    return {
        "engine": engine,
        "workers": workers,
        "align": "local thread"
        if engine == "local"
        else ("separate actors" if split else "in stylize actors"),
        "photos": done,
        "ok": report.counts["ok"],
        "wall_s": round(wall, 2),
        "photos_per_min": round(60 * done / wall, 2),
        "steady_photos_per_min": None if steady is None else round(steady, 2),
        "first_result_s": round(times[0], 2) if times else None,
        "worker_peak_rss_mb": max(row.get("worker_peak_rss_mb", 0) for row in report.rows),
        "align_worker_peak_rss_mb": max(row.get("align_worker_peak_rss_mb", 0) for row in report.rows),
        "s_per_photo_in_worker": round(sum(r["seconds"] for r in report.rows) / max(done, 1), 3),
        # the two stages: which one limits the rate depends on how many workers each has
        "align_s_per_photo": round(sum(r.get("align_seconds", 0) for r in report.rows) / max(done, 1), 3),
        "stylize_s_per_photo": round(
            sum(r["seconds"] - r.get("align_seconds", 0) for r in report.rows) / max(done, 1), 3
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=128, choices=(64, 128, 256, 1024))
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--inversion-steps", type=int, default=3)
    parser.add_argument(
        "--engines",
        default="local,ray1,ray2",
        help="comma-separated: local, rayN (N stylize actors aligning their own photos), rayN+align (N "
        "stylize actors and a pool of alignment actors on the CPUs left)",
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()

    shared = Path(os.environ.get("JOJOGAN_SHARED", REPO.parent / "shared"))
    sources = sorted((shared / "images" / "jojogan" / "test_input").glob("*.jpeg"))
    if not sources:
        raise SystemExit(f"needs the real test photos under {shared} (set JOJOGAN_SHARED)")
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    folder = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    try:
        base = build_base(folder, args.size)
        style = build_style(folder, base, args.inversion_steps)
        photos = folder / "photos"
        photos.mkdir()
        for i in range(args.photos):
            shutil.copy(sources[i % len(sources)], photos / f"p{i:03d}{sources[i % len(sources)].suffix}")
        config = StylizeConfig(inversion="optimize", inversion_steps=args.inversion_steps, identity="auto")
        settings = BatchSettings(style=style, config=config, models=Models(base=base, device="cpu"))
        results = []
        for name in args.engines.split(","):
            split = name.endswith("+align")
            engine, workers = (
                ("local", 1) if name == "local" else ("ray", int(name[3:].removesuffix("+align")))
            )
            if engine == "ray":
                import ray

                ray_start = time.perf_counter()
                ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
                ray_start = time.perf_counter() - ray_start
            result = measure(engine, workers, photos, settings, folder, split if engine == "ray" else None)
            if engine == "ray":
                ray.shutdown()
                result["ray_start_s"] = round(ray_start, 2)
            results.append(result)
            if not args.json:
                print(json.dumps(result))
        rates = {
            (r["engine"], r["workers"]): r["steady_photos_per_min"]
            for r in results
            if r["align"] != "separate actors"
        }
        one, two = rates.get(("ray", 1)), rates.get(("ray", 2))
        summary = {
            "benchmark": "batch_throughput",
            "size": args.size,
            "photos": args.photos,
            "inversion_steps": args.inversion_steps,
            "threads_per_worker": 1,
            "cpu_count": os.cpu_count(),
            "results": results,
            "scaling_2_over_1": round(two / one, 3) if one and two else None,
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "torch": torch.__version__,
        }
        print(json.dumps(summary))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
