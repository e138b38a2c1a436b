"""Autograd wiring for the CUDA kernels in ``csrc/`` (the extension module is passed in as ``ext``).

Both operators are linear in the tensor being differentiated (upfirdn2d in ``x``; the leaky-ReLU
gradient in ``grad_out``), so each backward is again one of our kernels, applied through an autograd
``Function`` so that double backward (needed by StyleGAN2's path-length and R1 penalties) is exact too.

**Gradient of upfirdn2d.** Per axis, with input length ``n``, output length ``m``, kernel length ``k``::

    y[j] = sum_i x[i] * kernel[k - 1 - pad0 + j * down - i * up]      (kernel taps outside [0, k) are 0)

so ``dL/dx[i] = sum_j g[j] * kernel[k - 1 - pad0 + j * down - i * up]``. Writing this as an upfirdn2d of
``g`` with up-sampling ``down``, down-sampling ``up`` and the flipped kernel ``kernel'[t] = kernel[k-1-t]``,
the definition ``z[i] = sum_j g[j] * kernel'[k - 1 - pad0' - j * down + i * up]`` matches when

    pad0' = k - 1 - pad0
    pad1' = (n - 1) * up + 1 - m * down + pad0

where ``pad1'`` is chosen so the result has exactly ``n`` samples: ``(m * down + pad0' + pad1' - k) // up + 1
= n``. (``pad1`` of the forward only sets its output length; values depend on ``pad0`` alone.) Applying
the same rule to the backward gives back a forward with the original ``pad0``, so second-order gradients
follow from the same ``Function``.
"""

from __future__ import annotations

from types import ModuleType

import torch


def upfirdn2d_adjoint(
    in_size: tuple[int, int],
    out_size: tuple[int, int],
    kernel_size: tuple[int, int],
    up: tuple[int, int],
    down: tuple[int, int],
    pad: tuple[int, int, int, int],
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int, int, int]]:
    """Parameters of the upfirdn2d (with flipped kernel) that computes the gradient w.r.t. the input.

    Args:
        in_size: forward input ``(height, width)``.
        out_size: forward output ``(height, width)``.
        kernel_size: ``(kh, kw)``.
        up: forward ``(up_x, up_y)``.
        down: forward ``(down_x, down_y)``.
        pad: forward ``(x0, x1, y0, y1)``.

    Returns:
        ``(up, down, pad)`` of the adjoint, in the same layouts; see the module docstring for the rule.
    """
    (in_h, in_w), (out_h, out_w), (kh, kw) = in_size, out_size, kernel_size
    (up_x, up_y), (down_x, down_y), (x0, _, y0, _) = up, down, pad
    pad_x = (kw - 1 - x0, (in_w - 1) * up_x + 1 - out_w * down_x + x0)
    pad_y = (kh - 1 - y0, (in_h - 1) * up_y + 1 - out_h * down_y + y0)
    return (down_x, down_y), (up_x, up_y), (*pad_x, *pad_y)


class _UpFirDn2d(torch.autograd.Function):
    """``upfirdn2d`` of ``x`` with a constant kernel; its backward is itself with adjoint parameters."""

    @staticmethod
    def forward(ctx, x, kernel, ext, up, down, pad):
        out = ext.upfirdn2d(x, kernel, up[0], up[1], down[0], down[1], pad[0], pad[1], pad[2], pad[3])
        ctx.save_for_backward(kernel)
        ctx.ext = ext
        ctx.adjoint = upfirdn2d_adjoint(
            tuple(x.shape[2:]), tuple(out.shape[2:]), tuple(kernel.shape), up, down, pad
        )
        return out

    @staticmethod
    def backward(ctx, grad_out):
        grad_x = None
        if ctx.needs_input_grad[0]:
            (kernel,) = ctx.saved_tensors
            up, down, pad = ctx.adjoint
            grad_x = _UpFirDn2d.apply(grad_out, kernel.flip([0, 1]), ctx.ext, up, down, pad)
        return grad_x, None, None, None, None, None


