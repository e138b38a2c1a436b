"""Tests for ``jojogan.op``: the PyTorch references as a spec, the dispatch policy, the lazy build, the
autograd wiring of the CUDA path (on CPU through a stand-in extension), and CUDA-vs-reference parity
when a GPU exists."""

from __future__ import annotations

import math
import random
import subprocess
import sys
import types
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

from jojogan.op import FusedLeakyReLU, _build, _dispatch, fused_leaky_relu, make_kernel, upfirdn2d
from jojogan.op._cuda_autograd import fused_leaky_relu_cuda, upfirdn2d_adjoint, upfirdn2d_cuda
from jojogan.op.fused_act import fused_leaky_relu_ref
from jojogan.op.upfirdn2d import upfirdn2d_ref

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# (kernel shape or 1-D taps, up, down, pad): StyleGAN2's blur/up/down settings plus awkward ones.
UPFIRDN_CASES = [
    ([1, 3, 3, 1], 2, 1, (2, 1)),  # StyleGAN2 up-sampling blur
    ([1, 3, 3, 1], 1, 2, (1, 1)),  # StyleGAN2 down-sampling blur
    ([1, 3, 3, 1], 1, 1, (2, 1)),  # blur after a transposed conv
    ((3, 2), 1, 1, (1, 0, 2, 1)),  # non-symmetric kernel, per-axis pads
    ((3, 3), 1, 1, (-1, 2, 0, -1)),  # negative pads crop
    ((2, 3), (2, 1), (1, 2), (1, 2, 0, 1)),  # per-axis up and down
    ((5, 4), 3, 2, (2, 2, 3, 1)),
    ((1, 1), 2, 2, (0, 0)),
]


def upfirdn2d_naive(
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: tuple[int, int],
    down: tuple[int, int],
    pad: tuple[int, int, int, int],
) -> torch.Tensor:
    """The definition written out literally (zero insertion, pad, full convolution, slice).

    Slow and wasteful on purpose: the test oracle of the efficient reference.
    """
    batch, channels, height, width = x.shape
    up_x, up_y = up
    down_x, down_y = down
    x0, x1, y0, y1 = pad
    kh, kw = kernel.shape
    stuffed = x.new_zeros(batch, channels, height * up_y, width * up_x)
    stuffed[:, :, ::up_y, ::up_x] = x
    padded = F.pad(stuffed, [x0, x1, y0, y1])
    weight = kernel.to(x).flip([0, 1]).view(1, 1, kh, kw).repeat(channels, 1, 1, 1)
    out = F.conv2d(padded, weight, groups=channels)
    return out[:, :, ::down_y, ::down_x]


def _case_kernel(spec, dtype=torch.float64) -> torch.Tensor:
    if isinstance(spec, list):
        return make_kernel(spec).to(dtype)
    return torch.randn(*spec, dtype=dtype)


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def _pad4(pad):
    return (pad[0], pad[1], pad[0], pad[1]) if len(pad) == 2 else tuple(pad)


def _away_from_zero(*shape, margin=0.1, dtype=torch.float64) -> torch.Tensor:
    """Random values with |v| >= margin, so finite differences never straddle the kink at 0."""
    sign = torch.where(torch.rand(*shape) < 0.5, -1.0, 1.0)
    return (sign * (margin + torch.rand(*shape))).to(dtype)


