"""Declarative shape checks for public entry points: ``check_shape(x, "batch 3 size size", size=256)``.

One helper instead of hand-written ``ndim``/``shape`` comparisons and their f-strings, so every entry point
refuses a badly shaped tensor with the same kind of message: what was expected, what came.
"""

from __future__ import annotations

import torch

__all__ = ["check_shape"]


def check_shape(x: object, spec: str, name: str = "tensor", **sizes: int) -> dict[str, int]:
    """Check that ``x`` is a tensor of the shape ``spec`` describes, and return the sizes its names took.

    ``spec`` lists the dimensions, separated by spaces: a number is that exact size, ``*`` any size, and
    a name any size, the same wherever the name appears; ``sizes`` pins names to sizes. For example
    ``check_shape(images, "batch 3 size size", "images", size=256)`` accepts ``[n, 3, 256, 256]``.

    Args:
        x: the value to check.
        spec: the expected dimensions.
        name: what ``x`` is, for the message.
        sizes: sizes of named dimensions.

    Returns:
        Every named dimension's size (the pinned ones included).

    Raises:
        ValueError: ``x`` is not a tensor, or its shape does not fit, e.g.
            ``images must have shape [batch, 3, 256, 256], got [2, 3, 64, 64]``.
    """
    dims = spec.split()
    expected = "[" + ", ".join(str(sizes.get(dim, dim)) for dim in dims) + "]"
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a tensor {expected}, got {type(x).__name__}")
    found = dict(sizes)
    fits = x.ndim == len(dims)
    for dim, size in zip(dims, x.shape, strict=False) if fits else ():
        if dim.isdigit():
            fits = size == int(dim)
        elif dim != "*":
            fits = found.setdefault(dim, int(size)) == size
        if not fits:
            break
    if not fits:
        raise ValueError(f"{name} must have shape {expected}, got {list(x.shape)}")
    return found
