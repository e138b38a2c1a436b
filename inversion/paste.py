"""Seamless paste-back: faces in the aligned frame warped back into the photo through a soft landmark mask.

The mask follows the face, not the crop: a polygon along dlib's jaw line (landmarks 0-16) closed over the
eyebrows (17-26) raised towards the hairline, so hair, ears, neck and background stay the photo's own.
It is rasterised in the aligned frame, where the face is upright and its size is fixed, and made soft
inside its edge: the mask is ``smoothstep(d / feather_px)`` with ``d`` the distance to the polygon's edge
from inside, so it is exactly 0 outside the polygon (the photo is untouched there, bit for bit), exactly 1
deep inside, and without a kink at either end of the ramp. The mask and the face then go through the
inverse alignment transform (``AlignedFace.to_aligned``) into the photo.

Optional colour matching replaces the face's lowest spatial frequencies (Gaussian, masked and normalised
so that the background does not leak in) with the photo's, which hides a shift in skin tone or lighting
between the stylized face and its surroundings while keeping the face's detail.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from jojogan.inversion.align import AlignedFace, _gaussian_blur
from jojogan.inversion.errors import JojoganError
from jojogan.inversion.images import ImageSource, load_image

__all__ = [
    "DEFAULT_COLOUR_SIGMA",
    "DEFAULT_FEATHER",
    "DEFAULT_FOREHEAD",
    "PasteError",
    "face_mask",
    "paste_faces",
    "photo_mask",
]

DEFAULT_FEATHER = 0.06
"""Width of the mask's soft edge as a fraction of the aligned crop's side (FFHQ crops: ~4x the face)."""

DEFAULT_FOREHEAD = 0.7
"""How far above the eyebrows the mask reaches, in eye-to-mouth distances (about to the hairline)."""

DEFAULT_COLOUR_SIGMA = 0.04
"""Scale of the low frequencies that colour matching takes from the photo, as a fraction of the crop's
side (small enough that the face's shading stays, large enough that no detail of the photo comes in)."""

_JAW = slice(0, 17)
_BROWS = slice(17, 27)
_EYES = slice(36, 48)
_MOUTH = slice(48, 68)


class PasteError(JojoganError, ValueError):
    """A face cannot be pasted into the photo (wrong photo, no landmarks, not a square face image)."""


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def face_mask(
    face: AlignedFace, side: int, feather: float = DEFAULT_FEATHER, forehead: float = DEFAULT_FOREHEAD
) -> np.ndarray:
    """The soft face mask in the aligned frame; for a crop without landmarks (a picture cropped to the
    generator's square, not a detected face), the whole crop with a feathered edge.

    Args:
        face: an aligned face (with landmarks), or a centred crop of a photo.
        side: size of the mask in pixels (the size of the image that will be pasted).
        feather: width of the soft edge as a fraction of ``side``; 0 gives a hard edge.
        forehead: how far above the eyebrows the mask reaches, in eye-to-mouth distances.

    Returns:
        ``[side, side]`` float32 in [0, 1]: 0 outside the face polygon, rising smoothly to 1 inside.

    Raises:
        PasteError: an argument is out of range.
    """
    if not 0.0 <= feather <= 0.5:
        raise PasteError(f"feather must lie in [0, 0.5], got {feather}")
    if face.landmarks is None:
        return _feathered(np.ones((side, side), dtype=bool), feather, side)
    if forehead < 0.0:
        raise PasteError(f"forehead must be >= 0, got {forehead}")
    points = face.photo_to_aligned(face.landmarks) * (side / face.output_size)
    eyes, mouth = points[_EYES].mean(0), points[_MOUTH].mean(0)
    up = eyes - mouth
    # Along the jaw from one ear (16) to the other (0), then back across the raised brows (17 to 26).
    polygon = np.concatenate([points[_JAW][::-1], points[_BROWS] + forehead * up])
    canvas = Image.new("L", (side, side), 0)
    # Continuous coordinates: pixel (i, j) covers [i, i + 1) x [j, j + 1); Pillow fills by pixel index.
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in polygon - 0.5], fill=1)
    return _feathered(np.asarray(canvas, dtype=bool), feather, side)


def _feathered(inside: np.ndarray, feather: float, side: int) -> np.ndarray:
    """``inside`` with a soft edge ``feather * side`` wide (the crop's own edge counts as outside)."""
    if feather == 0:
        return inside.astype(np.float32)
    import scipy.ndimage  # here, not at the top: every command imports this module, only pasting needs it

    # Distance to the nearest pixel outside; a zero border makes the crop's edge count as outside too.
    distance = scipy.ndimage.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1]
    # The outermost inside pixels have distance 1: minus half a pixel puts the ramp's zero on the edge.
    return _smoothstep((distance - 0.5) / (feather * side)).astype(np.float32) * inside