# --------------------------------------------------------------------------------------------------
# upfirdn2d reference as a spec
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kernel", "up", "down", "pad"), UPFIRDN_CASES)
def test_upfirdn2d_ref_gradcheck(kernel, up, down, pad):
    x = torch.randn(1, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    k = _case_kernel(kernel).requires_grad_(True)

    def fn(x_, k_):
        return upfirdn2d(x_, k_, up=up, down=down, pad=pad, impl="ref")

    assert gradcheck(fn, (x, k))
    assert gradgradcheck(fn, (x, k))


def test_upfirdn2d_ref_matches_naive_definition():
    rng = random.Random(0)
    checked = 0
    while checked < 60:
        up = (rng.randint(1, 3), rng.randint(1, 3))
        down = (rng.randint(1, 3), rng.randint(1, 3))
        kh, kw = rng.randint(1, 5), rng.randint(1, 5)
        h, w = rng.randint(2, 7), rng.randint(2, 7)
        pad = tuple(rng.randint(-2, 4) for _ in range(4))
        out_h = (h * up[1] + pad[2] + pad[3] - kh) // down[1] + 1
        out_w = (w * up[0] + pad[0] + pad[1] - kw) // down[0] + 1
        if out_h < 1 or out_w < 1:
            continue
        x = torch.randn(2, 3, h, w, dtype=torch.float64)
        k = torch.randn(kh, kw, dtype=torch.float64)
        ref = upfirdn2d_ref(x, k, up, down, pad)
        naive = upfirdn2d_naive(x, k, up, down, pad)
        assert ref.shape == (2, 3, out_h, out_w)
        torch.testing.assert_close(ref, naive, rtol=1e-12, atol=1e-12)
        checked += 1


def test_upfirdn2d_identity_kernel_returns_input():
    x = torch.randn(2, 3, 4, 5)
    one = torch.ones(1, 1)
    assert torch.equal(upfirdn2d(x, one), x)

    padded = upfirdn2d(x, one, pad=(1, 2, 3, 0))  # (x0, x1, y0, y1)
    assert padded.shape == (2, 3, 4 + 3, 5 + 1 + 2)
    assert torch.equal(padded[:, :, 3:, 1:6], x)
    border = padded.clone()
    border[:, :, 3:, 1:6] = 0
    assert torch.count_nonzero(border) == 0


def test_upfirdn2d_hand_computed_1d():
    # u = [1, 0, 2, 0, 3, 0] (up=2); y[j] = u[j - 1] * 2 + u[j] * 1 for kernel [1, 2] and pad0 = 1.
    x = torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 1, 3)
    kernel = torch.tensor([[1.0, 2.0]])
    out = upfirdn2d(x, kernel, up=(2, 1), pad=(1, 0, 0, 0))
    assert out.flatten().tolist() == [1.0, 2.0, 2.0, 4.0, 3.0, 6.0]
    # Keeping every other sample of that undoes the up-sampling here.
    down = upfirdn2d(x, kernel, up=(2, 1), down=(2, 1), pad=(1, 0, 0, 0))
    assert down.flatten().tolist() == [1.0, 2.0, 3.0]
    # The same along the height axis.
    column = upfirdn2d(x.transpose(2, 3), kernel.t(), up=(1, 2), pad=(0, 0, 1, 0))
    assert column.flatten().tolist() == [1.0, 2.0, 2.0, 4.0, 3.0, 6.0]


@pytest.mark.parametrize(
    ("size", "up", "down", "pad", "expected"),
    [
        (8, 2, 1, (2, 1), 16),  # StyleGAN2 up-sampling keeps the size exactly doubled
        (16, 1, 2, (1, 1), 8),  # and down-sampling halves it
        (10, 1, 1, (2, 1), 10),
        (7, 3, 2, (0, 0), 9),  # (21 - 4) // 2 + 1
        (5, 1, 1, (-1, -1), 0),  # 3 - 4 + 1 = 0 -> rejected below
    ],
)
def test_upfirdn2d_output_shape_formula(size, up, down, pad, expected):
    x = torch.randn(1, 1, size, size + 1)
    kernel = make_kernel([1, 3, 3, 1])
    if expected < 1:
        with pytest.raises(ValueError, match="empty"):
            upfirdn2d(x, kernel, up=up, down=down, pad=pad)
        return
    out = upfirdn2d(x, kernel, up=up, down=down, pad=pad)
    expected_w = ((size + 1) * up + sum(pad) - 4) // down + 1
    assert out.shape == (1, 1, expected, expected_w)


def test_make_kernel_normalises():
    k = make_kernel([1, 3, 3, 1])
    assert k.shape == (4, 4)
    assert math.isclose(k.sum().item(), 1.0, rel_tol=1e-6)
    torch.testing.assert_close(
        k, torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64
    )
    k2 = make_kernel([[1.0, 2.0], [3.0, 4.0]])
    torch.testing.assert_close(k2, torch.tensor([[0.1, 0.2], [0.3, 0.4]]))
    with pytest.raises(ValueError, match="1-D or 2-D"):
        make_kernel(torch.ones(2, 2, 2))


