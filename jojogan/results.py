"""What the pipeline returns: small dataclasses, and the finishing stage that builds a stylized result.

:class:`Face` is one input aligned and inverted (what :meth:`jojogan.api.JoJoGAN.prepare` returns and the
UI caches per photo), :class:`StylizeResult` a stylized face with its paste-back and identity figure,
:class:`FinetuneOutput` a fine-tuned style not yet written. :func:`finish_faces` is the pure stage after
the generators: paste back, measure identity, record the settings.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from jojogan.config import AlphaSpec, StylizeConfig
from jojogan.identity import FaceRecognizer, IdentityScore
from jojogan.identity.metric import identity_metadata, identity_score
from jojogan.inversion.align import AlignedFace
from jojogan.inversion.images import ImageSource
from jojogan.inversion.paste import paste_faces
from jojogan.style_file import save_style

__all__ = ["Face", "FinetuneOutput", "StylizeResult", "finish_faces"]

log = logging.getLogger("jojogan")


@dataclass
class Face:
    """One input face, aligned and inverted.

    Attributes:
        name: the input's file name (without folders), or a description of an in-memory image.
        aligned: the alignment (crop, quad, transforms for paste-back).
        w_plus: its code ``[1, n_latent, style_dim]``.
        inversion: how the code was found (a name of :data:`jojogan.inversion.encoders.ENCODERS`).
    """

    name: str
    aligned: AlignedFace
    w_plus: torch.Tensor
    inversion: str


@dataclass
class StylizeResult:
    """A stylized face.

    Attributes:
        image: the stylized face in the aligned frame (the generator's size).
        face: the aligned, inverted input.
        alpha: the feature interpolation used.
        pasted: the photo with the stylized face (every face, with ``face="all"``) warped back in (when
            asked for), else ``None``.
        identity: the input face and the stylized face compared by a face-recognition network (raw score,
            the network's "same person" threshold and verdict), or ``None`` when not measured.
        cleanup: the cleanup applied to the stylized face, or ``None``.
        fidelity: the cleaner's ``w`` when it ran (cleanup or input restoration).
        restored_input: whether the input face was restored before inversion.
        restorer: the cleaner that restored it.
    """

    image: Image.Image
    face: Face
    alpha: AlphaSpec
    pasted: Image.Image | None = None
    identity: IdentityScore | None = None
    cleanup: str | None = None
    fidelity: float | None = None
    restored_input: bool = False
    restorer: str | None = None

    def png_metadata(self) -> PngInfo:
        """PNG text chunks recording the result (alpha, and the identity score when measured)."""
        info = PngInfo()
        alpha = self.alpha if isinstance(self.alpha, float) else ",".join(f"{a:g}" for a in self.alpha)
        info.add_text("jojogan:alpha", str(alpha))
        if self.cleanup is not None:
            info.add_text("jojogan:cleanup", self.cleanup)
        if self.restored_input:
            info.add_text("jojogan:restored_input", self.restorer or "unknown")
        if self.fidelity is not None:
            info.add_text("jojogan:fidelity", f"{self.fidelity:g}")
        if self.identity is not None:
            for key, value in identity_metadata(self.identity).items():
                info.add_text(key, value)
        return info


@dataclass
class FinetuneOutput:
    """A fine-tuned style, not yet written to disk.

    Attributes:
        generator: the fine-tuned generator.
        losses: the loss of every step.
        metadata: what the style file will record.
        references: the aligned references.
    """

    generator: torch.nn.Module
    losses: list[float]
    metadata: dict
    references: list[AlignedFace] = field(default_factory=list)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the style file (safetensors + JSON metadata) atomically."""
        return save_style(path, self.generator, self.metadata)


def finish_faces(
    faces: Sequence[Face],
    styled: Sequence[Image.Image],
    config: StylizeConfig,
    *,
    paste_into: ImageSource | None,
    recognizer: FaceRecognizer | None,
) -> list[StylizeResult]:
    """The results of one photo's stylized faces: pasted back (all of them into one photo) when
    ``paste_into`` is given, each with its identity score when ``recognizer`` is given.

    Args:
        faces: the photo's prepared faces.
        styled: their stylized images, in the same order.
        config: the settings they were made with (alpha, cleanup, fidelity, restoration, colour match).
        paste_into: the photo the faces were aligned from, or ``None``.
        recognizer: the identity network, or ``None`` for no figure.
    """
    pasted = None
    if paste_into is not None:
        pairs = [(image, face.aligned) for image, face in zip(styled, faces, strict=True)]
        pasted = paste_faces(paste_into, pairs, match_colour=config.match_colour)
    results = []
    for face, image in zip(faces, styled, strict=True):
        result = StylizeResult(
            image=image, face=face, alpha=config.alpha, pasted=pasted, cleanup=config.cleanup,
            fidelity=config.fidelity if config.cleaner_runs else None, restored_input=config.restore_input,
            restorer=config.cleaner if config.restore_input else None,
        )  # fmt: skip
        if recognizer is not None:
            result.identity = identity_score(face.aligned.image, image, recognizer)
            log.info("identity: %s", result.identity.line())
        results.append(result)
    return results
