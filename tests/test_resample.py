"""``jojogan.op.resample``: the padding each resampling needs, checked from first principles in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from jojogan.op import make_kernel
from jojogan.op.resample import conv2d_resample, downsample2d, upsample2d

TAPS = (1, 3, 3, 1)


def _kernel(gain: float = 1.0) -> torch.Tensor:
    return (make_kernel(TAPS) * gain).double()


def test_sizes_and_constants_are_kept():
    """Up-sampling doubles the size, down-sampling halves it, and away from the zero-padded border a
    constant image stays the same constant (the kernel's gain is right and nothing is shifted out)."""
    x = torch.full((1, 2, 8, 8), 3.0, dtype=torch.float64)
    up = upsample2d(x, _kernel(4))
    down = downsample2d(x, _kernel())
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.full_like(up[..., 2:-2, 2:-2], 3.0))
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.full_like(down[..., 1:-1, 1:-1], 3.0))


def test_up_and_down_sampling_are_adjoint():
    """With a symmetric filter, down-sampling is the transpose of up-sampling (up to the gain 4): both
    centre the filter on the same half-pixel grid. A one-sample shift in either padding breaks this."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=gen)
    y = torch.randn(2, 3, 16, 16, dtype=torch.float64, generator=gen)
    left = (upsample2d(x, _kernel(4)) * y).sum()
    right = 4 * (x * downsample2d(y, _kernel())).sum()
    torch.testing.assert_close(left, right, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("conv_size", [1, 3])
def test_down_conv_is_the_filter_then_a_strided_conv(conv_size):
    """The 1×1 fast path (filter at stride 2) and the 3×3 path both equal filtering everything at full
    resolution, then a stride-2 conv over the filtered image padded to keep the size ratio exact."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 16, 16, dtype=torch.float64, generator=gen)
    weight = torch.randn(5, 4, conv_size, conv_size, dtype=torch.float64, generator=gen)
    bias = torch.randn(5, dtype=torch.float64, generator=gen)
    out = conv2d_resample(x, weight, _kernel(), down=2, bias=bias)
    # full-resolution filter with the same total padding (taps - 2) + (conv_size - 1), split low-first
    total = (len(TAPS) - 2) + (conv_size - 1)
    padded = F.pad(x, [(total + 1) // 2, total // 2] * 2)
    depthwise = _kernel().flip([0, 1]).expand(4, 1, 4, 4)
    expected = F.conv2d(F.conv2d(padded, depthwise, groups=4), weight, bias, stride=2)
    assert out.shape == (2, 5, 8, 8)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_up_conv_is_the_transposed_conv_then_the_filter():
    """Stride-2 transposed conv, then the filter, cropped to exactly twice the input size. With a 2-tap box
    filter the pads are zero: each output is the sum of a 2×2 window of the 11×11 transposed conv."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64, generator=gen)
    weight = torch.randn(2, 3, 3, 3, dtype=torch.float64, generator=gen)
    assert conv2d_resample(x, weight, _kernel(4), up=2).shape == (1, 2, 10, 10)
    box = (make_kernel((1, 1)) * 4).double()  # all ones: the smallest filter for factor 2
    plain = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
    assert plain.shape == (1, 2, 11, 11)
    windows = plain[..., :-1, :-1] + plain[..., 1:, :-1] + plain[..., :-1, 1:] + plain[..., 1:, 1:]
    torch.testing.assert_close(conv2d_resample(x, weight, box, up=2), windows, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="up=2 or down=2"):
        conv2d_resample(x, weight, _kernel(), up=2, down=2)
