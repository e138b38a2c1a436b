"""The Python API end to end on random full-width weights: what a user's call costs, stages and hub together.

    python benchmarks/api_speed.py --size 256 --iterations 3 --json

Times ``JoJoGAN.finetune`` (``--iterations`` steps on one aligned reference, optimisation inversion of
``--inversion-steps``) and ``JoJoGAN.stylize_face`` (one prepared face, alpha 0.5, both generators) on a
config-f generator of ``--size`` px with random weights; the best of ``--repeats``. It only calls the
public API, so the same script measures two checkouts in one run (run it with each one's interpreter,
alternating) — that is how the seams refactor was compared with the code before it (RESULTS.md). The
last line printed is JSON.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch
from common import arg_parser, machine

from jojogan.api import JoJoGAN
from jojogan.config import FinetuneConfig
from jojogan.imaging import to_pil
from jojogan.stylegan2 import Discriminator, Generator


def _base(folder: Path, size: int) -> Path:
    torch.manual_seed(0)
    generator, discriminator = Generator(size, 512, 8, 2).eval(), Discriminator(size, 2)
    path = folder / "base.pt"
    torch.save({"g_ema": generator.state_dict(), "d": discriminator.state_dict()}, path)
    return path


def _prepare(pipe: JoJoGAN, image, steps: int):
    try:  # the API since the seams: one StylizeConfig, keyword overrides
        return pipe.prepare(image, inversion="optimize", aligned=True, inversion_steps=steps)
    except TypeError:  # the API before them
        return pipe.prepare(image, "optimize", aligned=True, steps=steps)


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=3, help="fine-tuning steps")
    parser.add_argument("--inversion-steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pipe = JoJoGAN.from_pretrained(base=_base(Path(tmp), args.size), device="cpu")
        with torch.no_grad():
            image = to_pil(pipe.generator(torch.randn(1, 512, generator=torch.Generator().manual_seed(1)))[0])
        config = FinetuneConfig(iterations=args.iterations)
        finetune_s, stylize_s = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run = pipe.finetune(
                [image], config, inversion="optimize", inversion_steps=args.inversion_steps, aligned=True,
                show_progress=False,
            )  # fmt: skip
            finetune_s.append(time.perf_counter() - start)
        style = run.save(Path(tmp) / "style.safetensors")
        face = _prepare(pipe, image, args.inversion_steps)
        for _ in range(args.repeats):
            start = time.perf_counter()
            pipe.stylize_face(face, style, 0.5)
            stylize_s.append(time.perf_counter() - start)
    result = {
        "benchmark": "api_speed",
        "size": args.size,
        "iterations": args.iterations,
        "finetune_s": round(min(finetune_s), 3),
        "stylize_face_s": round(min(stylize_s), 4),
        "checkout": str(Path(__import__("jojogan").__file__).parent.parent),
        **machine(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
