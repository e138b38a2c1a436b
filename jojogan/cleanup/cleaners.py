"""The table of cleaners: every network that cleans a stylized face up, behind one protocol.

A cleaner is a class with its facts and three methods::

    class MyCleaner(Cleaner):
        name = "my-cleaner"            # what --cleanup and StylizeConfig.cleanup say
        weights = "my-weights-row"     # the weights-registry row of its file, or None

        def __init__(self, path, device): ...                     # load the file
        def clean(self, faces, fidelity): ...                     # [B, 3, S, S] in [-1, 1] -> same
        def restore(self, image, fidelity): ...                   # an aligned crop (PIL) -> PIL

and one line, :func:`register_cleaner`, puts it in :data:`CLEANERS`. The pipeline resolves the weights,
builds the cleaner once and keeps it; the front ends list :data:`CLEANERS` for their choices.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from torch import nn

# The network and its stages are imported where a cleaner is built or used: the settings and the front
# ends read this table (its names) in processes that never clean a face up, and torch costs them a
# CPU-second.

__all__ = ["CLEANERS", "Cleaner", "CodeFormerCleaner", "cleaner_names", "register_cleaner"]


class Cleaner:
    """Base of every cleaner: see the module's docstring for the protocol.

    Attributes:
        model: the network (moved by :meth:`to`).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    """How messages name it."""
    weights: ClassVar[str | None] = None
    model: nn.Module

    def clean(self, faces: torch.Tensor, fidelity: float) -> torch.Tensor:
        """Cleaned faces ``[B, 3, S, S]`` in [-1, 1] from stylized faces of the same shape."""
        raise NotImplementedError

    def restore(self, image: Image.Image, fidelity: float) -> Image.Image:
        """An aligned face crop restored before inversion (blurry, small or compressed photos)."""
        raise NotImplementedError

    def to(self, device: torch.device) -> Cleaner:
        self.model.to(device)
        return self


CLEANERS: dict[str, type[Cleaner]] = {}
"""Every cleaner by name (``None``/"none" on the command line: no cleanup)."""


def register_cleaner(cls: type[Cleaner]) -> type[Cleaner]:
    """Add a cleaner to :data:`CLEANERS` (usable as a class decorator)."""
    CLEANERS[cls.name] = cls
    return cls


def cleaner_names() -> tuple[str, ...]:
    """The choices of ``--cleanup`` besides "none"."""
    return tuple(CLEANERS)


@register_cleaner
class CodeFormerCleaner(Cleaner):
    """CodeFormer (Zhou et al. 2022): our own network code, the official weights (S-Lab, non-commercial)."""

    name = "codeformer"
    title = "CodeFormer"
    weights = "codeformer"

    def __init__(self, path: str | os.PathLike | None, device: torch.device):
        from jojogan.cleanup.checkpoint import load_codeformer

        self.model = load_codeformer(path, device=device)

    def clean(self, faces: torch.Tensor, fidelity: float) -> torch.Tensor:
        from jojogan.cleanup.restore import cleanup_face

        return cleanup_face(faces, self.model, fidelity)

    def restore(self, image: Image.Image, fidelity: float) -> Image.Image:
        from jojogan.cleanup.restore import restore_image

        return restore_image(image, self.model, fidelity)
