"""Tiny seeded StyleGAN2 models for fast tests; import them with ``from factories import ...``."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

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


TINY_RESTYLE_WIDTHS = {"stem_channels": 8, "stage_channels": (8, 8, 16, 16), "se_reduction": 4}


def tiny_restyle_encoder(encoder_type: str, n_styles: int, seed: int = 0, picture_rows=None):
    """A tiny seeded ReStyle encoder (official depth, narrow widths, ``TINY_STYLE_DIM`` styles), eval mode.

    BatchNorm statistics and affine terms and PReLU slopes are random so that skipping them or running in
    training mode shows; the heads' convs are He-scaled (their default init shrinks the signal about 3x per
    conv, which would leave W+ almost independent of the input).
    """
    from jojogan.inversion.restyle import RestyleConfig, build_encoder

    config = RestyleConfig(
        encoder_type=encoder_type,
        n_styles=n_styles,
        style_dim=TINY_STYLE_DIM,
        picture_rows=picture_rows,
        **TINY_RESTYLE_WIDTHS,
    )
    gen = torch.Generator().manual_seed(seed + 2000)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        encoder = build_encoder(config)
    with torch.no_grad():
        for name, module in encoder.named_modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
                module.bias.normal_(0.0, 0.1, generator=gen)
                module.running_mean.normal_(0.0, 0.1, generator=gen)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) * 1.5 + 0.5)
            elif isinstance(module, torch.nn.PReLU):
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen) * 0.45 + 0.05)
            elif name.startswith("styles.") and isinstance(module, torch.nn.Conv2d):
                module.weight.normal_(0.0, (2.0 / module.weight[0].numel()) ** 0.5, generator=gen)
                module.bias.normal_(0.0, 0.01, generator=gen)
    return encoder.eval()


def tiny_restyle_checkpoint(
    path,
    encoder_type: str = "BackboneEncoder",
    size: int = 64,
    seed: int = 0,
    dataset_type: str = "ffhq_encode",
) -> dict:
    """Write a tiny ReStyle checkpoint in the official layout (with optimiser and discriminator entries
    that a loader must ignore) and return what was saved."""
    n_styles = 2 * (size.bit_length() - 1) - 2
    rows = (32, 224) if dataset_type == "cars_encode" else None
    encoder = tiny_restyle_encoder(encoder_type, n_styles, seed, rows)
    decoder = tiny_generator(size, seed=seed + 1, n_mlp=8)
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
    latent_avg = 0.5 * torch.randn(
        n_styles, TINY_STYLE_DIM, generator=torch.Generator().manual_seed(seed + 3)
    )
    opts = {
        "encoder_type": encoder_type,
        "input_nc": 6,
        "output_size": size,
        "dataset_type": dataset_type,
        "n_iters_per_batch": 5,
        "start_from_latent_avg": True,
        "checkpoint_path": None,
    }
    checkpoint = {
        "state_dict": state,
        "opts": opts,
        "latent_avg": latent_avg,
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]},
        "discriminator_state_dict": {"final_linear.weight": torch.zeros(1, 4)},
    }
    torch.save(checkpoint, path)
    return checkpoint


def reduced_image(source: Path, factor: int) -> Image.Image:
    """A real photo at ``1 / factor`` of its sides (Pillow's box average), in RGB: dlib's detector's time
    grows with the pixels, and the shared portraits' faces are several times larger than any crop the tests
    align."""
    with Image.open(source) as photo:
        return photo.convert("RGB").reduce(factor)


def reduced_photo(source: Path, factor: int, out: Path) -> Path:
    """:func:`reduced_image` written to ``out`` (a JPEG at quality 95, or the format ``out`` names)."""
    reduced_image(source, factor).save(out, quality=95)
    return out


def group_photo(folder: Path, out: Path, height: int = 720) -> Path:
    """The two shared portraits side by side, at one height (720 px: a screen's size keeps dlib's detector
    quick; at 480 the faces are still 206 and 192 px): one photo with two faces, written to ``out``."""
    left, right = (Image.open(folder / name).convert("RGB") for name in ("iu.jpeg", "chris_hemsworth.jpeg"))
    height = min(left.height, right.height, height)
    left = left.resize((left.width * height // left.height, height))
    right = right.resize((right.width * height // right.height, height))
    photo = Image.new("RGB", (left.width + right.width, height))
    photo.paste(left, (0, 0))
    photo.paste(right, (left.width, 0))
    photo.save(out)
    return out
