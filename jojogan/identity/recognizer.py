"""What every face recognizer offers, and the shared parts of the PyTorch ones.

A recognizer turns FFHQ-aligned faces into identity embeddings. :class:`FaceRecognizer` is the contract
(``embed``, ``score``, ``network``); :class:`TorchRecognizer` is a differentiable one built from a
network, the crop it was trained on and its input normalisation. :func:`load_network_state` reads an
official weights file strictly into a freshly built network.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from jojogan.identity.crops import check_images
from jojogan.identity.errors import IdentityError
from jojogan.identity.registry import verification_rule
from jojogan.identity.verdict import IdentityScore, VerificationRule
from jojogan.imaging import from_pil
from jojogan.stylegan2.checkpoint import layout_problems, read_weights_file
from jojogan.stylegan2.errors import CheckpointError

__all__ = ["FaceRecognizer", "TorchRecognizer", "check_embeddings", "face_tensor", "load_network_state"]


def face_tensor(face: Image.Image) -> torch.Tensor:
    """An aligned face image as ``[1, 3, H, H]`` in [-1, 1].

    Raises:
        TypeError: not a PIL image.
        ValueError: not square.
    """
    if not isinstance(face, Image.Image):
        raise TypeError(f"expected a PIL image of an aligned face, got {type(face).__name__}")
    if face.width != face.height:
        raise ValueError(f"expected a square aligned face image, got {face.width}x{face.height}")
    return from_pil(face)


def check_embeddings(embeddings: torch.Tensor, name: str) -> torch.Tensor:
    """Return ``embeddings`` ``[batch, dim]`` unchanged, or raise when one is NaN, infinite or zero.

    Raises:
        IdentityError: an embedding cannot be compared (its cosine similarity would be meaningless).
    """
    values = embeddings.detach()
    if not torch.isfinite(values).all():
        raise IdentityError(
            f"the {name} recognizer produced a NaN or infinite embedding; check the input images for NaN "
            "values (a diverged generator produces them)"
        )
    if (torch.linalg.vector_norm(values, dim=1) == 0).any():
        raise IdentityError(f"the {name} recognizer produced an all-zero embedding; it cannot be compared")
    return embeddings


class FaceRecognizer(abc.ABC):
    """A face-recognition network behind one interface.

    Attributes:
        name: the name it was loaded by (``"mobilefacenet"``, ``"arcface-ir-se50"``, ...).
        network: the underlying network, as its reference code defines it.
        embedding_dim: width of an embedding.
        differentiable: whether :meth:`embed` passes gradients to its input (usable as an identity loss).
    """

    name: str
    network: object
    embedding_dim: int
    differentiable: bool

    @abc.abstractmethod
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Identity embeddings of FFHQ-aligned faces.

        Args:
            images: ``[batch, 3, H, H]`` in [-1, 1], FFHQ-aligned (a generator's output, any H); each
                recognizer crops and resizes them the way its network was trained.

        Returns:
            ``[batch, embedding_dim]`` (not normalised; compare with the cosine).
        """

    @property
    def verification(self) -> VerificationRule:
        """How this network decides "same person" (its row of :data:`jojogan.identity.RECOGNIZERS`)."""
        return verification_rule(self.name)

    def score(self, face_a: Image.Image, face_b: Image.Image) -> IdentityScore:
        """Compare two aligned face images (square PIL images, any size and mode) by this network's rule.

        Returns:
            The raw score (cosine, or dlib's descriptor distance), the threshold and the verdict.

        Raises:
            ValueError: an image is not square.
            IdentityError: an embedding is NaN or zero.
        """
        a, b = face_tensor(face_a), face_tensor(face_b)
        with torch.no_grad():
            if a.shape == b.shape:
                emb_a, emb_b = self.embed(torch.cat([a, b])).split(1)
            else:
                emb_a, emb_b = self.embed(a), self.embed(b)
        rule = self.verification
        return rule.judge(self.name, float(rule.scores(emb_a, emb_b)[0]))

    def to(self, device: str | torch.device) -> FaceRecognizer:
        """Move to ``device`` (a no-op for recognizers that run outside PyTorch); returns ``self``."""
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, embedding_dim={self.embedding_dim})"


class TorchRecognizer(FaceRecognizer):
    """A differentiable recognizer: crop → normalise → network.

    The network is frozen (eval mode, ``requires_grad=False``) so that an identity loss sends gradients
    to the images only.

    Args:
        name: registry name.
        network: the reference module; reads ``[batch, 3, 112, 112]``.
        crop: FFHQ-aligned ``[batch, 3, H, H]`` in [-1, 1] → ``[batch, 3, 112, 112]`` in [-1, 1].
        normalize: [-1, 1] RGB → the value range the network was trained on (identity when it is [-1, 1]).
        embedding_dim: width of the network's output.
    """

    differentiable = True

    def __init__(
        self,
        name: str,
        network: nn.Module,
        crop: Callable[[torch.Tensor], torch.Tensor],
        normalize: Callable[[torch.Tensor], torch.Tensor] | None,
        embedding_dim: int,
    ):
        self.name = name
        self.network = network.requires_grad_(False).eval()
        self.crop = crop
        self.normalize = normalize
        self.embedding_dim = embedding_dim

    def network_input(self, images: torch.Tensor) -> torch.Tensor:
        """What :meth:`embed` gives the network: ``[batch, 3, H, H]`` → ``[batch, 3, 112, 112]``."""
        check_images(images)
        reference = next(self.network.parameters())
        x = self.crop(images.to(device=reference.device, dtype=reference.dtype))
        return x if self.normalize is None else self.normalize(x)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return check_embeddings(self.network(self.network_input(images)), self.name)

    def to(self, device: str | torch.device) -> TorchRecognizer:
        self.network.to(device)
        return self


def load_network_state(
    network: nn.Module, path: str | Path, what: str, state: Mapping[str, object] | None = None
) -> nn.Module:
    """Fill ``network`` (built on any device, e.g. ``meta``) from an official weights file, strictly.

    Args:
        network: the freshly built module; its ``state_dict()`` is the layout the file must have.
        path: ``.pt``/``.pth`` (read with ``weights_only=True``) or ``.safetensors``.
        what: how the layout is named in the error message (``"MobileFaceNet"``).
        state: the file's tensors when the caller has already read them (to infer the architecture).

    Returns:
        ``network`` on the CPU with the file's tensors (float32).

    Raises:
        CheckpointError: unreadable file, or names/shapes differ; the message lists the first differing keys.
    """
    path = Path(path)
    state = read_weights_file(path) if state is None else state
    expected = network.state_dict()
    problems = layout_problems(state, expected)
    if problems:
        raise CheckpointError(f"{path.name} is not in the {what} layout: " + "; ".join(problems))
    tensors = {name: state[name].to(ref.dtype).contiguous() for name, ref in expected.items()}
    network.load_state_dict(tensors, strict=True, assign=True)
    return network
