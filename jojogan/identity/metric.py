"""How much of the person survives: identity similarity of a face and its stylizations.

Values in, values out: these functions never write files (the CLI and API do). A similarity is the cosine
of two embeddings of the chosen recognizer, 1 for identical embeddings. Scales differ between networks:
on the test photos (a face against its mirror image or another crop, and against another person)
MobileFaceNet gives 0.91-0.99 for the same person and about -0.1 for different people, dlib 0.99 or more
and about 0.75 (its descriptors all lie in one half-space). Compare values of one network only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from jojogan.identity.errors import IdentityError
from jojogan.identity.recognizer import FaceRecognizer, face_tensor
from jojogan.inversion.align import align_face
from jojogan.inversion.images import ImageSource

__all__ = [
    "IdentityCurve",
    "compare_faces",
    "identity_curve",
    "identity_metadata",
    "identity_similarity",
    "plot_identity_curve",
]


def identity_similarity(face_a: Image.Image, face_b: Image.Image, recognizer: FaceRecognizer) -> float:
    """Cosine similarity of two aligned faces (square PIL images, e.g. an input crop and its stylization).

    Raises:
        ValueError: an image is not square.
        IdentityError: an embedding is NaN or zero.
    """
    return recognizer.similarity(face_a, face_b)


def compare_faces(
    image_a: ImageSource,
    image_b: ImageSource,
    recognizer: FaceRecognizer,
    aligned: bool = False,
    output_size: int = 256,
) -> float:
    """Similarity of the faces in two photos, aligning each (FFHQ) first unless ``aligned``.

    Args:
        image_a: a photo (path, PIL image or array).
        image_b: another.
        recognizer: the network that judges.
        aligned: both images are already aligned face crops (no detection).
        output_size: side of the aligned crops handed to the recognizer.

    Raises:
        FaceNotFoundError: no face in an image (several faces: the largest is used, as in alignment).
        ImageError: an image cannot be read.
    """
    faces = [align_face(image, output_size, aligned=aligned).image for image in (image_a, image_b)]
    return recognizer.similarity(*faces)


@dataclass(frozen=True)
class IdentityCurve:
    """Identity of the input face at each alpha of a slider.

    Attributes:
        network: the recognizer's name.
        alphas: the slider's alphas.
        similarities: cosine similarity between the input face and the stylized face at each alpha.
    """

    network: str
    alphas: tuple[float, ...]
    similarities: tuple[float, ...]

    def to_json(self) -> str:
        """``{"network": ..., "alphas": [...], "similarities": [...]}``, indented."""
        return json.dumps(asdict(self), indent=2)


def identity_curve(
    face: Image.Image,
    stylized: Sequence[Image.Image],
    alphas: Sequence[float],
    recognizer: FaceRecognizer,
) -> IdentityCurve:
    """identity(α): the similarity of ``face`` to each stylized image of a slider.

    Args:
        face: the aligned input face.
        stylized: the slider's images (aligned, square), one per alpha.
        alphas: their alphas.
        recognizer: the network that judges.

    Raises:
        ValueError: as many images as alphas are needed, and at least one.
        IdentityError: an embedding is NaN or zero.
    """
    if len(stylized) != len(alphas) or not alphas:
        raise ValueError(
            f"need one stylized image per alpha, got {len(stylized)} images and {len(alphas)} alphas"
        )
    with torch.no_grad():
        reference = recognizer.embed(face_tensor(face))
        tensors = [face_tensor(image) for image in stylized]
        if len({t.shape for t in tensors}) == 1:  # a slider's images share one size: one batch
            embeddings = recognizer.embed(torch.cat(tensors))
        else:
            embeddings = torch.cat([recognizer.embed(t) for t in tensors])
    similarities = F.cosine_similarity(embeddings.double(), reference.double(), dim=1)
    return IdentityCurve(recognizer.name, tuple(float(a) for a in alphas), tuple(similarities.tolist()))


def identity_metadata(similarity: float, network: str) -> dict[str, str]:
    """Text entries for a result image's metadata (PNG ``tEXt`` chunks) and logs.

    Raises:
        IdentityError: ``similarity`` is not a finite number.
    """
    if not math.isfinite(similarity):
        raise IdentityError(f"identity similarity must be a finite number, got {similarity!r}")
    return {"jojogan:identity": f"{similarity:.4f}", "jojogan:identity_net": network}


def plot_identity_curve(curve: IdentityCurve, width: int = 480, height: int = 300) -> Image.Image:
    """A small line plot of identity(α) (Pillow only): α on x, similarity on y, points labelled.

    The y axis spans [min(0, lowest), 1] so that curves of different runs compare at a glance.
    """
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 48, width - 16, 24, height - 36
    low = min(0.0, *curve.similarities)
    a_min, a_max = min(curve.alphas), max(curve.alphas)
    a_span = (a_max - a_min) or 1.0

    def point(alpha: float, value: float) -> tuple[float, float]:
        x = left + (alpha - a_min) / a_span * (right - left)
        y = bottom - (value - low) / (1.0 - low) * (bottom - top)
        return x, y

    draw.rectangle([left, top, right, bottom], outline="black")
    for value in (low, (low + 1) / 2, 1.0):
        y = point(a_min, value)[1]
        draw.line([left - 4, y, left, y], fill="black")
        draw.text((4, y - 6), f"{value:.2f}", fill="black")
    for alpha in curve.alphas:
        x = point(alpha, low)[0]
        draw.line([x, bottom, x, bottom + 4], fill="black")
        draw.text((x - 8, bottom + 6), f"{alpha:g}", fill="black")
    draw.text((left, 4), f"identity vs alpha ({curve.network})", fill="black")
    points = [point(a, s) for a, s in zip(curve.alphas, curve.similarities, strict=True)]
    if len(points) > 1:
        draw.line(points, fill=(200, 40, 40), width=2)
    for (x, y), value in zip(points, curve.similarities, strict=True):
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(200, 40, 40))
        label = f"{value:.2f}"
        # right of the point, or left of it where the label would leave the image
        label_x = x + 4 if x + 4 + draw.textlength(label) <= width else x - 4 - draw.textlength(label)
        draw.text((label_x, y - 14), label, fill=(120, 20, 20))
    return image
