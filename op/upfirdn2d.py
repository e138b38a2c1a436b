"""``upfirdn2d``: upsample by zero insertion, pad, convolve with a 2-D FIR kernel, downsample.

The reference here is the specification. For an input of length ``n`` along one axis the output has
length ``(n * up + pad0 + pad1 - k) // down + 1`` and equals

    y[j] = sum_t u[j * down + t - pad0] * kernel[k - 1 - t]

where ``u`` is ``x`` with ``up - 1`` zeros after every sample (a true convolution, so the kernel is
flipped relative to ``conv2d``). It never multiplies inserted zeros and never computes samples that
down-sampling would throw away: up-sampling runs as a strided transposed convolution, down-sampling as a
strided convolution. Both are built from differentiable PyTorch ops, so first- and second-order
gradients are exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from jojogan.op._dispatch import resolve


def make_kernel(kernel: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Normalised 2-D FIR kernel: a 1-D list becomes its outer product; the result sums to 1."""
    k = torch.as_tensor(kernel, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    if k.ndim != 2:
        raise ValueError(f"kernel must be 1-D or 2-D, got shape {tuple(k.shape)}")
    return k / k.sum()


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        pair = (value, value)
    else:
        pair = tuple(int(v) for v in value)
        if len(pair) != 2:
            raise ValueError(f"{name} must be an int or a pair (x, y), got {value!r}")
    if min(pair) < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return pair


def _pads(pad: Sequence[int]) -> tuple[int, int, int, int]:
    pad = tuple(int(p) for p in pad)
    if len(pad) == 2:
        return pad[0], pad[1], pad[0], pad[1]
    if len(pad) == 4:
        return pad
    raise ValueError(f"pad must be (pad0, pad1) or (x0, x1, y0, y1), got {pad!r}")


def _out_size(size: int, up: int, down: int, p0: int, p1: int, k: int) -> int:
    return (size * up + p0 + p1 - k) // down + 1


def upfirdn2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: int | Sequence[int] = 1,
    down: int | Sequence[int] = 1,
    pad: Sequence[int] = (0, 0),
    impl: str | None = None,
) -> torch.Tensor:
    """Upsample, FIR-filter and downsample a batch of images, channel by channel.

    Args:
        x: images ``[batch, channels, height, width]``.
        kernel: FIR filter ``[kh, kw]`` (applied as a true convolution).
        up: integer up-sampling factor, or ``(up_x, up_y)``.
        down: integer down-sampling factor, or ``(down_x, down_y)``.
        pad: ``(pad0, pad1)`` for both axes or ``(x0, x1, y0, y1)``; negative values crop. Padding is
            applied after up-sampling.
        impl: ``None`` (follow ``JOJOGAN_OPS``), ``"ref"`` or ``"cuda"``.

    Returns:
        ``[batch, channels, out_h, out_w]`` with ``out = (in * up + pad0 + pad1 - k) // down + 1``.
    """
    if x.ndim != 4:
        raise ValueError(
            f"upfirdn2d expects x of shape [batch, channels, height, width], got {tuple(x.shape)}"
        )
    if kernel.ndim != 2:
        raise ValueError(f"upfirdn2d expects a 2-D kernel, got shape {tuple(kernel.shape)}")
    up_x, up_y = _pair(up, "up")
    down_x, down_y = _pair(down, "down")
    x0, x1, y0, y1 = _pads(pad)
    out_h = _out_size(x.shape[2], up_y, down_y, y0, y1, kernel.shape[0])
    out_w = _out_size(x.shape[3], up_x, down_x, x0, x1, kernel.shape[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"upfirdn2d output would be empty ({out_h}x{out_w}) for input {tuple(x.shape)}, "
            f"kernel {tuple(kernel.shape)}, up={up}, down={down}, pad={pad}"
        )
    ext = resolve(impl, x)
    if ext is not None:
        from jojogan.op._cuda_autograd import upfirdn2d_cuda

        return upfirdn2d_cuda(ext, x, kernel, (up_x, up_y), (down_x, down_y), (x0, x1, y0, y1))
    return upfirdn2d_ref(x, kernel, (up_x, up_y), (down_x, down_y), (x0, x1, y0, y1))


def upfirdn2d_ref(
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: tuple[int, int],
    down: tuple[int, int],
    pad: tuple[int, int, int, int],
) -> torch.Tensor:
    """Pure-PyTorch ``upfirdn2d`` (see the module docstring for the definition)."""
    batch, channels, height, width = x.shape
    up_x, up_y = up
    down_x, down_y = down
    x0, x1, y0, y1 = pad
    kh, kw = kernel.shape
    kernel = kernel.to(dtype=x.dtype, device=x.device)

    if up_x == 1 and up_y == 1:
        # Pad (negative pads crop), then a strided depthwise cross-correlation with the flipped kernel:
        # the stride skips the samples down-sampling would discard. A grouped convolution over the
        # channels is several times faster on CPU than treating every channel as a batch item.
        weight = kernel.flip([0, 1]).view(1, 1, kh, kw).expand(channels, 1, kh, kw)
        if x0 == x1 >= 0 and y0 == y1 >= 0:
            # symmetric zero padding is the convolution's own: no padded copy of the input
            return F.conv2d(x, weight, stride=(down_y, down_x), padding=(y0, x0), groups=channels)
        return F.conv2d(F.pad(x, [x0, x1, y0, y1]), weight, stride=(down_y, down_x), groups=channels)

    # A transposed convolution with stride ``up`` is the convolution of the zero-stuffed signal,
    # computed from the real samples only. Its full output starts ``k - 1`` samples before the padded
    # signal does, so shift by ``pad0 - (k - 1)`` and pad/crop the end to the requested length.
    planes = x.reshape(batch * channels, 1, height, width)
    out = F.conv_transpose2d(planes, kernel.view(1, 1, kh, kw), stride=(up_y, up_x))
    out = F.pad(out, [x0 - (kw - 1), x1 + up_x - kw, y0 - (kh - 1), y1 + up_y - kh])
    if down_x > 1 or down_y > 1:
        out = out[:, :, ::down_y, ::down_x]
    return out.reshape(batch, channels, out.shape[2], out.shape[3])
