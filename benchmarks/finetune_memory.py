"""Memory of fine-tuning: what one step holds, per reference and in all, on random full-size weights.

    python benchmarks/finetune_memory.py --size 1024 --references 16 --micro-batch 2 --json

What is measured, on any device:

- ``state_mb``: what lives for the whole run: the trained generator's parameters, gradients and Adam
  moments, the frozen discriminator and the references' cached features.
- ``activations_mb``: the tensors autograd keeps between the forward and the backward pass of one
  micro-batch of ``--micro-batch`` references (counted through ``torch.autograd.graph.saved_tensors_hooks``,
  each storage once). A micro-batch of one folds the style into the weights and saves less per reference
  than larger ones.
- ``estimated_step_mb``: ``state_mb`` + ``activations_mb``: the tensor memory of one step when the
  references run ``--micro-batch`` at a time (gradients accumulated, same results). Allocator caches and
  cuDNN workspaces come on top on a GPU.

On a GPU the script also runs one real step of ``--references`` at ``--micro-batch`` and reports
``peak_cuda_mb`` (``torch.cuda.max_memory_allocated``); on the CPU it reports ``peak_rss_mb``.
"""

from __future__ import annotations

import torch
from common import arg_parser, emit, machine, peak_rss_mb, sync

from jojogan.api import pick_device
from jojogan.config import FinetuneConfig
from jojogan.finetune import finetune, reference_features
from jojogan.mixing import mix_styles, reference_layer_latents, resolve_mask
from jojogan.stylegan2 import Discriminator, Generator

MB = 2**20


def tensor_mb(tensors) -> float:
    return sum(t.numel() * t.element_size() for t in tensors) / MB


def saved_activation_mb(gen, disc, latents, keep, blocks, refs: int, device) -> float:
    """Bytes autograd saves for the backward pass of a forward over ``refs`` references."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    gen.requires_grad_(True)
    z = torch.randn(refs, gen.style_dim, device=device)
    noise = gen.make_noise(refs)
    params = {p.untyped_storage().data_ptr() for p in gen.parameters()}
    params |= {p.untyped_storage().data_ptr() for p in disc.parameters()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        styles = mix_styles(gen, latents[:refs], keep, 1.0, z)
        feats = disc.features(gen.synthesis_from_styles(styles, noise), blocks)
        loss = sum(f.abs().mean() for f in feats)
    del loss, feats, styles
    # parameters are saved by reference, not copied: they belong to the state, not to the activations
    return sum(n for ptr, n in seen.items() if ptr not in params) / MB


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--references", type=int, default=16)
    parser.add_argument("--micro-batch", type=int, default=2)
    args = parser.parse_args()

    device = pick_device(args.device)
    torch.manual_seed(0)
    gen = Generator(args.size, 512, 8, 2).to(device)
    disc = Discriminator(args.size, 2).to(device).eval().requires_grad_(False)
    config = FinetuneConfig(iterations=1, micro_batch=args.micro_batch)
    keep = resolve_mask(config.mask, args.size).to(device)
    refs = torch.rand(args.references, 3, args.size, args.size, device=device) * 2 - 1
    w_plus = gen.mean_latent(256).detach().view(1, 1, -1).repeat(args.references, gen.n_latent, 1)
    latents = reference_layer_latents(args.size, w_plus)

    features = reference_features(disc, refs, config.d_blocks, micro_batch=1)
    params = list(gen.parameters())
    state = 4 * tensor_mb(params)  # weights, gradients, Adam's two moments
    state += tensor_mb(disc.parameters()) + tensor_mb(features) + tensor_mb([refs])
    activations = saved_activation_mb(gen, disc, latents, keep, config.d_blocks, args.micro_batch, device)
    del features

    result = {
        "benchmark": "finetune_memory",
        "size": args.size,
        "references": args.references,
        "micro_batch": args.micro_batch,
        "device": device.type,
        "state_mb": round(state, 1),
        "activations_mb": round(activations, 1),
        "estimated_step_mb": round(state + activations, 1),
    }
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        finetune(gen, disc, refs, w_plus, config, show_progress=False, device=device)
        sync(device)
        result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / MB, 1)
    else:
        result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    result.update(machine())
    if not args.json:
        for key, value in result.items():
            print(f"{key:>30}: {value}")
    emit(result)


if __name__ == "__main__":
    main()