def test_upfirdn2d_validates_inputs():
    x = torch.randn(1, 1, 4, 4)
    k = make_kernel([1, 1])
    with pytest.raises(ValueError, match="pad"):
        upfirdn2d(x, k, pad=(1, 1, 1))
    with pytest.raises(ValueError, match="empty"):
        upfirdn2d(x, k, pad=(-3, -3))
    with pytest.raises(ValueError, match=r"\[batch, channels, height, width\]"):
        upfirdn2d(x[0], k)
    with pytest.raises(ValueError, match="2-D kernel"):
        upfirdn2d(x, torch.ones(3))
    with pytest.raises(ValueError, match="up must be >= 1"):
        upfirdn2d(x, k, up=0)
    with pytest.raises(ValueError, match="down must be an int or a pair"):
        upfirdn2d(x, k, down=(1, 2, 3))


# --------------------------------------------------------------------------------------------------
# fused_leaky_relu reference as a spec
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize(("slope", "scale"), [(0.2, 2**0.5), (0.0, 1.0), (0.5, 0.7)])
def test_fused_leaky_relu_ref_gradcheck(with_bias, slope, scale):
    pre = _away_from_zero(2, 3, 4, 5)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True) if with_bias else None
    # Choose x so that x + bias = pre stays away from the kink.
    x = (pre - bias.detach().view(1, 3, 1, 1) if with_bias else pre).requires_grad_(True)
    inputs = (x, bias) if with_bias else (x,)

    def fn(*args):
        return fused_leaky_relu(args[0], args[1] if with_bias else None, slope, scale, impl="ref")

    assert gradcheck(fn, inputs)
    assert gradgradcheck(fn, inputs)


def test_fused_leaky_relu_closed_form():
    a = torch.tensor([0.5, 1.5, 3.0])
    slope, scale = 0.2, 2**0.5
    torch.testing.assert_close(fused_leaky_relu(a, None, slope, scale), a * scale)
    torch.testing.assert_close(fused_leaky_relu(-a, None, slope, scale), -a * slope * scale)
    # The bias is added along dimension 1 before the activation: 2 - 3 = -1 -> -1 * 0.2 * sqrt(2).
    x = torch.full((1, 2, 3), 2.0)
    out = fused_leaky_relu(x, torch.tensor([1.0, -3.0]), slope, scale)
    torch.testing.assert_close(out[0, 0], torch.full((3,), 3.0 * scale))
    torch.testing.assert_close(out[0, 1], torch.full((3,), -slope * scale))
    # PyTorch's leaky_relu takes the negative-side slope at exactly zero; the reference inherits that.
    zero = torch.zeros(1, requires_grad=True)
    fused_leaky_relu(zero, None, slope, scale).sum().backward()
    assert zero.grad.item() == pytest.approx(slope * scale)


def test_fused_leaky_relu_module_and_validation():
    module = FusedLeakyReLU(4)
    assert [name for name, _ in module.named_parameters()] == ["bias"]
    assert module.bias.shape == (4,)
    with torch.no_grad():
        module.bias.copy_(torch.tensor([1.0, -1.0, 0.5, -2.0]))
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(module(x), fused_leaky_relu_ref(x, module.bias, 0.2, 2**0.5))
    assert "negative_slope=0.2" in repr(module)
    assert list(FusedLeakyReLU(4, bias=False).parameters()) == []
    with pytest.raises(ValueError, match=r"bias must have shape \[channels\] = \[4\]"):
        fused_leaky_relu(x, torch.zeros(3))


@pytest.mark.parametrize("with_bias", [True, False])
def test_fused_leaky_relu_inplace_only_when_no_gradient_flows(with_bias):
    bias = torch.randn(4) if with_bias else None
    x = torch.randn(2, 4, 5, 5)
    expected = fused_leaky_relu(x, bias)
    overwritten = x.clone()
    out = fused_leaky_relu(overwritten, bias, inplace=True)
    assert out.data_ptr() == overwritten.data_ptr()  # no new tensor
    assert torch.equal(out, expected)  # the same operations, the same bits
    needs_grad = x.clone().requires_grad_(True)
    out = fused_leaky_relu(needs_grad, bias, inplace=True)
    assert out.data_ptr() != needs_grad.data_ptr() and torch.equal(needs_grad.detach(), x)
    out.sum().backward()
    assert needs_grad.grad is not None


# --------------------------------------------------------------------------------------------------
# Dispatch policy
# --------------------------------------------------------------------------------------------------


class _FakeCuda(torch.Tensor):
    """A CPU tensor that claims to live on CUDA, to exercise the dispatch policy without a GPU."""

    @property
    def is_cuda(self):
        return True


