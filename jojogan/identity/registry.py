"""The table of face recognizers: what each is, where its weights come from, and how it decides "same person".

Data only (no loaders), so that every module of the package can read a row by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from jojogan.identity.errors import IdentityError
from jojogan.identity.verdict import ARCFACE_RULE, DLIB_RULE, MOBILEFACENET_RULE, VerificationRule

__all__ = [
    "DEFAULT_LOSS_NETWORK",
    "DEFAULT_METRIC_NETWORK",
    "RECOGNIZERS",
    "RecognizerInfo",
    "verification_rule",
]


@dataclass(frozen=True)
class RecognizerInfo:
    """One row of the table of recognizers.

    Attributes:
        name: the name used by ``--identity-net`` and :func:`load_face_recognizer`.
        description: what it is.
        embedding_dim: width of its embedding.
        differentiable: usable as the fine-tuning identity loss (else metric only).
        weights: the weights-registry name of its file (``jojogan.weights``), or ``None`` when it ships in
            a package or must be given as a path.
        source: where the weights come from.
        licence: the weights' licence as their authors state it.
        verification: how it decides "same person" (metric, threshold, and the threshold's source).
    """

    name: str
    description: str
    embedding_dim: int
    differentiable: bool
    weights: str | None
    source: str
    licence: str
    verification: VerificationRule


RECOGNIZERS: dict[str, RecognizerInfo] = {
    info.name: info
    for info in (
        RecognizerInfo(
            "arcface-ir-se50",
            "ArcFace IR-SE50 (TreB1eN Backbone(112, 50, 'ir_se')), pSp/e4e/ReStyle's identity loss, 512-d",
            512,
            True,
            "arcface-ir-se50",
            "model_ir_se50.pth (pSp/e4e downloads; facexlib release v0.1.0 recognition_arcface_ir_se50.pth)",
            "MIT (TreB1eN/InsightFace_Pytorch); trained on MS-Celeb-1M",
            ARCFACE_RULE,
        ),
        RecognizerInfo(
            "arcface-iresnet",
            "insightface arcface_torch iresnet r18/r34/r50/r100/r200 (backbone.pth), 512-d",
            512,
            True,
            None,
            "insightface arcface_torch model zoo (backbone.pth); pass its path",
            "insightface pretrained models: non-commercial research use only",
            ARCFACE_RULE,
        ),
        RecognizerInfo(
            "arcface-w600k-r50",
            "insightface buffalo_l recognizer w600k_r50.onnx via onnxruntime (jojogan[onnx]), 512-d",
            512,
            False,
            "arcface-w600k-r50",
            "insightface buffalo_l pack (w600k_r50.onnx)",
            "insightface pretrained models: non-commercial research use only",
            ARCFACE_RULE,
        ),
        RecognizerInfo(
            "mobilefacenet",
            "MobileFaceNet (foamliu/MobileFaceNet), 1.0 M parameters, 128-d: the fast CPU choice",
            128,
            True,
            None,
            "foamliu/MobileFaceNet releases (mobilefacenet.pt); pass its path",
            "Apache-2.0 (foamliu/MobileFaceNet); trained on refined MS-Celeb-1M",
            MOBILEFACENET_RULE,
        ),
        RecognizerInfo(
            "dlib",
            "dlib face-recognition ResNet (face_recognition_models), 128-d, works offline, metric only",
            128,
            False,
            None,
            "ships inside the face_recognition_models package",
            "public domain (Davis King, dlib-models README)",
            DLIB_RULE,
        ),
    )
}
"""The recognizers, by name."""

DEFAULT_METRIC_NETWORK = "dlib"
"""Measures stylize/slider results when no network is chosen: no download, no GPU needed."""

DEFAULT_LOSS_NETWORK = "arcface-ir-se50"
"""The identity loss of pSp/e4e/ReStyle (``--identity-weight`` without ``--identity-net``)."""


def verification_rule(name: str) -> VerificationRule:
    """The "same person" rule of the recognizer called ``name``.

    Raises:
        IdentityError: no recognizer has that name.
    """
    if name not in RECOGNIZERS:
        raise IdentityError(f"unknown identity network {name!r}: expected one of {', '.join(RECOGNIZERS)}")
    return RECOGNIZERS[name].verification
