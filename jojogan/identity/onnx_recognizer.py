"""insightface's ONNX recognizer (``w600k_r50.onnx`` of the buffalo_l pack), run with onnxruntime.

The file is an iresnet50 trained on WebFace600K; insightface's ``ArcFaceONNX`` feeds it RGB 112×112 faces
aligned to the ArcFace template, scaled by ``(x - 127.5) / 127.5`` (its ``input_mean``/``input_std`` for
models without a leading normalisation node) — the [-1, 1] range used everywhere here. It is not
differentiable (onnxruntime has no autograd), so it serves the metric, never the loss. onnxruntime is an
optional extra: ``pip install "jojogan[onnx]"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from jojogan.errors import CheckpointError
from jojogan.identity.crops import RECOGNITION_SIZE, arcface_template_crop
from jojogan.identity.errors import MissingExtraError
from jojogan.identity.recognizer import FaceRecognizer, check_embeddings

__all__ = ["OnnxRecognizer", "load_onnx_recognizer"]


class OnnxRecognizer(FaceRecognizer):
    """A recognizer running an ONNX graph ``[batch, 3, 112, 112]`` in [-1, 1] → ``[batch, dim]``.

    Args:
        name: registry name.
        session: an ``onnxruntime.InferenceSession`` (kept as ``.network``).
    """

    differentiable = False

    def __init__(self, name: str, session):
        self.name = name
        self.network = session
        self._input = session.get_inputs()[0].name
        dim = session.get_outputs()[0].shape[-1]
        self.embedding_dim = dim if isinstance(dim, int) else 0  # 0: only known after a first run

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Embeddings of FFHQ-aligned faces ``[batch, 3, H, H]`` in [-1, 1]; no gradients."""
        with torch.no_grad():
            crops = arcface_template_crop(images.detach().float().cpu())
        out = self.network.run(None, {self._input: np.ascontiguousarray(crops.numpy())})[0]
        embeddings = torch.from_numpy(np.asarray(out, dtype=np.float32).reshape(len(images), -1))
        return check_embeddings(embeddings, self.name).to(images.device)


def load_onnx_recognizer(
    path: str | Path, device: str | torch.device = "cpu", name: str = "arcface-w600k-r50"
) -> OnnxRecognizer:
    """Open an insightface recognition ONNX file (``w600k_r50.onnx``).

    Args:
        path: the ``.onnx`` file.
        device: ``"cuda"`` runs on onnxruntime's CUDA provider when it is available, else the CPU one.
        name: registry name to report.

    Raises:
        MissingExtraError: onnxruntime is not installed.
        CheckpointError: the file is missing, not an ONNX model, or does not read ``[N, 3, 112, 112]``.
    """
    try:
        import onnxruntime
    except ImportError as error:
        raise MissingExtraError(f"the ONNX recognizer {name}", "onnxruntime", "onnx") from error
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ONNX recognizer file not found: {path}")
    available = onnxruntime.get_available_providers()
    providers = ["CPUExecutionProvider"]
    if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in available:
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = onnxruntime.InferenceSession(str(path), providers=providers)
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own exception types per failure
        raise CheckpointError(f"{path.name} is not a readable ONNX model ({error})") from error
    shape = session.get_inputs()[0].shape
    if len(shape) != 4 or list(shape[1:]) != [3, RECOGNITION_SIZE, RECOGNITION_SIZE]:
        raise CheckpointError(
            f"{path.name} is not a face recognizer in insightface's layout: it reads {shape}, expected "
            f"[N, 3, {RECOGNITION_SIZE}, {RECOGNITION_SIZE}]"
        )
    return OnnxRecognizer(name, session)