@pytest.fixture
def fresh_dispatch(monkeypatch):
    monkeypatch.setattr(_dispatch, "_build_error", None)
    monkeypatch.setattr(_dispatch, "_warned", False)
    monkeypatch.delenv("JOJOGAN_OPS", raising=False)
    return monkeypatch


def _forbid_build(*_args, **_kwargs):
    pytest.fail("the CUDA build must not be attempted here")


def _failing_build():
    raise RuntimeError("no nvcc (test)")


def test_ops_mode_rejects_unknown_values(fresh_dispatch):
    assert _dispatch.ops_mode() == "auto"
    fresh_dispatch.setenv("JOJOGAN_OPS", " CUDA ")
    assert _dispatch.ops_mode() == "cuda"
    fresh_dispatch.setenv("JOJOGAN_OPS", "triton")
    with pytest.raises(ValueError, match="JOJOGAN_OPS must be one of"):
        _dispatch.ops_mode()


def test_ref_mode_never_builds(fresh_dispatch):
    fresh_dispatch.setattr(_build, "load_extension", _forbid_build)
    fresh_dispatch.setenv("JOJOGAN_OPS", "ref")
    fake = torch.randn(1, 2, 4, 4).as_subclass(_FakeCuda)
    assert _dispatch.resolve(None, fake) is None
    out = upfirdn2d(fake, make_kernel([1, 3, 3, 1]), up=2, pad=(2, 1))
    assert out.shape == (1, 2, 8, 8)
    fused_leaky_relu(fake, torch.zeros(2))
    assert _dispatch.active_impl("cuda") == ("ref", "JOJOGAN_OPS=ref")


def test_cpu_tensors_use_reference(fresh_dispatch):
    fresh_dispatch.setattr(_build, "load_extension", _forbid_build)
    for mode in ("auto", "cuda"):
        fresh_dispatch.setenv("JOJOGAN_OPS", mode)
        assert _dispatch.resolve(None, torch.zeros(1)) is None
    assert _dispatch.active_impl("cpu")[0] == "ref"
    with pytest.raises(ValueError, match="impl='cuda' needs a CUDA tensor"):
        upfirdn2d(torch.zeros(1, 1, 2, 2), torch.ones(1, 1), impl="cuda")
    with pytest.raises(ValueError, match="impl must be one of"):
        fused_leaky_relu(torch.zeros(2), impl="triton")
    # An explicit impl='ref' wins over the environment even for CUDA tensors.
    fresh_dispatch.setenv("JOJOGAN_OPS", "cuda")
    assert _dispatch.resolve("ref", torch.zeros(1).as_subclass(_FakeCuda)) is None


def test_auto_mode_warns_once_and_falls_back(fresh_dispatch):
    fresh_dispatch.setattr(_build, "load_extension", _failing_build)
    fake = torch.zeros(1).as_subclass(_FakeCuda)
    with pytest.warns(UserWarning, match="no nvcc"):
        assert _dispatch.resolve(None, fake) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second fallback must be silent
        assert _dispatch.resolve(None, fake) is None
    assert _dispatch.active_impl("cuda") == ("ref", "CUDA build failed earlier: RuntimeError: no nvcc (test)")


def test_cuda_mode_raises_on_build_failure(fresh_dispatch):
    fresh_dispatch.setattr(_build, "load_extension", _failing_build)
    fake = torch.zeros(1).as_subclass(_FakeCuda)
    fresh_dispatch.setenv("JOJOGAN_OPS", "cuda")
    with pytest.raises(RuntimeError, match="JOJOGAN_OPS=cuda but the CUDA ops could not be built"):
        _dispatch.resolve(None, fake)
    fresh_dispatch.setenv("JOJOGAN_OPS", "auto")
    with pytest.raises(RuntimeError, match="could not be built"):
        _dispatch.resolve("cuda", fake)


# --------------------------------------------------------------------------------------------------
# Autograd wiring of the CUDA path, on CPU through a stand-in extension built from the references
# --------------------------------------------------------------------------------------------------


