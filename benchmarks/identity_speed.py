"""Cost of the identity loss: fine-tuning seconds per iteration with and without it, and each network's
embedding (forward + backward) time.

    python benchmarks/identity_speed.py --size 1024 --iterations 2 --json
    python benchmarks/identity_speed.py --size 256 --networks mobilefacenet \
        --mobilefacenet ../shared/weights/mobilefacenet.pt

Networks get random weights of their official architecture unless a weights file is given (speed does not
depend on the values). The generator and discriminator are random full-width StyleGAN2 models at
``--size``. The last line printed is JSON: ``finetune_s_per_iter`` without the loss, and per network
``finetune_s_per_iter``, ``overhead_s_per_iter`` and ``embed_fwd_bwd_s`` (one reference-sized image, the
image gradient included), plus the machine.
"""

from __future__ import annotations

import time

import torch
from common import arg_parser, emit, machine, sync

from jojogan.api import pick_device
from jojogan.config import FinetuneConfig
from jojogan.finetune import finetune
from jojogan.identity import load_face_recognizer
from jojogan.identity.arcface_ir_se import IRSEBackbone
from jojogan.identity.crops import arcface_template_crop, psp_crop
from jojogan.identity.iresnet import IResNet
from jojogan.identity.mobilefacenet import MobileFaceNet, imagenet_normalize
from jojogan.identity.recognizer import TorchRecognizer
from jojogan.stylegan2 import Discriminator, Generator

RANDOM_RECOGNIZERS = {
    "mobilefacenet": lambda: TorchRecognizer(
        "mobilefacenet", MobileFaceNet(), arcface_template_crop, imagenet_normalize, 128
    ),
    "arcface-ir-se50": lambda: TorchRecognizer("arcface-ir-se50", IRSEBackbone(), psp_crop, None, 512),
    "arcface-iresnet": lambda: TorchRecognizer(
        "arcface-iresnet", IResNet(), arcface_template_crop, None, 512
    ),
}


def step_seconds(gen, disc, refs, latents, iterations, device, weight=0.0, recognizer=None) -> float:
    """Mean seconds per fine-tuning step, the first (warm-up) step left out."""
    times, last = [], [time.perf_counter()]

    def on_step(step, loss, preview):
        sync(device)
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    config = FinetuneConfig(iterations=iterations + 1, seed=0, identity_weight=weight)
    net = recognizer.embed if recognizer is not None else None
    finetune(
        gen,
        disc,
        refs,
        latents,
        config,
        identity_net=net,
        callback=on_step,
        show_progress=False,
        device=device,
    )
    return sum(times[1:]) / len(times[1:])


def embed_seconds(recognizer, size: int, device, repeats: int = 3) -> float:
    images = torch.rand(1, 3, size, size, device=device) * 2 - 1
    best = float("inf")
    for _ in range(repeats + 1):
        x = images.clone().requires_grad_(True)
        sync(device)
        start = time.perf_counter()
        recognizer.embed(x).sum().backward()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--iterations", type=int, default=2, help="timed iterations (after one warm-up)")
    parser.add_argument("--networks", default="mobilefacenet,arcface-ir-se50,arcface-iresnet")
    parser.add_argument("--weight", type=float, default=1.0, help="identity_weight of the timed runs")
    for name in RANDOM_RECOGNIZERS:
        parser.add_argument(f"--{name}", default=None, help=f"weights file of {name} (else random weights)")
    args = parser.parse_args()

    device = pick_device(args.device)
    torch.manual_seed(0)
    gen = Generator(args.size, 512, 8, 2).to(device).eval()
    disc = Discriminator(args.size, 2).to(device).eval()
    refs = torch.rand(1, 3, args.size, args.size, device=device) * 2 - 1
    latents = gen.mean_latent(256).unsqueeze(1).repeat(1, gen.n_latent, 1)

    base = step_seconds(gen, disc, refs, latents, args.iterations, device)
    result = {"benchmark": "identity_speed", "size": args.size, "device": str(device)}
    result["finetune_s_per_iter"] = round(base, 3)
    for name in args.networks.split(","):
        path = getattr(args, name.replace("-", "_"))
        recognizer = load_face_recognizer(name, path, device) if path else RANDOM_RECOGNIZERS[name]()
        recognizer.to(device)
        with_loss = step_seconds(gen, disc, refs, latents, args.iterations, device, args.weight, recognizer)
        result[name] = {
            "weights": "file" if path else "random",
            "finetune_s_per_iter": round(with_loss, 3),
            "overhead_s_per_iter": round(with_loss - base, 3),
            "embed_fwd_bwd_s": round(embed_seconds(recognizer, args.size, device), 4),
        }
    result.update(machine())
    if not args.json:
        for key, value in result.items():
            print(f"{key:>20}: {value}")
    emit(result)


if __name__ == "__main__":
    main()
