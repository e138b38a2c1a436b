"""Fused bias + leaky ReLU + gain, StyleGAN2's activation.

``fused_leaky_relu(x, b) = leaky_relu(x + b, negative_slope) * scale`` with the bias broadcast along
dimension 1. The reference below is the specification; the CUDA kernel fuses the three steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from jojogan.op._dispatch import resolve


def fused_leaky_relu(
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    negative_slope: float = 0.2,
    scale: float = 2**0.5,
    impl: str | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """Add a per-channel bias, apply leaky ReLU and multiply by ``scale``.

    Args:
        x: input ``[batch, channels, ...]`` (any number of trailing dimensions, including none).
        bias: ``[channels]`` or ``None``.
        negative_slope: slope for negative inputs.
        scale: output gain (``sqrt(2)`` keeps the variance of a unit Gaussian).
        impl: ``None`` (follow ``JOJOGAN_OPS``), ``"ref"`` or ``"cuda"``.
        inplace: allow the reference to overwrite ``x`` and return it, when no gradient flows through
            ``x`` (a permission, not a promise: the CUDA kernel always writes a new tensor). Same values.
    """
    if bias is not None:
        if x.ndim < 2 or bias.ndim != 1 or bias.shape[0] != x.shape[1]:
            raise ValueError(
                f"bias must have shape [channels] = [{x.shape[1] if x.ndim > 1 else '?'}], "
                f"got {tuple(bias.shape)} for x of shape {tuple(x.shape)}"
            )
    ext = resolve(impl, x)
    if ext is not None:
        from jojogan.op._cuda_autograd import fused_leaky_relu_cuda

        return fused_leaky_relu_cuda(ext, x, bias, negative_slope, scale)
    if inplace and not (torch.is_grad_enabled() and x.requires_grad):
        return fused_leaky_relu_ref_(x, bias, negative_slope, scale)
    return fused_leaky_relu_ref(x, bias, negative_slope, scale)


def fused_leaky_relu_ref(
    x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float, scale: float
) -> torch.Tensor:
    """Pure-PyTorch reference."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2))).to(x.dtype)
    return F.leaky_relu(x, negative_slope) * scale


def fused_leaky_relu_ref_(
    x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float, scale: float
) -> torch.Tensor:
    """In-place form of :func:`fused_leaky_relu_ref`: the same operations in the same order, in ``x``."""
    if bias is not None:
        x.add_(bias.view(1, -1, *([1] * (x.ndim - 2))).to(x.dtype))
    return F.leaky_relu_(x, negative_slope).mul_(scale)


class FusedLeakyReLU(nn.Module):
    """Learned per-channel bias followed by scaled leaky ReLU (parameter name ``bias``)."""

    def __init__(self, channels: int, bias: bool = True, negative_slope: float = 0.2, scale: float = 2**0.5):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale, inplace=inplace)

    def extra_repr(self) -> str:
        channels = self.bias.shape[0] if self.bias is not None else "no bias"
        return f"{channels}, negative_slope={self.negative_slope}, scale={self.scale:.4f}"
