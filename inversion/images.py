"""Loading user images robustly into 8-bit RGB.

Everything that reads a photo or a style reference goes through :func:`load_image`, so bad input fails
in one place with one kind of error (:class:`~jojogan.inversion.errors.ImageError`) and a message a user
understands: a missing or non-image file, a truncated download, or a decompression bomb.

Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left at its default (``False``) on purpose: with it set,
a half-downloaded JPEG silently decodes with its lower part grey, and such an image would be aligned and
stylized without anyone noticing.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from jojogan.inversion.errors import ImageError

if TYPE_CHECKING:
    import torch

__all__ = ["DEFAULT_MAX_PIXELS", "ImageSource", "from_pil", "image_name", "load_image"]

DEFAULT_MAX_PIXELS = 64_000_000
"""Largest image (width × height) :func:`load_image` decodes unless told otherwise: 64 megapixels."""

ImageSource = str | os.PathLike | Image.Image | np.ndarray
"""What :func:`load_image` accepts: a file path, a PIL image, or a numpy array."""

# Errors Pillow raises while decoding a damaged file (truncated data, broken chunks, bad headers).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)

# Modes holding an alpha channel that is composited on white; "P" joins them when it has a transparency.
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def image_name(source: ImageSource) -> str:
    """How an image source is named in messages: its path, or a description of the in-memory object."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, Image.Image):
        filename = getattr(source, "filename", "")
        return str(filename) if filename else "the given PIL image"
    if isinstance(source, np.ndarray):
        return f"the given {'x'.join(str(s) for s in source.shape)} array"
    return f"the given {type(source).__name__}"


def load_image(source: ImageSource, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Load an image as an 8-bit RGB PIL image, upright, whatever its file format or mode.

    The EXIF orientation is applied (a portrait photo taken with a rotated phone comes out upright).
    Alpha (``RGBA``, ``LA``, ``PA``, transparent palettes, 4-channel arrays) is composited on white.
    16-bit data (``I;16`` files, mode ``I``, ``uint16`` arrays) is scaled to 8 bits (65535 → 255), not
    clipped; mode ``I`` is taken to hold 16-bit values, as Pillow uses it for 16-bit PNG and TIFF. Mode
    ``F`` is taken to lie in [0, 1] when its maximum is at most 1, and in [0, 65535] otherwise.

    Args:
        source: A path (``str`` or ``os.PathLike``); a PIL image (not modified); or a numpy array of shape
            ``[height, width]``, ``[height, width, 1]``, ``[height, width, 3]`` (RGB) or
            ``[height, width, 4]`` (RGBA), of dtype ``uint8``, ``uint16`` or float with values in [0, 1].
        max_pixels: Largest accepted width × height, checked against a file's header before its pixels
            are decoded (a guard against decompression bombs); it replaces Pillow's own limit, so it is
            the one knob. ``None`` turns this check off and leaves Pillow's limit in force for files.

    Returns:
        A new RGB image, independent of ``source``.

    Raises:
        ImageError: The file is missing, unreadable, not an image, truncated or damaged; the image is
            larger than ``max_pixels``; or the array has an unusable shape, dtype or value range.
        TypeError: ``source`` is none of the accepted types.
        ValueError: ``max_pixels`` is not a positive integer or ``None``.
    """
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int)):
        raise ValueError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")
    if max_pixels is not None and max_pixels <= 0:
        raise ValueError(f"max_pixels must be a positive integer or None, got {max_pixels}")

    name = image_name(source)
    if isinstance(source, (str, os.PathLike)):
        return _load_path(Path(source), name, max_pixels)
    if isinstance(source, Image.Image):
        _check_size(source.size, name, max_pixels)
        return _to_rgb(_decode(source, name), name)
    if isinstance(source, np.ndarray):
        return _from_array(source, name, max_pixels)
    raise TypeError(
        "expected an image as a file path (str or os.PathLike), a PIL.Image.Image or a numpy array, "
        f"got {type(source).__name__}"
    )


def _load_path(path: Path, name: str, max_pixels: int | None) -> Image.Image:
    if not path.exists():
        raise ImageError(f"The image file {name} does not exist.")
    if not path.is_file():
        raise ImageError(f"The image path {name} is not a file.")
    try:
        with _pillow_limit_replaced(max_pixels is not None):
            opened = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"{name} is too large to open safely ({exc}); if you trust the file, pass max_pixels "
            "(--max-pixels on the command line) above its size."
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name} is not an image file that can be read (not a JPEG, PNG, ...).") from exc
    except OSError as exc:
        raise ImageError(f"The image file {name} could not be read: {exc}.") from exc
    except ValueError as exc:  # Pillow's bounds on PNG text chunks (a text-chunk bomb) say it this way
        raise ImageError(f"{name} cannot be read safely: {exc}.") from exc
    with opened as image:
        # Only the header has been read so far: reject oversized images before allocating their pixels.
        _check_size(image.size, name, max_pixels)
        return _to_rgb(_decode(image, name), name)


_PILLOW_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pillow_limit_replaced(replaced: bool):
    """While a file's header is read, let ``max_pixels`` (checked right after) be the only size limit:
    Pillow's own limit would refuse, or warn about, sizes the caller has allowed. ``Image.open`` reads
    only the header, so lifting Pillow's limit here allocates nothing."""
    if not replaced:
        yield
        return
    with _PILLOW_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _check_size(size: tuple[int, int], name: str, max_pixels: int | None) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"{name} is empty ({width} x {height} pixels).")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"{name} is {width} x {height} = {width * height / 1e6:.1f} megapixels, above the limit of "
            f"{max_pixels / 1e6:.1f} megapixels; if you trust the file, pass a larger max_pixels "
            "(--max-pixels on the command line)."
        )


