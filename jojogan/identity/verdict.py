"""When are two faces the same person? Each recognizer's published verification rule, and the verdict.

A raw score means nothing on its own: dlib's descriptors put two different people at a cosine of about 0.75,
MobileFaceNet puts them near 0. Every network therefore comes with the rule its authors (or a published
evaluation) use to decide "same person": a metric, a threshold, and where that threshold comes from
(:class:`VerificationRule`). :class:`IdentityScore` is one comparison judged by that rule: the raw score,
the threshold, the verdict, and the source, as every front end shows and stores it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from jojogan.identity.errors import IdentityError

if TYPE_CHECKING:
    import torch

__all__ = [
    "ARCFACE_RULE",
    "COSINE",
    "DLIB_RULE",
    "EUCLIDEAN",
    "MOBILEFACENET_ANGLE_DEG",
    "MOBILEFACENET_RULE",
    "IdentityScore",
    "VerificationRule",
]

COSINE = "cosine"
"""Cosine similarity of the two embeddings; the same person when it is at least the threshold."""

EUCLIDEAN = "euclidean"
"""Euclidean distance of the two embeddings (as the network outputs them); the same person below the
threshold."""


@dataclass(frozen=True)
class VerificationRule:
    """How one network decides "same person".

    Attributes:
        metric: :data:`COSINE` (same person when the score ≥ ``threshold``) or :data:`EUCLIDEAN` (same
            person when the distance < ``threshold``).
        threshold: the decision threshold on that metric.
        source: where the threshold comes from, in one sentence.
    """

    metric: str
    threshold: float
    source: str

    def __post_init__(self):
        if self.metric not in (COSINE, EUCLIDEAN):
            raise ValueError(f"metric must be {COSINE!r} or {EUCLIDEAN!r}, got {self.metric!r}")

    def scores(self, embeddings: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """The raw score of each embedding against the reference, on this rule's metric.

        Args:
            embeddings: ``[batch, dim]``.
            reference: ``[1, dim]`` or ``[batch, dim]``.

        Returns:
            ``[batch]`` float64 scores.
        """
        import torch  # here: the rules are tables that the command line reads without torch

        a, b = embeddings.detach().double(), reference.detach().double()
        if self.metric == COSINE:
            return torch.nn.functional.cosine_similarity(a, b, dim=1)
        return torch.linalg.vector_norm(a - b, dim=1)

    def same_person(self, score: float) -> bool:
        """The verdict for a raw score."""
        return score >= self.threshold if self.metric == COSINE else score < self.threshold

    def judge(self, network: str, score: float) -> IdentityScore:
        """A raw score of ``network`` with its verdict.

        Raises:
            IdentityError: the score is not a finite number (a diverged generator's NaN image).
        """
        if not math.isfinite(score):
            raise IdentityError(f"the {network} identity score is not a finite number ({score!r})")
        return IdentityScore(
            network=network,
            similarity=float(score),
            threshold=self.threshold,
            same_person=self.same_person(score),
            metric=self.metric,
            source=self.source,
        )


@dataclass(frozen=True)
class IdentityScore:
    """Two faces compared by one network, judged by its published rule.

    Attributes:
        network: the recognizer's name (``"dlib"``, ``"mobilefacenet"``, ...).
        similarity: the raw score on the rule's metric: a cosine for :data:`COSINE` networks, the Euclidean
            distance of the descriptors for :data:`EUCLIDEAN` ones (dlib: lower is more alike).
        threshold: the rule's threshold on that metric.
        same_person: the verdict.
        metric: :data:`COSINE` or :data:`EUCLIDEAN`.
        source: where the threshold comes from.
    """

    network: str
    similarity: float
    threshold: float
    same_person: bool
    metric: str
    source: str

    def to_dict(self) -> dict:
        """``{"network", "similarity", "threshold", "same_person", "metric", "source"}``."""
        return asdict(self)

    def to_json(self) -> str:
        """:meth:`to_dict` as one line of JSON (the PNG text chunk ``jojogan:identity``)."""
        return json.dumps(self.to_dict())

    def comparison(self) -> str:
        """The score against the threshold, e.g. ``cosine 0.912 ≥ 0.284`` or ``distance 0.812 ≥ 0.6``."""
        if self.metric == COSINE:
            sign = "≥" if self.same_person else "<"
            return f"cosine {self.similarity:.3f} {sign} {self.threshold:g}"
        sign = "<" if self.same_person else "≥"
        return f"distance {self.similarity:.3f} {sign} {self.threshold:g}"

    def line(self) -> str:
        """One line for people: the verdict, then the network's score against its threshold."""
        verdict = "same person" if self.same_person else "not the same person"
        return f"{verdict} ({self.network}: {self.comparison()})"


DLIB_RULE = VerificationRule(
    EUCLIDEAN,
    0.6,
    "dlib's documentation (dlib.net, face_recognition.py and dnn_face_recognition_ex.cpp): descriptors "
    "closer than 0.6 are the same person, 99.38% right on LFW",
)

MOBILEFACENET_ANGLE_DEG = 73.49470103143538
"""The angle between embeddings that sorts LFW's 6000 pairs best for the released MobileFaceNet weights,
by foamliu/MobileFaceNet's own protocol (``lfw_eval.py``: acos of the cosine in degrees, the threshold with
the fewest errors), as recorded by delldu/MobileFaceNet, which runs that protocol on the released file."""

MOBILEFACENET_RULE = VerificationRule(
    COSINE,
    round(math.cos(math.radians(MOBILEFACENET_ANGLE_DEG)), 4),
    "foamliu/MobileFaceNet's LFW protocol (lfw_eval.py, best-accuracy angle over the 6000 pairs): 73.49° "
    "for the released weights (run by delldu/MobileFaceNet), i.e. cosine 0.2841; 99.48% on LFW",
)

ARCFACE_RULE = VerificationRule(
    COSINE,
    0.28,
    "cosine 0.28 is ArcFace's threshold at a 0.1% false-accept rate on LFW (Deb, Zhang & Jain, AdvFaces, "
    "arXiv:1908.05008; insightface's ResNet-100); applied to this ArcFace-trained network, not re-measured",
)
