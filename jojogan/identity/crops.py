"""From a generator-resolution FFHQ-aligned face to the 112×112 crop each recognizer was trained on.

Every recognizer here reads a tight 112×112 face, while JoJoGAN's images are FFHQ crops (a much wider
square, 1024 px for the official model) in [-1, 1]. Two crops are used, both differentiable:

* :func:`psp_crop` for IR-SE50: pSp's identity loss (``criteria/id_loss.py``) pools the image to
  256×256, keeps rows 35:223 and columns 32:220 and pools that to 112×112. This is the known reference
  point for ``model_ir_se50.pth`` on FFHQ faces (pSp, e4e and ReStyle all feed it this way), so it is
  reproduced exactly.
* :func:`arcface_template_crop` for the networks trained on insightface-aligned faces (MobileFaceNet,
  iresnet, w600k): their training crops put five landmarks on the standard 112×112 ArcFace template.
  Aligning *that template face* with the FFHQ rule (:func:`jojogan.inversion.align`'s quad: centre 0.1 of
  the eye-to-mouth vector below the eyes, side the larger of 4× the eye distance and 3.6× the eye-to-mouth
  distance) tells where the template square lies in any FFHQ crop: a square of 0.765 of the side, centred
  near the middle, turned by 0.3°. Sampling that square gives the faces these networks expect, without
  landmarks, so it works on stylized faces too.

Resizing is area averaging when shrinking (``F.interpolate(mode="area")``, pSp's ``AdaptiveAvgPool2d``)
and bilinear when enlarging (only tiny test generators are smaller than the crops).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from jojogan.inversion.align import _ffhq_quad

__all__ = [
    "ARCFACE_TEMPLATE",
    "RECOGNITION_SIZE",
    "arcface_template_crop",
    "check_images",
    "psp_crop",
    "resize",
]

RECOGNITION_SIZE = 112
"""Side of the square face every recognizer here reads."""

ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],  # left eye (image left)
        [73.5318, 51.5014],  # right eye
        [56.0252, 71.7366],  # nose tip
        [41.5493, 92.3655],  # left mouth corner
        [70.7299, 92.2041],  # right mouth corner
    ]
)
"""insightface's five-point template for 112×112 recognition crops (``arcface_dst``), pixels."""

# pSp's crop of its 256 px images: rows 35:223, columns 32:220 (criteria/id_loss.py).
_PSP_SIZE = 256
_PSP_ROWS = slice(35, 223)
_PSP_COLS = slice(32, 220)


def check_images(images: torch.Tensor) -> None:
    """Refuse anything but square RGB batches ``[batch, 3, H, H]``.

    Raises:
        ValueError: another shape.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        got = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected FFHQ-aligned images [batch, 3, H, H] in [-1, 1], got {got}")
    if images.shape[2] != images.shape[3]:
        raise ValueError(f"expected square FFHQ-aligned images, got {images.shape[3]}x{images.shape[2]}")


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Square ``[batch, C, H, H]`` → ``[batch, C, size, size]``: area average down, bilinear up."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    if images.shape[-1] > size:
        return F.interpolate(images, size=(size, size), mode="area")
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def psp_crop(images: torch.Tensor) -> torch.Tensor:
    """pSp's IR-SE50 input: pool to 256, crop rows 35:223 and columns 32:220, pool to 112.

    Args:
        images: ``[batch, 3, H, H]`` FFHQ-aligned, in [-1, 1].

    Returns:
        ``[batch, 3, 112, 112]``.
    """
    check_images(images)
    return resize(resize(images, _PSP_SIZE)[:, :, _PSP_ROWS, _PSP_COLS], RECOGNITION_SIZE)


def _template_in_ffhq() -> tuple[torch.Tensor, int]:
    """The affine map from the 112 px template square to an FFHQ crop, for ``F.affine_grid``.

    Returns ``theta`` ``[2, 3]`` (output coordinates in [-1, 1] → input coordinates in [-1, 1]) and the
    FFHQ side at which one template pixel is one image pixel (where to pool to before sampling).
    """
    landmarks = np.zeros((68, 2))
    landmarks[36:42] = ARCFACE_TEMPLATE[0]  # the rule averages the six points around each eye
    landmarks[42:48] = ARCFACE_TEMPLATE[1]
    landmarks[48] = ARCFACE_TEMPLATE[3]
    landmarks[54] = ARCFACE_TEMPLATE[4]
    quad, side = _ffhq_quad(landmarks)
    top_left, right, down = quad[0], (quad[3] - quad[0]) / side, (quad[1] - quad[0]) / side

    def to_ffhq(o: np.ndarray) -> np.ndarray:
        # normalised output coordinate → template pixel → FFHQ unit square → normalised input coordinate
        point = (o + 1) / 2 * RECOGNITION_SIZE - top_left
        return np.array([point @ right, point @ down]) / side * 2 - 1

    origin = to_ffhq(np.zeros(2))
    theta = np.stack([to_ffhq(np.array([1.0, 0.0])) - origin, to_ffhq(np.array([0.0, 1.0])) - origin, origin])
    return torch.tensor(theta.T, dtype=torch.float64), int(np.ceil(side))


_TEMPLATE_THETA, _TEMPLATE_FFHQ_SIDE = _template_in_ffhq()


def arcface_template_crop(images: torch.Tensor) -> torch.Tensor:
    """The ArcFace-template face inside FFHQ-aligned images (see the module docstring).

    The image is first area-pooled to the size at which the template's pixels match the image's, so
    the bilinear sampling that follows does not alias.

    Args:
        images: ``[batch, 3, H, H]`` FFHQ-aligned, in [-1, 1].

    Returns:
        ``[batch, 3, 112, 112]``.
    """
    check_images(images)
    if images.shape[-1] > _TEMPLATE_FFHQ_SIDE:
        images = resize(images, _TEMPLATE_FFHQ_SIDE)
    theta = _TEMPLATE_THETA.to(device=images.device, dtype=images.dtype).expand(len(images), 2, 3)
    grid = F.affine_grid(theta, [len(images), 3, RECOGNITION_SIZE, RECOGNITION_SIZE], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