def _decode(image: Image.Image, name: str) -> Image.Image:
    """Decode the pixels (catching damaged data) and apply the EXIF orientation."""
    try:
        image.load()
        # exif_transpose always returns a new image, so the caller's image is never modified.
        return ImageOps.exif_transpose(image)
    except _DECODE_ERRORS as exc:
        raise ImageError(f"{name} is truncated or damaged and cannot be decoded ({exc}).") from exc


def _to_rgb(image: Image.Image, name: str) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA") if mode != "La" else image.convert("LA").convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        return _from_array(np.asarray(image), name, max_pixels=None, wide_range=True)
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise ImageError(f"{name} has the image mode {mode!r}, which cannot be converted to RGB.") from exc


def _from_array(
    array: np.ndarray, name: str, max_pixels: int | None, wide_range: bool = False
) -> Image.Image:
    """Convert an array to RGB; ``wide_range`` admits Pillow's 16-bit-in-int32 and float modes."""
    if not array.dtype.isnative:
        # Big-endian data (e.g. Pillow's "I;16B"): compare dtypes below in native byte order.
        array = array.astype(array.dtype.newbyteorder("="))
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ImageError(
            f"{name} cannot be read as an image: expected shape [height, width], [height, width, 3] or "
            f"[height, width, 4], got {list(array.shape)}."
        )
    _check_size((array.shape[1], array.shape[0]), name, max_pixels)

    if array.dtype == np.uint8:
        pixels = array
    elif array.dtype == np.uint16:
        # 65535 / 257 == 255 exactly, so an 8-bit value stored as v * 257 comes back as v.
        pixels = np.rint(array / 257.0).astype(np.uint8)
    elif wide_range and array.dtype == np.int32:
        # Pillow's mode "I": 16-bit data in a 32-bit integer image.
        pixels = np.rint(np.clip(array, 0, 65535) / 257.0).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise ImageError(f"{name} contains NaN or infinite values.")
        low, high = float(values.min()), float(values.max())
        if wide_range:
            # Pillow's mode "F": [0, 1] data, or 16-bit data when it goes above 1; clipped either way.
            values = values / 65535.0 if high > 1.0 else values
        elif low < 0.0 or high > 1.0:
            raise ImageError(
                f"{name} cannot be read as an image: float pixel values must lie in [0, 1], "
                f"got [{low:g}, {high:g}]."
            )
        pixels = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
    else:
        raise ImageError(
            f"{name} cannot be read as an image: expected dtype uint8, uint16 or float in [0, 1], "
            f"got {array.dtype}."
        )

    pixels = np.ascontiguousarray(pixels)
    if pixels.ndim == 2:
        return Image.fromarray(pixels).convert("RGB")
    if pixels.shape[2] == 4:
        return _to_rgb(Image.fromarray(pixels), name)
    return Image.fromarray(pixels)


def from_pil(image: Image.Image, size: int | None = None) -> torch.Tensor:
    """A PIL image as a tensor ``[1, 3, H, W]`` in [-1, 1] (float32, CPU).

    Args:
        image: any mode; converted to RGB.
        size: resize to ``size × size`` (Lanczos) first, when given and different.
    """
    import torch  # here, not at the top: the dlib alignment loads images without ever needing torch

    image = image.convert("RGB")
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
    return (pixels.permute(2, 0, 1).float() / 127.5 - 1).unsqueeze(0)
