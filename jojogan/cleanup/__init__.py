"""Face cleanup with CodeFormer: the network (our own code, official weights layout) and the stages.

``load_codeformer(path)`` reads the official ``codeformer.pth`` strictly and weights-only;
``cleanup_face(face, model, fidelity)`` restores generator-sized faces (resized to 512 px and back);
``restore_image`` does the same for an aligned face image (``--restore-input``). :data:`CLEANERS` is the
table of cleaners the pipeline and the front ends use (:mod:`jojogan.cleanup.cleaners`).

The package is lazy (:mod:`jojogan.op.lazy`): the settings and the front ends read the table of
cleaners in processes that never clean a face up, and the network would load torch into them. The names
below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jojogan.op.lazy import make_lazy

# public name -> the module that owns it
_EXPORTS = {
    "check_layout": "jojogan.cleanup.checkpoint",
    "codeformer_state_dict": "jojogan.cleanup.checkpoint",
    "load_codeformer": "jojogan.cleanup.checkpoint",
    "CLEANERS": "jojogan.cleanup.cleaners",
    "Cleaner": "jojogan.cleanup.cleaners",
    "CodeFormerCleaner": "jojogan.cleanup.cleaners",
    "cleaner_names": "jojogan.cleanup.cleaners",
    "register_cleaner": "jojogan.cleanup.cleaners",
    "CodeFormer": "jojogan.cleanup.network",
    "CodeFormerConfig": "jojogan.cleanup.network",
    "CodeFormerInputError": "jojogan.cleanup.network",
    "adaptive_instance_norm": "jojogan.cleanup.network",
    "DEFAULT_FIDELITY": "jojogan.cleanup.restore",
    "MIN_CLEANUP_SIZE": "jojogan.cleanup.restore",
    "CleanupError": "jojogan.cleanup.restore",
    "FaceTooSmallToRestoreError": "jojogan.cleanup.restore",
    "cleanup_face": "jojogan.cleanup.restore",
    "restore_image": "jojogan.cleanup.restore",
}

__all__ = sorted(_EXPORTS)

make_lazy(__name__, _EXPORTS)


if TYPE_CHECKING:  # static analysers see the eager imports; a test pins them to _EXPORTS
    from jojogan.cleanup.checkpoint import check_layout, codeformer_state_dict, load_codeformer  # noqa: F401
    from jojogan.cleanup.cleaners import (  # noqa: F401
        CLEANERS,
        Cleaner,
        CodeFormerCleaner,
        cleaner_names,
        register_cleaner,
    )
    from jojogan.cleanup.network import (  # noqa: F401
        CodeFormer,
        CodeFormerConfig,
        CodeFormerInputError,
        adaptive_instance_norm,
    )
    from jojogan.cleanup.restore import (  # noqa: F401
        DEFAULT_FIDELITY,
        MIN_CLEANUP_SIZE,
        CleanupError,
        FaceTooSmallToRestoreError,
        cleanup_face,
        restore_image,
    )
