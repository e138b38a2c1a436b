"""Faces in: loading images safely, FFHQ alignment, and inversion to W+ (e4e, ReStyle or optimisation).

The package is lazy (:mod:`jojogan.op.lazy`): the dlib alignment (``jojogan.inversion.align``) runs in
processes that never touch a network (video tracking workers, Ray's alignment actors), and importing the
encoders here would load torch into each of them for nothing. The names below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jojogan.op.lazy import make_lazy

# public name -> the module that owns it
_EXPORTS = {
    "MIN_FACE_SIZE": "jojogan.inversion.align",
    "AlignedFace": "jojogan.inversion.align",
    "align_face": "jojogan.inversion.align",
    "align_faces": "jojogan.inversion.align",
    "landmark_model_path": "jojogan.inversion.align",
    "E4E_INPUT_SIZE": "jojogan.inversion.e4e",
    "E4EConfig": "jojogan.inversion.e4e",
    "E4EInverter": "jojogan.inversion.e4e",
    "Encoder4Editing": "jojogan.inversion.e4e",
    "load_e4e": "jojogan.inversion.e4e",
    "to_e4e_input": "jojogan.inversion.e4e",
    "CheckpointError": "jojogan.inversion.errors",
    "FaceNotFoundError": "jojogan.inversion.errors",
    "FaceTooSmallError": "jojogan.inversion.errors",
    "ImageError": "jojogan.inversion.errors",
    "JojoganError": "jojogan.inversion.errors",
    "DEFAULT_MAX_PIXELS": "jojogan.inversion.images",
    "ImageSource": "jojogan.inversion.images",
    "image_name": "jojogan.inversion.images",
    "load_image": "jojogan.inversion.images",
    "ProjectionResult": "jojogan.inversion.project",
    "project": "jojogan.inversion.project",
    "RestyleInverter": "jojogan.inversion.restyle",
    "load_restyle": "jojogan.inversion.restyle",
}

__all__ = sorted(_EXPORTS)

make_lazy(__name__, _EXPORTS)


if TYPE_CHECKING:  # static analysers see the eager imports; a test pins them to _EXPORTS
    from jojogan.inversion.align import (  # noqa: F401
        MIN_FACE_SIZE,
        AlignedFace,
        align_face,
        align_faces,
        landmark_model_path,
    )
    from jojogan.inversion.e4e import (  # noqa: F401
        E4E_INPUT_SIZE,
        E4EConfig,
        E4EInverter,
        Encoder4Editing,
        load_e4e,
        to_e4e_input,
    )
    from jojogan.inversion.errors import (  # noqa: F401
        CheckpointError,
        FaceNotFoundError,
        FaceTooSmallError,
        ImageError,
        JojoganError,
    )
    from jojogan.inversion.images import DEFAULT_MAX_PIXELS, ImageSource, image_name, load_image  # noqa: F401
    from jojogan.inversion.project import ProjectionResult, project  # noqa: F401
    from jojogan.inversion.restyle import RestyleInverter, load_restyle  # noqa: F401
