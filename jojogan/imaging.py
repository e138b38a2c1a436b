"""Conversions between image tensors in [-1, 1] and PIL images."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

__all__ = ["from_pil", "to_pil"]


def to_pil(image: torch.Tensor) -> Image.Image:
    """An image tensor ``[3, H, W]`` (or ``[1, 3, H, W]``) in [-1, 1] as an 8-bit RGB PIL image.

    Values outside [-1, 1] are clipped; each value maps to ``round((x + 1) / 2 * 255)``.

    Raises:
        ValueError: not a single RGB image.
    """
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected one image [3, H, W] or [1, 3, H, W], got {tuple(image.shape)}")
    pixels = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(pixels.permute(1, 2, 0).cpu().numpy())


def from_pil(image: Image.Image, size: int | None = None) -> torch.Tensor:
    """A PIL image as a tensor ``[1, 3, H, W]`` in [-1, 1] (float32, CPU).

    Args:
        image: any mode; converted to RGB.
        size: resize to ``size × size`` (Lanczos) first, when given and different.
    """
    image = image.convert("RGB")
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
    return (pixels.permute(2, 0, 1).float() / 127.5 - 1).unsqueeze(0)
