"""How much of the person survives: identity of a face and its stylizations, judged by each network's rule.

Values in, values out: these functions never write files (the CLI and API do). Raw scores differ between
networks (on the test photos MobileFaceNet gives a cosine of 0.91-0.99 for the same person and about -0.1
for different people; dlib's descriptors lie 0.1-0.2 apart for the same person and about 1.05 for different
people), so every score comes with its network's published "same person" rule
(:class:`jojogan.identity.verdict.IdentityScore`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image, ImageDraw

from jojogan.identity.recognizer import FaceRecognizer, face_tensor
from jojogan.identity.verdict import COSINE, IdentityScore, VerificationRule
from jojogan.inversion.align import align_face
from jojogan.inversion.images import ImageSource

__all__ = [
    "IdentityCurve",
    "compare_faces",
    "identity_curve",
    "identity_metadata",
    "identity_score",
    "plot_identity_curve",
]

METADATA_KEY = "jojogan:identity"
"""The PNG text chunk holding a result's :class:`IdentityScore` as JSON."""


def identity_score(face_a: Image.Image, face_b: Image.Image, recognizer: FaceRecognizer) -> IdentityScore:
    """Two aligned faces (square PIL images, e.g. an input crop and its stylization) compared and judged.

    Raises:
        ValueError: an image is not square.
        IdentityError: an embedding is NaN or zero.
    """
    return recognizer.score(face_a, face_b)


def compare_faces(
    image_a: ImageSource,
    image_b: ImageSource,
    recognizer: FaceRecognizer,
    aligned: bool = False,
    output_size: int = 256,
) -> IdentityScore:
    """The faces in two photos compared and judged, aligning each (FFHQ) first unless ``aligned``.

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
    return recognizer.score(*faces)


@dataclass(frozen=True)
class IdentityCurve:
    """Identity of the input face at each alpha of a slider, with the network's "same person" rule.

    Attributes:
        network: the recognizer's name.
        alphas: the slider's alphas.
        similarities: the raw score of the stylized face against the input face at each alpha (a cosine, or
            dlib's descriptor distance: see ``rule.metric``).
        rule: the network's verification rule (metric, threshold, source).
    """

    network: str
    alphas: tuple[float, ...]
    similarities: tuple[float, ...]
    rule: VerificationRule

    @property
    def same_person(self) -> tuple[bool, ...]:
        """The verdict at each alpha."""
        return tuple(self.rule.same_person(s) for s in self.similarities)

    def line(self) -> str:
        """One line for people, e.g. ``(dlib: same person below distance 0.6) α 0.00: 0.000 same, ...``."""
        rule = self.rule
        side = "above cosine" if rule.metric == COSINE else "below distance"
        points = zip(self.alphas, self.similarities, self.same_person, strict=True)
        values = ", ".join(f"{a:.2f}: {v:.3f} {'same' if same else 'not same'}" for a, v, same in points)
        return f"({self.network}: same person {side} {rule.threshold:g}) α {values}"

    def to_json(self) -> str:
        """``{"network", "alphas", "similarities", "same_person", "threshold", "metric", "source"}``."""
        record = {
            "network": self.network,
            "alphas": list(self.alphas),
            "similarities": list(self.similarities),
            "same_person": list(self.same_person),
            "threshold": self.rule.threshold,
            "metric": self.rule.metric,
            "source": self.rule.source,
        }
        return json.dumps(record, indent=2)


def identity_curve(
    face: Image.Image,
    stylized: Sequence[Image.Image],
    alphas: Sequence[float],
    recognizer: FaceRecognizer,
) -> IdentityCurve:
    """identity(α): the score of each stylized image of a slider against ``face``.

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
    rule = recognizer.verification
    scores = tuple(rule.scores(embeddings, reference).tolist())
    return IdentityCurve(recognizer.name, tuple(float(a) for a in alphas), scores, rule)


def identity_metadata(score: IdentityScore) -> dict[str, str]:
    """Text entries for a result image's metadata (PNG ``tEXt`` chunks): :data:`METADATA_KEY` holding the
    score as JSON (``network``, ``similarity``, ``threshold``, ``same_person``, ``metric``, ``source``)."""
    return {METADATA_KEY: score.to_json()}


def _value_range(curve: IdentityCurve) -> tuple[float, float]:
    """The plot's y range: [min(0, lowest), 1] for a cosine, [0, max(1.2, highest)] for a distance; the
    threshold always inside, so that curves of different runs compare at a glance."""
    values = (*curve.similarities, curve.rule.threshold)
    if curve.rule.metric == COSINE:
        return min(0.0, *values), 1.0
    return 0.0, max(1.2, *values)


def _dashed(draw: ImageDraw.ImageDraw, x0: float, x1: float, y: float, fill, dash: int = 6) -> None:
    for x in range(round(x0), round(x1), 2 * dash):
        draw.line([x, y, min(x + dash, x1), y], fill=fill)


def plot_identity_curve(curve: IdentityCurve, width: int = 480, height: int = 300) -> Image.Image:
    """A small line plot of identity(α) (Pillow only): α on x, the raw score on y, points labelled, and
    the network's "same person" threshold as a dashed line."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 48, width - 16, 24, height - 36
    low, high = _value_range(curve)
    a_min, a_max = min(curve.alphas), max(curve.alphas)
    a_span = (a_max - a_min) or 1.0

    def point(alpha: float, value: float) -> tuple[float, float]:
        x = left + (alpha - a_min) / a_span * (right - left)
        y = bottom - (value - low) / (high - low) * (bottom - top)
        return x, y

    draw.rectangle([left, top, right, bottom], outline="black")
    for value in (low, (low + high) / 2, high):
        y = point(a_min, value)[1]
        draw.line([left - 4, y, left, y], fill="black")
        draw.text((4, y - 6), f"{value:.2f}", fill="black")
    for alpha in curve.alphas:
        x = point(alpha, low)[0]
        draw.line([x, bottom, x, bottom + 4], fill="black")
        draw.text((x - 8, bottom + 6), f"{alpha:g}", fill="black")
    measure = "cosine" if curve.rule.metric == COSINE else "descriptor distance"
    draw.text((left, 4), f"identity vs alpha ({curve.network}, {measure})", fill="black")
    threshold_y = point(a_min, curve.rule.threshold)[1]
    _dashed(draw, left, right, threshold_y, fill=(110, 110, 110))
    side = "above" if curve.rule.metric == COSINE else "below"
    note = f"same person {side} {curve.rule.threshold:g}"
    draw.text((right - 4 - draw.textlength(note), threshold_y + 2), note, fill=(90, 90, 90))
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
