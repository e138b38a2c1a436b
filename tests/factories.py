"""Tiny seeded StyleGAN2 models for fast tests; import them with ``from factories import ...``."""

from __future__ import annotations

from pathlib import Path

import torch

from jojogan.stylegan2.model import Discriminator, Generator

TINY_STYLE_DIM = 16


def tiny_channels(size: int) -> dict[int, int]:
    """A channel table up to ``size`` px: 8 channels up to 16 px, 4 above."""
    table, res = {}, 4
    while res <= size:
        table[res] = 8 if res <= 16 else 4
        res *= 2
    return table


def _perturb(module: torch.nn.Module, seed: int) -> None:
    """Give zero-initialised biases and noise strengths random values so they matter in tests."""
    gen = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("bias") or name.endswith("noise.weight"):
                param.add_(0.1 * torch.randn(param.shape, generator=gen))


def tiny_generator(
    size: int = 64, seed: int = 0, style_dim: int = TINY_STYLE_DIM, n_mlp: int = 2
) -> Generator:
    """A tiny seeded generator (eval mode); the global RNG is left untouched."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        gen = Generator(size, style_dim=style_dim, n_mlp=n_mlp, channels=tiny_channels(size))
    _perturb(gen, seed)
    return gen.eval()


def tiny_discriminator(size: int = 64, seed: int = 0) -> Discriminator:
    """A tiny seeded discriminator (eval mode); the global RNG is left untouched."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        disc = Discriminator(size, channels=tiny_channels(size))
    _perturb(disc, seed)
    return disc.eval()


def tiny_base(root: Path, size: int = 128, faces: int = 2) -> tuple[Path, list[Path]]:
    """An official-layout checkpoint ``root/base.pt`` (``g_ema``, ``d``, ``latent_avg``) of tiny seeded
    models, and ``faces`` aligned 'faces' its generator draws (``root/face{i}.png``)."""
    from jojogan.imaging import to_pil

    gen, disc = tiny_generator(size, seed=3), tiny_discriminator(size, seed=4)
    latent_avg = gen.mean_latent(64).reshape(-1)
    torch.save(
        {"g_ema": gen.state_dict(), "d": disc.state_dict(), "latent_avg": latent_avg}, root / "base.pt"
    )
    with torch.no_grad():
        images = gen(torch.randn(faces, gen.style_dim, generator=torch.Generator().manual_seed(5)))
    paths = [root / f"face{i}.png" for i in range(faces)]
    for path, image in zip(paths, images, strict=True):
        to_pil(image).save(path)
    return root / "base.pt", paths
