"""Loading a face recognizer by name (:data:`~jojogan.identity.registry.RECOGNIZERS`, the table of
networks, their weights and rules) or from a weights file whose network is recognised from its contents."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from jojogan import weights
from jojogan.errors import CheckpointError
from jojogan.identity.arcface_ir_se import load_arcface_ir_se
from jojogan.identity.dlib_recognizer import load_dlib_recognizer
from jojogan.identity.errors import IdentityError
from jojogan.identity.iresnet import load_iresnet
from jojogan.identity.mobilefacenet import load_mobilefacenet
from jojogan.identity.onnx_recognizer import load_onnx_recognizer
from jojogan.identity.recognizer import FaceRecognizer, TorchRecognizer
from jojogan.identity.registry import (
    DEFAULT_LOSS_NETWORK,
    RECOGNIZERS,
    RecognizerInfo,
)
from jojogan.stylegan2.checkpoint import read_weights_file

__all__ = ["load_face_recognizer", "load_identity_loss_network"]


_Loader = Callable[..., FaceRecognizer]
_LOADERS: dict[str, _Loader] = {
    "arcface-ir-se50": load_arcface_ir_se,
    "arcface-iresnet": load_iresnet,
    "mobilefacenet": load_mobilefacenet,
}


def _family_of(state: dict, path: Path) -> str:
    """Which torch recognizer a state dict is, from its tensor names."""
    if "features.0.conv.0.0.weight" in state and "gdconv.depthwise.weight" in state:
        return "mobilefacenet"
    if "input_layer.0.weight" in state and "output_layer.3.weight" in state:
        return "arcface-ir-se50"
    if "layer1.0.bn1.weight" in state and "fc.weight" in state:
        return "arcface-iresnet"
    keys = ", ".join(list(state)[:5])
    raise CheckpointError(
        f"{path.name} is not a face recognizer this package knows (MobileFaceNet, ArcFace IR-SE, insightface "
        f"iresnet, or an .onnx file); its first tensors are: {keys}"
    )


def _weights_path(info: RecognizerInfo) -> Path:
    if info.weights is not None and info.weights in weights.REGISTRY:
        return weights.resolve_weights(info.weights, download=True)
    raise IdentityError(
        f"the {info.name} recognizer needs its weights file: pass its path (path=... in Python, "
        f"--identity-net PATH on the command line); it comes from {info.source}"
    )


def load_face_recognizer(
    name: str, path: str | Path | None = None, device: str | torch.device = "cpu"
) -> FaceRecognizer:
    """Load a face recognizer by name, from its official file.

    Args:
        name: one of :data:`RECOGNIZERS` (``"mobilefacenet"``, ``"dlib"``, ``"arcface-ir-se50"``,
            ``"arcface-iresnet"``, ``"arcface-w600k-r50"``), or the path of a weights file whose network
            is recognised from its contents (an ``.onnx`` file is taken for insightface's recognizer).
        path: the weights file; without it the weights registry (``jojogan.weights``) is asked.
        device: where the network runs.

    Returns:
        The recognizer; torch networks are frozen and in eval mode.

    Raises:
        IdentityError: unknown name, or no file for a network that needs one.
        MissingExtraError: the ONNX recognizer without onnxruntime.
        CheckpointError: the file is missing, unreadable, or in another layout (the message names the
            first differing keys).
    """
    if name not in RECOGNIZERS:
        candidate = Path(name).expanduser()
        if path is not None or not candidate.is_file():
            known = ", ".join(RECOGNIZERS)
            raise IdentityError(
                f"unknown identity network {name!r}: expected one of {known}, or a weights file"
            )
        if candidate.suffix.lower() == ".onnx":
            return load_onnx_recognizer(candidate, device)
        state = read_weights_file(candidate)
        return _LOADERS[_family_of(state, candidate)](candidate, device, state)
    if name == "dlib":
        return load_dlib_recognizer(device)
    file = Path(path).expanduser() if path is not None else _weights_path(RECOGNIZERS[name])
    if name == "arcface-w600k-r50":
        return load_onnx_recognizer(file, device, name)
    return _LOADERS[name](file, device)


def load_identity_loss_network(
    name: str = DEFAULT_LOSS_NETWORK, path: str | Path | None = None, device: str | torch.device = "cpu"
) -> TorchRecognizer:
    """A recognizer for the fine-tuning identity loss (``--identity-weight``): it must pass gradients.

    Pass its ``.embed`` as ``finetune(..., identity_net=...)``.

    Raises:
        IdentityError: the network is metric-only (dlib, ONNX); the message names the ones that work.
        CheckpointError, MissingExtraError: as :func:`load_face_recognizer`.
    """
    if name in RECOGNIZERS and not RECOGNIZERS[name].differentiable:
        usable = ", ".join(n for n, info in RECOGNIZERS.items() if info.differentiable)
        raise IdentityError(
            f"the {name} recognizer has no gradients, so it can measure identity but not train it; "
            f"the identity loss needs one of {usable}"
        )
    recognizer = load_face_recognizer(name, path, device)
    if not recognizer.differentiable:  # a path whose file turned out to be metric-only (.onnx)
        raise IdentityError(
            f"{name} holds the {recognizer.name} recognizer, which has no gradients; the identity loss needs "
            "a PyTorch network (mobilefacenet, arcface-ir-se50, arcface-iresnet)"
        )
    return recognizer