class _StandInExtension:
    """Mimics the compiled module's three functions (same arguments) with the reference maths.

    It checks that the autograd wrappers call it with autograd off, so every gradient the tests see
    comes from the wrappers' own backward rules, exactly as with the real kernels.
    """

    def __init__(self):
        self.calls: list[tuple] = []

    def upfirdn2d(self, x, kernel, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1):
        assert not torch.is_grad_enabled()
        self.calls.append(("upfirdn2d", (up_x, up_y), (down_x, down_y)))
        return upfirdn2d_naive(x, kernel, (up_x, up_y), (down_x, down_y), (pad_x0, pad_x1, pad_y0, pad_y1))

    def fused_bias_leaky_relu(self, x, bias, negative_slope, scale, return_mask):
        assert not torch.is_grad_enabled()
        self.calls.append(("fused_bias_leaky_relu", return_mask))
        pre = x if bias is None else x + bias.view(1, -1, *([1] * (x.ndim - 2)))
        out = torch.where(pre > 0, pre, pre * negative_slope) * scale
        return out, (pre > 0 if return_mask else None)

    def leaky_relu_grad(self, grad_out, mask, negative_slope, scale):
        assert not torch.is_grad_enabled()
        self.calls.append(("leaky_relu_grad",))
        grad = grad_out * scale
        return torch.where(mask, grad, grad * negative_slope)


def test_upfirdn2d_adjoint_restores_input_size():
    rng = random.Random(3)
    for _ in range(200):
        up = (rng.randint(1, 4), rng.randint(1, 4))
        down = (rng.randint(1, 4), rng.randint(1, 4))
        kernel = (rng.randint(1, 6), rng.randint(1, 6))
        size = (rng.randint(1, 9), rng.randint(1, 9))
        pad = tuple(rng.randint(-3, 5) for _ in range(4))
        out = (
            (size[0] * up[1] + pad[2] + pad[3] - kernel[0]) // down[1] + 1,
            (size[1] * up[0] + pad[0] + pad[1] - kernel[1]) // down[0] + 1,
        )
        if min(out) < 1:
            continue
        a_up, a_down, a_pad = upfirdn2d_adjoint(size, out, kernel, up, down, pad)
        assert (a_up, a_down) == (down, up)
        assert a_pad[0] == kernel[1] - 1 - pad[0] and a_pad[2] == kernel[0] - 1 - pad[2]
        back_h = (out[0] * a_up[1] + a_pad[2] + a_pad[3] - kernel[0]) // a_down[1] + 1
        back_w = (out[1] * a_up[0] + a_pad[0] + a_pad[1] - kernel[1]) // a_down[0] + 1
        assert (back_h, back_w) == size


@pytest.mark.parametrize(("kernel", "up", "down", "pad"), UPFIRDN_CASES)
def test_upfirdn2d_cuda_wrapper_gradients_match_reference(kernel, up, down, pad):
    ext = _StandInExtension()
    up, down, pad = _pair(up), _pair(down), _pad4(pad)
    k = _case_kernel(kernel)

    def wrapped(x_):
        return upfirdn2d_cuda(ext, x_, k, up, down, pad)

    small = torch.randn(1, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    assert gradcheck(wrapped, (small,))
    assert gradgradcheck(wrapped, (small,))

    # First- and second-order gradients against autograd through the reference, on a larger batch.
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    out = wrapped(x)
    ref = upfirdn2d_ref(x, k, up, down, pad)
    torch.testing.assert_close(out, ref)
    upstream = torch.randn_like(ref, requires_grad=True)
    (grad,) = torch.autograd.grad(out, x, upstream, create_graph=True)
    (grad_ref,) = torch.autograd.grad(ref, x, upstream, create_graph=True)
    torch.testing.assert_close(grad, grad_ref)
    probe = torch.randn_like(grad)
    (gg,) = torch.autograd.grad((grad * probe).sum(), upstream)
    (gg_ref,) = torch.autograd.grad((grad_ref * probe).sum(), upstream)
    torch.testing.assert_close(gg, gg_ref)
    assert all(call[0] == "upfirdn2d" for call in ext.calls)
    # The backward ran the kernel with up and down swapped.
    assert ("upfirdn2d", down, up) in ext.calls


def test_upfirdn2d_cuda_wrapper_refuses_kernel_gradients():
    k = make_kernel([1, 2, 1]).requires_grad_(True)
    with pytest.raises(NotImplementedError, match="kernel"):
        upfirdn2d_cuda(_StandInExtension(), torch.randn(1, 1, 4, 4), k, (1, 1), (1, 1), (1, 1, 1, 1))
    with torch.no_grad():
        out = upfirdn2d_cuda(_StandInExtension(), torch.randn(1, 1, 4, 4), k, (1, 1), (1, 1), (1, 1, 1, 1))
    assert out.shape == (1, 1, 4, 4)


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize(("slope", "scale"), [(0.2, 2**0.5), (0.0, 1.0), (-0.3, 0.5)])
def test_fused_leaky_relu_cuda_wrapper_gradients_match_reference(with_bias, slope, scale):
    ext = _StandInExtension()
    pre = _away_from_zero(2, 3, 4)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True) if with_bias else None
    x = (pre - bias.detach().view(1, 3, 1) if with_bias else pre).requires_grad_(True)
    inputs = (x, bias) if with_bias else (x,)

    def wrapped(*args):
        return fused_leaky_relu_cuda(ext, args[0], args[1] if with_bias else None, slope, scale)

    assert gradcheck(wrapped, inputs)
    assert gradgradcheck(wrapped, inputs)

    out = wrapped(*inputs)
    ref = fused_leaky_relu_ref(x, bias, slope, scale)
    torch.testing.assert_close(out, ref)
    upstream = torch.randn_like(ref, requires_grad=True)
    grads = torch.autograd.grad(out, inputs, upstream, create_graph=True)
    grads_ref = torch.autograd.grad(ref, inputs, upstream, create_graph=True)
    for grad, grad_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(grad, grad_ref)
    # Second order: through grad_x and (when present) grad_bias back to the upstream gradient.
    weights = [torch.randn_like(g) for g in grads]
    (gg,) = torch.autograd.grad(sum((g * w).sum() for g, w in zip(grads, weights, strict=True)), upstream)
    (gg_ref,) = torch.autograd.grad(
        sum((g * w).sum() for g, w in zip(grads_ref, weights, strict=True)), upstream
    )
    torch.testing.assert_close(gg, gg_ref)
    if with_bias:
        # dL/dbias is dL/dx summed over every dimension but the channel one.
        torch.testing.assert_close(grads[1], grads[0].sum([0, 2]))


