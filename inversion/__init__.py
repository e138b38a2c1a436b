"""Faces in: loading images safely, FFHQ alignment, and inversion to W+ (e4e, ReStyle or optimisation)."""

from jojogan.inversion.align import MIN_FACE_SIZE, AlignedFace, align_face, align_faces, landmark_model_path
from jojogan.inversion.e4e import (
    E4E_INPUT_SIZE,
    E4EConfig,
    E4EInverter,
    Encoder4Editing,
    load_e4e,
    to_e4e_input,
)
from jojogan.inversion.errors import (
    CheckpointError,
    FaceNotFoundError,
    FaceTooSmallError,
    ImageError,
    JojoganError,
)
from jojogan.inversion.images import DEFAULT_MAX_PIXELS, ImageSource, image_name, load_image
from jojogan.inversion.project import ProjectionResult, project
from jojogan.inversion.restyle import RestyleInverter, load_restyle

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "E4E_INPUT_SIZE",
    "MIN_FACE_SIZE",
    "AlignedFace",
    "CheckpointError",
    "E4EConfig",
    "E4EInverter",
    "Encoder4Editing",
    "FaceNotFoundError",
    "FaceTooSmallError",
    "ImageError",
    "ImageSource",
    "JojoganError",
    "ProjectionResult",
    "RestyleInverter",
    "align_face",
    "align_faces",
    "image_name",
    "landmark_model_path",
    "load_e4e",
    "load_image",
    "load_restyle",
    "project",
    "to_e4e_input",
]
