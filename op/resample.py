"""Resampling built on :func:`~jojogan.op.upfirdn2d.upfirdn2d`: the padding arithmetic and fast paths.

StyleGAN2 resamples in three places: the RGB skip path is up-sampled 2× with a FIR filter, a modulated
conv up-samples by a stride-2 transposed convolution followed by the filter, and a discriminator conv
down-samples by the filter followed by a stride-2 convolution. The padding that centres the filter in
each case is derived once here, so model code names the operation and never the pads.

Kernels are the layers' stored ``kernel`` buffers (official checkpoints keep them): normalised to sum to
one, already multiplied by ``factor ** 2`` when they follow up-sampling, which keeps the signal's mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from jojogan.op.upfirdn2d import upfirdn2d

__all__ = [
    "conv2d_resample",
    "conv_down_padding",
    "conv_up_padding",
    "downsample2d",
    "upsample2d",
    "upsample_padding",
]


def upsample_padding(taps: int, factor: int = 2) -> tuple[int, int]:
    """Pads of a ``taps``-tap filter after ``factor``× zero insertion, so output pixel ``i`` is centred on
    input ``i / factor`` and the output has exactly ``factor`` times the input's size."""
    p = taps - factor
    return (p + 1) // 2 + factor - 1, p // 2


def conv_up_padding(taps: int, conv_size: int, factor: int = 2) -> tuple[int, int]:
    """Pads of the filter that follows a stride-``factor`` transposed conv of size ``conv_size``.

    The transposed conv output is ``conv_size - 1`` samples longer than ``factor`` times its input; the
    pads crop that excess so the result is exactly ``factor`` times the input."""
    p = (taps - factor) - (conv_size - 1)
    return (p + 1) // 2 + factor - 1, p // 2 + 1


def conv_down_padding(taps: int, conv_size: int, factor: int = 2) -> tuple[int, int]:
    """Pads of the filter that precedes an unpadded stride-``factor`` conv of size ``conv_size``, so the
    result is exactly the input's size divided by ``factor``."""
    p = (taps - factor) + (conv_size - 1)
    return (p + 1) // 2, p // 2


def upsample2d(
    x: torch.Tensor, kernel: torch.Tensor, factor: int = 2, impl: str | None = None
) -> torch.Tensor:
    """FIR up-sampling ``[batch, channels, h, w]`` → ``[batch, channels, factor*h, factor*w]``.

    Args:
        x: images.
        kernel: 2-D filter ``[k, k]``, already scaled by ``factor ** 2``.
        factor: up-sampling factor.
        impl: passed to :func:`upfirdn2d`.
    """
    return upfirdn2d(x, kernel, up=factor, pad=upsample_padding(kernel.shape[0], factor), impl=impl)


def downsample2d(
    x: torch.Tensor, kernel: torch.Tensor, factor: int = 2, impl: str | None = None
) -> torch.Tensor:
    """FIR down-sampling ``[batch, channels, h, w]`` → ``[batch, channels, h/factor, w/factor]``.

    Filtering and decimation are one strided pass: samples that decimation drops are never computed.

    Args:
        x: images.
        kernel: 2-D filter ``[k, k]`` (sums to one).
        factor: down-sampling factor.
        impl: passed to :func:`upfirdn2d`.
    """
    return upfirdn2d(x, kernel, down=factor, pad=conv_down_padding(kernel.shape[0], 1, factor), impl=impl)


def conv2d_resample(
    x: torch.Tensor,
    weight: torch.Tensor,
    kernel: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    bias: torch.Tensor | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """A same-size, 2× up-sampling or 2× down-sampling convolution with FIR anti-aliasing.

    * ``up=2``: stride-2 transposed conv, then the filter (StyleGAN2's up-sampling modulated conv).
    * ``down=2``: the filter, then a stride-2 conv (the discriminator). A 1×1 conv reads only every
      other filtered sample, so the filter itself runs at stride 2 instead of filtering at full
      resolution and dropping three quarters of it.
    * neither: a conv with ``conv_size // 2`` zero padding.

    Args:
        x: ``[batch, in, h, w]``.
        weight: the (already scaled) weight ``[out, in, k, k]``.
        kernel: the FIR filter ``[t, t]`` (scaled by 4 for ``up=2``); needed when resampling.
        up, down: 1 or 2 (not both 2).
        bias: ``[out]`` added to the result, or ``None``.
        impl: passed to :func:`upfirdn2d`.

    Returns:
        ``[batch, out, h * up / down, w * up / down]``.
    """
    if up not in (1, 2) or down not in (1, 2) or up * down == 4:
        raise ValueError(f"conv2d_resample supports up=2 or down=2 (or neither), got up={up}, down={down}")
    conv_size = weight.shape[-1]
    if up == 1 and down == 1:
        return F.conv2d(x, weight, bias, padding=conv_size // 2)
    if kernel is None:
        raise ValueError("resampling needs the FIR kernel")
    if up == 2:
        out = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        out = upfirdn2d(out, kernel, pad=conv_up_padding(kernel.shape[0], conv_size), impl=impl)
        return out if bias is None else out + bias.view(1, -1, 1, 1)
    if conv_size == 1:
        return F.conv2d(downsample2d(x, kernel, impl=impl), weight, bias)
    x = upfirdn2d(x, kernel, pad=conv_down_padding(kernel.shape[0], conv_size), impl=impl)
    return F.conv2d(x, weight, bias, stride=2)
