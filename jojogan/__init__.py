"""jojogan: one-shot face stylization with JoJoGAN on StyleGAN2.

The one-call API is ``jojogan.stylize(image, style, alpha=...)`` and ``jojogan.finetune_style(references,
...)``; for repeated work build a :class:`JoJoGAN` pipeline once. The stages live in the sub-modules
``jojogan.mixing``, ``jojogan.finetune``, ``jojogan.stylization`` and ``jojogan.style_file``; no module
shares its name with a function of this package.

The top level is lazy (:mod:`jojogan.op.lazy`, as the sub-packages are): ``import jojogan.op`` or ``import
jojogan.errors`` loads only what they need, and the names below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jojogan.op.lazy import make_lazy

__version__ = "0.1.0"
"""The one owner of the version: ``pyproject.toml`` reads it from here (setuptools' dynamic version)."""

# public name -> the module that owns it
_EXPORTS = {
    "Face": "jojogan.api",
    "FinetuneOutput": "jojogan.api",
    "JoJoGAN": "jojogan.api",
    "StylizeResult": "jojogan.api",
    "finetune_style": "jojogan.api",
    "pick_device": "jojogan.api",
    "stylize": "jojogan.api",
    "FinetuneConfig": "jojogan.config",
    "StylizeConfig": "jojogan.config",
    "CheckpointError": "jojogan.errors",
    "JojoganError": "jojogan.errors",
    "FaceNotFoundError": "jojogan.inversion.errors",
    "FaceTooSmallError": "jojogan.inversion.errors",
    "ImageError": "jojogan.inversion.errors",
    "StyleFile": "jojogan.style_file",
    "load_style": "jojogan.style_file",
    "save_style": "jojogan.style_file",
}

__all__ = sorted([*_EXPORTS, "__version__"])


make_lazy(__name__, _EXPORTS)


if TYPE_CHECKING:  # static analysers see the eager imports; a test pins them to _EXPORTS
    from jojogan.api import Face, FinetuneOutput, JoJoGAN, StylizeResult, finetune_style, pick_device, stylize  # noqa: F401
    from jojogan.config import FinetuneConfig, StylizeConfig  # noqa: F401
    from jojogan.errors import CheckpointError, JojoganError  # noqa: F401
    from jojogan.inversion.errors import FaceNotFoundError, FaceTooSmallError, ImageError  # noqa: F401
    from jojogan.style_file import StyleFile, load_style, save_style  # noqa: F401
