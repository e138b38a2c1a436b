"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``), a 128-d embedder
that ships inside ``face_recognition_models``: it works offline from the first run. Metric only (dlib
has no gradients).

dlib aligns its own 150×150 chip from five landmarks (``compute_face_descriptor(image, shape)``), so the
FFHQ crop is given whole, at 256 px, with the landmarks found by dlib's five-point predictor
(``shape_predictor_5_face_landmarks.dat``, same package) inside a fixed box: in an FFHQ-aligned image the
face always lies in the same place, and a fixed box (rather than running the detector) keeps stylized
faces, which the HOG detector often misses, measurable. The box is where dlib's detector puts the faces
of FFHQ-aligned photos (:data:`FFHQ_FACE_BOX`).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from jojogan.identity.crops import check_images, resize
from jojogan.identity.recognizer import FaceRecognizer, check_embeddings
from jojogan.inversion.align import landmark_model_path

__all__ = ["DLIB_INPUT_SIZE", "DlibRecognizer", "FFHQ_FACE_BOX", "load_dlib_recognizer"]

DLIB_INPUT_SIZE = 256
"""Side the FFHQ crop is resized to before dlib extracts its chip (dlib's chip is 150 px)."""

FFHQ_FACE_BOX = (0.18, 0.283, 0.785, 0.889)
"""Face box (left, top, right, bottom) as fractions of an FFHQ crop, for dlib's landmark predictor.

Measured: the mean of the HOG detector's boxes on the two FFHQ-aligned test photos (256 px crops; both gave
left 0.18, right 0.785, tops 0.25/0.316, bottoms 0.855/0.922). The predictor only needs a box of about the
detector's size and place; the landmarks then decide dlib's chip."""

_RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
_FIVE_POINT_MODEL = "shape_predictor_5_face_landmarks.dat"


@functools.cache
def _dlib_models() -> tuple:
    """(five-point landmark predictor, recognition model), loaded on first use and shared."""
    import dlib

    folder = landmark_model_path().parent
    return (
        dlib.shape_predictor(str(folder / _FIVE_POINT_MODEL)),
        dlib.face_recognition_model_v1(str(folder / _RECOGNITION_MODEL)),
    )


class DlibRecognizer(FaceRecognizer):
    """dlib's ResNet behind the recognizer interface (``network`` is the ``face_recognition_model_v1``)."""

    name = "dlib"
    embedding_dim = 128
    differentiable = False

    def __init__(self):
        self._predictor, self.network = _dlib_models()

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """128-d descriptors of FFHQ-aligned faces ``[batch, 3, H, H]`` in [-1, 1]; no gradients."""
        import dlib

        check_images(images)
        with torch.no_grad():
            small = resize(images.detach().float().cpu(), DLIB_INPUT_SIZE)
            pixels = ((small.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        left, top, right, bottom = (round(v * DLIB_INPUT_SIZE) for v in FFHQ_FACE_BOX)
        box = dlib.rectangle(left, top, right, bottom)
        descriptors = []
        for image in pixels:
            image = np.ascontiguousarray(image)
            shape = self._predictor(image, box)
            descriptors.append(
                np.asarray(self.network.compute_face_descriptor(image, shape), dtype=np.float32)
            )
        embeddings = torch.from_numpy(np.stack(descriptors))
        return check_embeddings(embeddings, self.name).to(images.device)


def load_dlib_recognizer(device: str | torch.device = "cpu") -> DlibRecognizer:
    """dlib's recognizer (its models come with ``face_recognition_models``; ``device`` is ignored: dlib
    runs on the CPU here)."""
    return DlibRecognizer()
