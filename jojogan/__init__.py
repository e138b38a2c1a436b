"""jojogan: one-shot face stylization with JoJoGAN on StyleGAN2.

The one-call API is ``jojogan.stylize(image, style, alpha=...)`` and ``jojogan.finetune(references, ...)``;
for repeated work build a :class:`JoJoGAN` pipeline once. The stages live in the sub-modules
``jojogan.mixing``, ``jojogan.finetune``, ``jojogan.stylize`` and ``jojogan.style_file`` (import their
names with ``from jojogan.finetune import ...``: the package attributes ``jojogan.finetune`` and
``jojogan.stylize`` are the one-call functions).
"""

__version__ = "0.1.0"

from jojogan.api import (  # noqa: E402 - __version__ first: the API records it
    Face,
    FinetuneOutput,
    JoJoGAN,
    StylizeResult,
    finetune_style,
    pick_device,
    stylize,
)
from jojogan.config import FinetuneConfig  # noqa: E402
from jojogan.inversion.errors import (  # noqa: E402
    CheckpointError,
    FaceNotFoundError,
    FaceTooSmallError,
    ImageError,
    JojoganError,
)
from jojogan.style_file import StyleFile, load_style, save_style  # noqa: E402

finetune = finetune_style

__all__ = [
    "CheckpointError",
    "Face",
    "FaceNotFoundError",
    "FaceTooSmallError",
    "FinetuneConfig",
    "FinetuneOutput",
    "ImageError",
    "JoJoGAN",
    "JojoganError",
    "StyleFile",
    "StylizeResult",
    "__version__",
    "finetune",
    "load_style",
    "pick_device",
    "save_style",
    "stylize",
]