def test_fused_leaky_relu_cuda_wrapper_skips_mask_without_grad():
    ext = _StandInExtension()
    x = torch.randn(2, 3, 4)
    fused_leaky_relu_cuda(ext, x, torch.zeros(3), 0.2, 1.0)
    fused_leaky_relu_cuda(ext, x.requires_grad_(True), None, 0.2, 1.0)
    assert ext.calls == [("fused_bias_leaky_relu", False), ("fused_bias_leaky_relu", True)]


def test_dispatch_routes_cuda_tensors_to_the_extension(fresh_dispatch):
    ext = _StandInExtension()
    fresh_dispatch.setattr(_build, "load_extension", lambda: ext)
    x = torch.randn(1, 2, 4, 4).as_subclass(_FakeCuda)
    out = upfirdn2d(x, make_kernel([1, 3, 3, 1]), down=2, pad=(1, 1))
    torch.testing.assert_close(
        out.as_subclass(torch.Tensor),
        upfirdn2d_ref(x.as_subclass(torch.Tensor), make_kernel([1, 3, 3, 1]), (1, 1), (2, 2), (1, 1, 1, 1)),
    )
    fused_leaky_relu(x, torch.zeros(2))
    assert [call[0] for call in ext.calls] == ["upfirdn2d", "fused_bias_leaky_relu"]


# --------------------------------------------------------------------------------------------------
# Lazy build
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    monkeypatch.setattr(_build, "_module", None)
    monkeypatch.setattr(_build, "_error", None)
    monkeypatch.setenv("JOJOGAN_HOME", str(tmp_path / "cache"))
    return monkeypatch


