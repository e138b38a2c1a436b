"""Conversions between image tensors in [-1, 1] and PIL images, and writing result images safely."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from jojogan.fileio import atomic_output
from jojogan.inversion.images import from_pil

__all__ = ["from_pil", "image_grid", "labelled_strip", "save_gif", "save_image", "to_pil"]


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


def save_image(image: Image.Image, path: str | os.PathLike, **params) -> Path:
    """Write an image atomically (temporary file in the same folder, then rename).

    The format follows the suffix. On failure (full disk, permissions, unknown suffix) nothing is left
    behind: a ``JojoganError`` (disk) or ``ValueError`` (suffix) says why.
    """
    with atomic_output(path) as tmp:
        image.save(tmp, format=Image.registered_extensions().get(Path(path).suffix.lower()), **params)
    return path


def _fit(image: Image.Image, tile: int) -> Image.Image:
    return image if image.size == (tile, tile) else image.resize((tile, tile), Image.Resampling.LANCZOS)


def image_grid(rows: Sequence[Sequence[Image.Image]], tile: int = 256, gap: int = 4) -> Image.Image:
    """Images in a grid of square tiles (rows may differ in length), on a white background."""
    if not rows or not any(rows):
        raise ValueError("image_grid needs at least one image")
    width = max(len(r) for r in rows) * (tile + gap) - gap
    height = len(rows) * (tile + gap) - gap
    canvas = Image.new("RGB", (width, height), "white")
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            canvas.paste(_fit(image.convert("RGB"), tile), (j * (tile + gap), i * (tile + gap)))
    return canvas


def labelled_strip(images: Sequence[Image.Image], labels: Sequence[str], tile: int = 256) -> Image.Image:
    """One row of tiles with a caption under each (e.g. ``α = 0.50``)."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    caption = 24
    strip = image_grid([images], tile=tile)
    canvas = Image.new("RGB", (strip.width, strip.height + caption), "white")
    canvas.paste(strip, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for j, label in enumerate(labels):
        left = j * (tile + 4)
        text_width = draw.textlength(label)
        draw.text((left + (tile - text_width) / 2, tile + 6), label, fill="black")
    return canvas


def save_gif(frames: Sequence[Image.Image], path: str | os.PathLike, duration_ms: int = 250) -> Path:
    """An animated GIF that plays the frames forward then back (ping-pong), looping forever."""
    if not frames:
        raise ValueError("save_gif needs at least one frame")
    # Each frame reduced to its palette once, as Pillow's GIF writer would (the same bytes): the way back
    # repeats the frames, and quantizing is most of the writing.
    paletted = [f.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE) for f in frames]
    first, *rest = paletted + paletted[-2:0:-1]
    return save_image(first, path, save_all=True, append_images=rest, duration=duration_ms, loop=0)
