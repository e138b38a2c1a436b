"""Cleanup stages: CodeFormer on a face of any size, as tensors or images (pure functions)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from jojogan.errors import JojoganError

if TYPE_CHECKING:
    import torch

    from jojogan.cleanup.network import CodeFormer

# torch and the network are imported inside the stages: the settings take DEFAULT_FIDELITY from here in
# processes that never clean a face up (the command line's help, batch drivers, alignment workers).

__all__ = [
    "DEFAULT_FIDELITY",
    "MIN_CLEANUP_SIZE",
    "CleanupError",
    "FaceTooSmallToRestoreError",
    "cleanup_face",
    "restore_image",
]

DEFAULT_FIDELITY = 0.7
"""Default CodeFormer fidelity weight ``w``: mostly the input, with the codebook's detail."""

MIN_CLEANUP_SIZE = 64
"""Smallest face side accepted, in pixels: below it a crop holds too little to restore from (CodeFormer
would invent a face, not clean one up)."""


class CleanupError(JojoganError):
    """CodeFormer cleanup could not produce a usable face."""


class FaceTooSmallToRestoreError(CleanupError, ValueError):
    """The face given to cleanup is smaller than :data:`MIN_CLEANUP_SIZE`."""


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    import torch.nn.functional as F

    if x.shape[-1] == size:
        return x
    # Antialiased bicubic: a plain bicubic downscale (512 -> 256) would alias the restored detail.
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)


def cleanup_face(face: torch.Tensor, model: CodeFormer, fidelity: float = DEFAULT_FIDELITY) -> torch.Tensor:
    """Clean up faces with CodeFormer: resize to the network's 512 px, restore, resize back.

    Args:
        face: aligned faces ``[B, 3, S, S]`` in [-1, 1] (e.g. the generator's output at ``S`` = 256 or
            1024), any float dtype, on any device; values outside [-1, 1] are clamped first.
        model: the network (see :func:`~jojogan.cleanup.load_codeformer`).
        fidelity: CodeFormer's ``w`` in [0, 1]; 0 = most restoration, 1 = most fidelity to ``face``.

    Returns:
        Restored faces ``[B, 3, S, S]`` in [-1, 1], same dtype and device as ``face``.

    Raises:
        FaceTooSmallToRestoreError: ``S`` is smaller than :data:`MIN_CLEANUP_SIZE`.
        CodeFormerInputError: ``face`` is not a batch of square RGB images, or ``fidelity`` is out of range.
        CleanupError: the network produced NaN or infinite values (broken weights or input).
    """
    import torch

    from jojogan.cleanup.network import CodeFormerInputError

    if face.ndim != 4 or face.shape[1] != 3 or face.shape[2] != face.shape[3]:
        raise CodeFormerInputError(f"expected square faces [batch, 3, S, S], got {list(face.shape)}")
    side = face.shape[-1]
    if side < MIN_CLEANUP_SIZE:
        raise FaceTooSmallToRestoreError(
            f"the face is {side} px across but cleanup needs at least {MIN_CLEANUP_SIZE} px"
        )
    if not torch.isfinite(face).all():
        raise CleanupError("the face given to cleanup contains NaN or infinite values")
    param = next(model.parameters())
    size = model.config.image_size
    first_conv = model.encoder.blocks[0].weight
    layout = torch.channels_last if first_conv.is_contiguous(memory_format=torch.channels_last) else None
    with torch.inference_mode():
        x = _resize(face.to(param.device, param.dtype).clamp(-1.0, 1.0), size)
        x = x.contiguous(memory_format=layout or torch.contiguous_format)  # the weights' format
        out = model(x, fidelity)
        if not torch.isfinite(out).all():
            raise CleanupError(
                "CodeFormer produced NaN or infinite values; check that the weights are the official "
                "codeformer.pth (a random or damaged file can do this)"
            )
        out = _resize(out.clamp_(-1.0, 1.0), side).clamp_(-1.0, 1.0)
    return out.to(face.device, face.dtype)


def restore_image(image: Image.Image, model: CodeFormer, fidelity: float = DEFAULT_FIDELITY) -> Image.Image:
    """CodeFormer on an aligned face image (``--restore-input``: before inversion), same size out.

    Args:
        image: an aligned square face crop (RGB, or convertible to it).
        model: the network.
        fidelity: CodeFormer's ``w`` in [0, 1].

    Returns:
        The restored crop, RGB, the size of ``image``.

    Raises:
        CodeFormerInputError: the image is not square. Other errors as :func:`cleanup_face`.
    """
    import torch

    from jojogan.cleanup.network import CodeFormerInputError

    if image.size[0] != image.size[1]:
        raise CodeFormerInputError(f"expected a square aligned face crop, got an image of size {image.size}")
    array = np.asarray(image.convert("RGB"), dtype=np.float32)
    x = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0) / 127.5 - 1.0
    out = cleanup_face(x, model, fidelity)[0]
    pixels = ((out + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(pixels)