def test_importing_ops_compiles_nothing():
    code = (
        "import sys, jojogan.op, jojogan.op.upfirdn2d, jojogan.op.fused_act; "
        "print('torch.utils.cpp_extension' in sys.modules, 'jojogan.op._build' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.split() == ["False", "False"]


def test_cache_location_and_is_cached(fresh_build, tmp_path):
    assert _build.cache_root() == tmp_path / "cache" / "ops"
    assert _build.build_dir() == tmp_path / "cache" / "ops" / _build.build_hash()[:16]
    assert _build.extension_name() == f"jojogan_ops_{_build.build_hash()[:16]}"
    assert not _build.is_cached()
    library = _build.library_path()
    assert library.parent == _build.build_dir()
    library.parent.mkdir(parents=True)
    library.write_bytes(b"")
    assert _build.is_cached()
    fresh_build.delenv("JOJOGAN_HOME")
    assert _build.cache_root() == _build.Path.home() / ".cache" / "jojogan" / "ops"


def test_build_hash_tracks_sources(fresh_build, tmp_path):
    assert len(_build.build_hash()) == 64
    assert _build.build_hash() == _build.build_hash()
    assert {path.name for path in _build.source_paths()} == {"ops.cpp", "upfirdn2d.cu", "fused_bias_act.cu"}
    assert all(path.is_file() for path in _build.source_paths())
    copy = tmp_path / "csrc"
    copy.mkdir()
    for path in _build.source_paths():
        (copy / path.name).write_bytes(path.read_bytes())
    original = _build.build_hash()
    fresh_build.setattr(_build, "CSRC", copy)
    assert _build.build_hash() == original
    (copy / "upfirdn2d.cu").write_bytes((copy / "upfirdn2d.cu").read_bytes() + b"\n// edited\n")
    assert _build.build_hash() != original


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure path of a machine without CUDA")
def test_load_extension_fails_fast_without_cuda(fresh_build):
    with pytest.raises(RuntimeError) as first:
        _build.load_extension()
    assert "CUDA" in str(first.value) and "\n" not in str(first.value)
    # The failure is memoised: the toolchain is not probed again.
    fresh_build.setattr(_build, "_check_toolchain", _forbid_build)
    with pytest.raises(RuntimeError) as second:
        _build.load_extension()
    assert str(second.value) == str(first.value)
    assert not _build.is_cached()


def test_compile_errors_are_summarised():
    log = RuntimeError(
        "Error building extension 'jojogan_ops_x': [1/3] nvcc -c upfirdn2d.cu\n"
        "FAILED: upfirdn2d.cuda.o\n"
        'upfirdn2d.cu(42): error: identifier "sum2" is undefined\n'
        "1 error detected\n"
    )
    assert _build._short_reason(log) == 'upfirdn2d.cu(42): error: identifier "sum2" is undefined'
    assert _build._short_reason(RuntimeError("ninja: build stopped\n")) == "ninja: build stopped"


# --------------------------------------------------------------------------------------------------
# CUDA kernels vs the reference (needs a GPU)
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def cuda_ext(monkeypatch):
    # cuDNN would run the reference's float32 convolutions in TF32 (10-bit mantissa) on Ampere and later.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    return _build.load_extension()


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("kernel", "up", "down", "pad"), UPFIRDN_CASES)
def test_cuda_upfirdn2d_parity(cuda_ext, dtype, kernel, up, down, pad):
    up, down, pad = _pair(up), _pair(down), _pad4(pad)
    k = _case_kernel(kernel, dtype).cuda()
    x = torch.randn(3, 4, 11, 9, dtype=dtype, device="cuda", requires_grad=True)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-10}

    out = upfirdn2d_cuda(cuda_ext, x, k, up, down, pad)
    ref = upfirdn2d_ref(x, k, up, down, pad)
    torch.testing.assert_close(out, ref, **tol)

    upstream = torch.randn_like(ref, requires_grad=True)
    (grad,) = torch.autograd.grad(out, x, upstream, create_graph=True)
    (grad_ref,) = torch.autograd.grad(ref, x, upstream, create_graph=True)
    torch.testing.assert_close(grad, grad_ref, **tol)

    probe = torch.randn_like(grad)
    (gg,) = torch.autograd.grad((grad * probe).sum(), upstream)
    (gg_ref,) = torch.autograd.grad((grad_ref * probe).sum(), upstream)
    torch.testing.assert_close(gg, gg_ref, **tol)