def upfirdn2d_cuda(
    ext: ModuleType,
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: tuple[int, int],
    down: tuple[int, int],
    pad: tuple[int, int, int, int],
) -> torch.Tensor:
    """``upfirdn2d`` through the compiled kernel, differentiable (to any order) in ``x``.

    Args:
        ext: the extension from ``jojogan.op._build.load_extension()``.
        x: ``[batch, channels, height, width]`` on a CUDA device.
        kernel: ``[kh, kw]``; cast to ``x``'s dtype and device as the reference does. The kernel gets no
            gradient here: StyleGAN2's FIR kernels are fixed buffers.
        up: ``(up_x, up_y)``.
        down: ``(down_x, down_y)``.
        pad: ``(x0, x1, y0, y1)``.

    Returns:
        ``[batch, channels, out_h, out_w]``, as ``upfirdn2d_ref``.

    Raises:
        NotImplementedError: the kernel requires a gradient while autograd is recording.
    """
    if kernel.requires_grad and torch.is_grad_enabled():
        raise NotImplementedError(
            "the CUDA upfirdn2d does not differentiate with respect to the kernel; pass a kernel that does "
            "not require grad, or use impl='ref'"
        )
    kernel = kernel.detach().to(dtype=x.dtype, device=x.device)
    return _UpFirDn2d.apply(x, kernel, ext, tuple(up), tuple(down), tuple(pad))


class _LeakyReLUGrad(torch.autograd.Function):
    """``grad_out * scale * (mask ? 1 : slope)``: linear in ``grad_out``, so its backward is itself."""

    @staticmethod
    def forward(ctx, grad_out, mask, ext, negative_slope, scale):
        ctx.save_for_backward(mask)
        ctx.ext = ext
        ctx.params = (negative_slope, scale)
        return ext.leaky_relu_grad(grad_out, mask, negative_slope, scale)

    @staticmethod
    def backward(ctx, grad_grad):
        grad = None
        if ctx.needs_input_grad[0]:
            (mask,) = ctx.saved_tensors
            grad = _LeakyReLUGrad.apply(grad_grad, mask, ctx.ext, *ctx.params)
        # The mask is piecewise constant in x and bias: no gradient flows to them (as in the reference).
        return grad, None, None, None, None


class _FusedBiasLeakyReLU(torch.autograd.Function):
    """``leaky_relu(x + bias[c]) * scale``; keeps only a bool mask of ``x + bias > 0`` for backward."""

    @staticmethod
    def forward(ctx, x, bias, ext, negative_slope, scale):
        needs_mask = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        out, mask = ext.fused_bias_leaky_relu(x, bias, negative_slope, scale, needs_mask)
        ctx.save_for_backward(mask)
        ctx.ext = ext
        ctx.params = (negative_slope, scale)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (mask,) = ctx.saved_tensors
        grad_x = _LeakyReLUGrad.apply(grad_out, mask, ctx.ext, *ctx.params)
        grad_bias = None
        if ctx.needs_input_grad[1]:
            # The bias is broadcast over every dimension but the channel one.
            grad_bias = grad_x.sum([0, *range(2, grad_x.ndim)])
        return (grad_x if ctx.needs_input_grad[0] else None), grad_bias, None, None, None


def fused_leaky_relu_cuda(
    ext: ModuleType,
    x: torch.Tensor,
    bias: torch.Tensor | None,
    negative_slope: float,
    scale: float,
) -> torch.Tensor:
    """Fused bias + leaky ReLU + gain through the compiled kernel, differentiable to any order.

    Args:
        ext: the extension from ``jojogan.op._build.load_extension()``.
        x: ``[batch, channels, ...]`` on a CUDA device.
        bias: ``[channels]`` or ``None``; cast to ``x``'s dtype as the reference does.
        negative_slope: slope for inputs ``<= 0`` (PyTorch's leaky_relu convention at exactly zero).
        scale: output gain.

    Returns:
        Same shape and dtype as ``x``.
    """
    if bias is not None:
        # A differentiable cast, so a float32 bias still gets a float32 gradient from half inputs.
        bias = bias.to(dtype=x.dtype)
    return _FusedBiasLeakyReLU.apply(x, bias, ext, float(negative_slope), float(scale))