def _photo_box(face: AlignedFace, mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Photo pixel box ``(left, top, right, bottom)`` covering the mask's support (plus resampling margin)."""
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        return None
    scale = face.output_size / mask.shape[0]
    corners = np.array(
        [
            [cols.min(), rows.min()],
            [cols.max() + 1, rows.min()],
            [cols.min(), rows.max() + 1],
            [cols.max() + 1, rows.max() + 1],
        ],
        dtype=np.float64,
    )
    photo = face.aligned_to_photo(corners * scale)
    width, height = face.source_size
    left, top = np.floor(photo.min(0)).astype(int) - 2
    right, bottom = np.ceil(photo.max(0)).astype(int) + 2
    left, top, right, bottom = max(left, 0), max(top, 0), min(right, width), min(bottom, height)
    if left >= right or top >= bottom:
        return None
    return int(left), int(top), int(right), int(bottom)


def _warp(image: Image.Image, face: AlignedFace, box, resample) -> np.ndarray:
    """``image`` (aligned frame, any square size) resampled onto the photo pixels of ``box``."""
    side = image.size[0]
    left, top, right, bottom = box
    offset = np.array([[1.0, 0.0, left], [0.0, 1.0, top], [0.0, 0.0, 1.0]])
    photo_to_image = np.diag([side / face.output_size, side / face.output_size, 1.0]) @ face.to_aligned
    coeffs = tuple((photo_to_image @ offset)[:2].reshape(-1))
    warped = image.transform((right - left, bottom - top), Image.Transform.AFFINE, coeffs, resample)
    return np.asarray(warped, dtype=np.float32)


def _low_pass(image: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian average of ``image`` ``[h, w, c]`` over the pixels where ``weight`` ``[h, w]`` is high."""
    num = _gaussian_blur(image * weight[..., None], sigma)
    den = _gaussian_blur(weight[..., None], sigma)
    return num / np.maximum(den, 1e-6)


def photo_mask(
    face: AlignedFace,
    side: int | None = None,
    feather: float = DEFAULT_FEATHER,
    forehead: float = DEFAULT_FOREHEAD,
) -> np.ndarray:
    """The soft face mask in the photo's frame, ``[height, width]`` float32 (what :func:`paste_faces` uses).

    Args:
        face: an aligned face with landmarks.
        side: side of the face image that will be pasted (the mask is built at that resolution);
            the crop's ``output_size`` by default.
        feather, forehead: as for :func:`face_mask`.
    """
    side = face.output_size if side is None else side
    mask = face_mask(face, side, feather, forehead)
    width, height = face.source_size
    full = np.zeros((height, width), dtype=np.float32)
    box = _photo_box(face, mask)
    if box is not None:
        left, top, right, bottom = box
        full[top:bottom, left:right] = _warp(
            Image.fromarray(mask, mode="F"), face, box, Image.Resampling.BILINEAR
        )
    return full


def paste_faces(
    photo: ImageSource,
    faces: Sequence[tuple[ImageSource, AlignedFace]],
    feather: float = DEFAULT_FEATHER,
    match_colour: bool = False,
    forehead: float = DEFAULT_FOREHEAD,
    colour_sigma: float = DEFAULT_COLOUR_SIGMA,
) -> Image.Image:
    """Paste faces (e.g. stylized ones) back into the photo they were aligned from.

    Args:
        photo: the photo (path, PIL image or array; see ``load_image``).
        faces: ``(face_image, aligned)`` pairs: a square image in the aligned frame (any size; it is
            scaled to the crop) and the :class:`AlignedFace` it belongs to, one per face.
        feather: width of the mask's soft edge, as a fraction of the crop's side; 0 gives a hard edge.
        match_colour: give each face the photo's low frequencies (colour and lighting) under its mask.
        forehead: how far above the eyebrows the mask reaches, in eye-to-mouth distances.
        colour_sigma: Gaussian scale of the colour matching, as a fraction of the crop's side in the photo.

    Returns:
        A new RGB image of the photo's size; outside every face's mask its pixels equal the photo's.

    Raises:
        PasteError: a face image is not square, ``photo`` is not the photo a face came from (its size
            differs), a face has no landmarks, or an argument is out of range.
        ImageError: an image cannot be loaded.
    """
    if colour_sigma <= 0:
        raise PasteError(f"colour_sigma must be > 0, got {colour_sigma}")
    photo_image = load_image(photo, max_pixels=None)
    out = np.asarray(photo_image, dtype=np.float32).copy()
    for number, (face_image, face) in enumerate(faces):
        image = load_image(face_image, max_pixels=None)
        if image.size[0] != image.size[1]:
            raise PasteError(f"face {number}: expected a square image in the aligned frame, got {image.size}")
        if photo_image.size != face.source_size:
            raise PasteError(
                f"face {number} was aligned from a photo of size {face.source_size}, "
                f"but the photo given is {photo_image.size}"
            )
        footprint = max(int(np.ceil(np.hypot(*(face.quad[3] - face.quad[0])))), 1)
        if image.size[0] > footprint:
            # Downscale with a proper filter first: the affine warp would alias.
            image = image.resize((footprint, footprint), Image.Resampling.LANCZOS)
        side = image.size[0]
        mask = face_mask(face, side, feather, forehead)
        box = _photo_box(face, mask)
        if box is None:  # the face lies outside the photo
            continue
        left, top, right, bottom = box
        weight = _warp(Image.fromarray(mask, mode="F"), face, box, Image.Resampling.BILINEAR)
        pasted = _warp(image, face, box, Image.Resampling.BICUBIC)
        region = out[top:bottom, left:right]
        if match_colour:
            sigma = colour_sigma * footprint
            pasted += _low_pass(region, weight, sigma) - _low_pass(pasted, weight, sigma)
        region += weight[..., None] * (pasted - region)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))
