"""Face cleanup with CodeFormer: the network (our own code, official weights layout) and the stages.

``load_codeformer(path)`` reads the official ``codeformer.pth`` strictly and weights-only;
``cleanup_face(face, model, fidelity)`` restores generator-sized faces (resized to 512 px and back);
``restore_image`` does the same for an aligned face image (``--restore-input``). :data:`CLEANERS` is the
table of cleaners the pipeline and the front ends use (:mod:`jojogan.cleanup.cleaners`).
"""

from jojogan.cleanup.checkpoint import check_layout, codeformer_state_dict, load_codeformer
from jojogan.cleanup.cleaners import CLEANERS, Cleaner, CodeFormerCleaner, cleaner_names, register_cleaner
from jojogan.cleanup.network import (
    CodeFormer,
    CodeFormerConfig,
    CodeFormerInputError,
    adaptive_instance_norm,
)
from jojogan.cleanup.restore import (
    DEFAULT_FIDELITY,
    MIN_CLEANUP_SIZE,
    CleanupError,
    FaceTooSmallToRestoreError,
    cleanup_face,
    restore_image,
)

__all__ = [
    "CLEANERS",
    "Cleaner",
    "CodeFormerCleaner",
    "cleaner_names",
    "register_cleaner",
    "DEFAULT_FIDELITY",
    "MIN_CLEANUP_SIZE",
    "CleanupError",
    "CodeFormer",
    "CodeFormerConfig",
    "CodeFormerInputError",
    "FaceTooSmallToRestoreError",
    "adaptive_instance_norm",
    "check_layout",
    "cleanup_face",
    "codeformer_state_dict",
    "load_codeformer",
    "restore_image",
]
