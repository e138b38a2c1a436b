"""Does a reduced precision train the same? The measurements that decide the GPU's default precision.

    python benchmarks/precision_check.py --size 1024 --steps 30 --json

On random full-size weights and one random reference, for each precision (tf32, bf16) against strict
fp32, same seed:

* the cosine similarity of the first step's generator gradients (all parameters, flattened) to fp32's;
* a ``--steps``-step loss curve, and its largest distance from fp32's curve at the same seed, against
  fp32's own seed-to-seed spread (the largest distance between the curves of seeds 0 and 1, 0 and 2).

The issue's rule: bf16 becomes the default only if it is ≥ 1.3× faster end to end (``finetune_speed.py``)
AND the cosine similarity is ≥ 0.99 AND its curve stays within the seed-to-seed spread. The last line is
JSON.
"""

from __future__ import annotations

import json

import torch
from common import arg_parser, machine

from jojogan.api import pick_device
from jojogan.config import FinetuneConfig
from jojogan.finetune import accumulate_gradients, finetune, reference_features
from jojogan.mixing import reference_layer_latents, resolve_mask
from jojogan.op.precision import autocast, precision_scope
from jojogan.stylegan2 import Discriminator, Generator


def first_step_gradient(gen, disc, refs, latents, precision: str, device) -> torch.Tensor:
    """All generator gradients of one JoJoGAN step at ``precision``, flattened (float32)."""
    config = FinetuneConfig()
    keep = resolve_mask(config.mask, gen.size).to(device)
    rng = torch.Generator(device=device).manual_seed(0)
    z = torch.randn(refs.shape[0], gen.style_dim, device=device, generator=rng)
    noise = gen.make_noise(refs.shape[0], generator=rng)
    gen.zero_grad(set_to_none=True)
    gen.requires_grad_(True)
    disc.requires_grad_(False)
    with precision_scope(precision, device) as resolved:
        with autocast(resolved, device), torch.no_grad():
            feats = reference_features(disc, refs, config.d_blocks)
        feats = [f.float() for f in feats]
        layer_latents = reference_layer_latents(gen.size, latents)
        accumulate_gradients(
            gen, disc, layer_latents, keep, 1.0, z, noise, feats, config.d_blocks, precision=resolved
        )
    grad = torch.cat([p.grad.flatten() for p in gen.parameters() if p.grad is not None])
    gen.zero_grad(set_to_none=True)
    return grad


def curve(gen, disc, refs, latents, precision: str, seed: int, steps: int, device) -> list[float]:
    config = FinetuneConfig(iterations=steps, seed=seed, precision=precision)
    return finetune(gen, disc, refs, latents, config, show_progress=False, device=device).losses


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    device = pick_device(args.device)
    torch.manual_seed(0)
    gen = Generator(args.size, 512, 8, 2).to(device)
    disc = Discriminator(args.size, 2).to(device)
    refs = torch.rand(1, 3, args.size, args.size, device=device) * 2 - 1
    latents = gen.mean_latent(256).unsqueeze(1).repeat(1, gen.n_latent, 1)
    latents = latents + 0.1 * torch.randn_like(latents)

    grad_fp32 = first_step_gradient(gen, disc, refs, latents, "fp32", device)
    curves = {
        f"fp32/seed{seed}": curve(gen, disc, refs, latents, "fp32", seed, args.steps, device)
        for seed in (0, 1, 2)
    }

    def distance(a: list[float], b: list[float]) -> float:
        return max(abs(x - y) for x, y in zip(a, b, strict=True))

    spread = max(distance(curves["fp32/seed0"], curves[f"fp32/seed{seed}"]) for seed in (1, 2))
    result = {
        "benchmark": "precision_check",
        "size": args.size,
        "steps": args.steps,
        "fp32_seed_spread": spread,
    }
    for precision in ("tf32", "bf16"):
        grad = first_step_gradient(gen, disc, refs, latents, precision, device)
        cosine = torch.nn.functional.cosine_similarity(grad.double(), grad_fp32.double(), dim=0).item()
        losses = curve(gen, disc, refs, latents, precision, 0, args.steps, device)
        curves[f"{precision}/seed0"] = losses
        result[precision] = {
            "grad_cosine_to_fp32": cosine,
            "grad_rel_norm_diff": ((grad - grad_fp32).norm() / grad_fp32.norm()).item(),
            "curve_distance_to_fp32": distance(losses, curves["fp32/seed0"]),
            "within_seed_spread": distance(losses, curves["fp32/seed0"]) <= spread,
        }
    result["final_loss"] = {name: values[-1] for name, values in curves.items()}
    result.update(machine())
    if not args.json:
        for name, values in curves.items():
            print(name, " ".join(f"{v:.4f}" for v in values))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