@needs_cuda
def test_cuda_upfirdn2d_half_and_non_contiguous(cuda_ext):
    k = make_kernel([1, 3, 3, 1]).cuda()
    x = torch.randn(2, 8, 16, 16, device="cuda").transpose(2, 3)  # non-contiguous view
    out = upfirdn2d_cuda(cuda_ext, x, k, (2, 2), (1, 1), (2, 1, 2, 1))
    torch.testing.assert_close(out, upfirdn2d_ref(x, k, (2, 2), (1, 1), (2, 1, 2, 1)), rtol=1e-5, atol=1e-5)
    half = upfirdn2d_cuda(cuda_ext, x.half(), k, (1, 1), (2, 2), (1, 1, 1, 1))
    assert half.dtype == torch.float16
    torch.testing.assert_close(
        half.float(), upfirdn2d_ref(x, k, (1, 1), (2, 2), (1, 1, 1, 1)), rtol=1e-2, atol=1e-2
    )


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_bias", [True, False])
def test_cuda_fused_leaky_relu_parity(cuda_ext, dtype, with_bias):
    x = torch.randn(4, 6, 5, 7, dtype=dtype, device="cuda")
    x[0, 0, 0, :3] = 0.0  # the kink itself: both must take the negative-side slope
    x.requires_grad_(True)
    bias = torch.randn(6, dtype=dtype, device="cuda", requires_grad=True) if with_bias else None
    if with_bias:
        with torch.no_grad():
            x[0, 1, 0, :3] = -bias[1]  # x + bias == 0 exactly
    inputs = (x, bias) if with_bias else (x,)
    tol = {"rtol": 1e-6, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}

    out = fused_leaky_relu_cuda(cuda_ext, x, bias, 0.2, 2**0.5)
    ref = fused_leaky_relu_ref(x, bias, 0.2, 2**0.5)
    torch.testing.assert_close(out, ref, **tol)

    upstream = torch.randn_like(ref, requires_grad=True)
    grads = torch.autograd.grad(out, inputs, upstream, create_graph=True)
    grads_ref = torch.autograd.grad(ref, inputs, upstream, create_graph=True)
    for grad, grad_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(grad, grad_ref, **tol)

    weights = [torch.randn_like(g) for g in grads]
    (gg,) = torch.autograd.grad(sum((g * w).sum() for g, w in zip(grads, weights, strict=True)), upstream)
    (gg_ref,) = torch.autograd.grad(
        sum((g * w).sum() for g, w in zip(grads_ref, weights, strict=True)), upstream
    )
    torch.testing.assert_close(gg, gg_ref, **tol)


@needs_cuda
def test_cuda_public_entry_points_use_the_extension(cuda_ext, monkeypatch):
    from jojogan.op import _cuda_autograd

    used = []

    def spy(name):
        real = getattr(_cuda_autograd, name)

        def wrapper(ext, *args):
            used.append((name, ext))
            return real(ext, *args)

        return wrapper

    for name in ("upfirdn2d_cuda", "fused_leaky_relu_cuda"):
        monkeypatch.setattr(_cuda_autograd, name, spy(name))
    monkeypatch.setenv("JOJOGAN_OPS", "cuda")
    x = torch.randn(2, 3, 8, 8, device="cuda")
    k = make_kernel([1, 3, 3, 1]).cuda()
    bias = torch.randn(3, device="cuda")
    torch.testing.assert_close(
        upfirdn2d(x, k, up=2, pad=(2, 1)), upfirdn2d(x, k, up=2, pad=(2, 1), impl="ref")
    )
    torch.testing.assert_close(fused_leaky_relu(x, bias), fused_leaky_relu(x, bias, impl="ref"))
    assert used == [("upfirdn2d_cuda", cuda_ext), ("fused_leaky_relu_cuda", cuda_ext)]
    assert _build.is_cached()
    assert _build.load_extension() is cuda_ext
    assert isinstance(cuda_ext, types.ModuleType)


def test_check_shape_names_what_was_expected_and_what_came():
    from jojogan.op import check_shape

    x = torch.zeros(2, 3, 8, 8)
    assert check_shape(x, "batch 3 size size") == {"batch": 2, "size": 8}
    assert check_shape(x, "* 3 h w", h=8) == {"h": 8, "w": 8}
    with pytest.raises(
        ValueError, match=r"^images must have shape \[batch, 3, 16, 16\], got \[2, 3, 8, 8\]$"
    ):
        check_shape(x, "batch 3 size size", "images", size=16)
    with pytest.raises(ValueError, match=r"\[batch, 3, side, side\], got \[2, 3, 8, 4\]"):
        check_shape(torch.zeros(2, 3, 8, 4), "batch 3 side side")  # one name, one size
    with pytest.raises(ValueError, match=r"\[batch, 4\], got \[2, 3, 8, 8\]"):
        check_shape(x, "batch 4")
    with pytest.raises(ValueError, match=r"^z must be a tensor \[batch, 16\], got list$"):
        check_shape([1.0], "batch style_dim", "z", style_dim=16)
