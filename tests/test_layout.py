"""The module names and shapes are the official checkpoints' contract (HOUSE_STYLE 4)."""

from __future__ import annotations

import pytest
import torch

from jojogan.stylegan2 import Discriminator, Generator

from conftest import shared_path


def read_layout(name: str) -> list[tuple[str, tuple[int, ...]]]:
    path = shared_path("reference", "checkpoint-layouts", name)
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            key, shape = line.split("\t")
            rows.append((key, tuple(int(v) for v in shape.strip("[]").split(",") if v.strip())))
    return rows


def layout_of(module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in module.state_dict().items()]


def test_generator_state_dict_matches_official_g_ema():
    expected = read_layout("stylegan2-ffhq-config-f.g_ema.tsv")
    assert len(expected) == 171
    assert layout_of(Generator(1024, 512, 8, 2)) == expected


def test_discriminator_state_dict_matches_official_d():
    expected = read_layout("stylegan2-ffhq-config-f.d.tsv")
    assert layout_of(Discriminator(1024, 2)) == expected


def test_full_generator_has_26_style_layers_reading_18_latents():
    gen = Generator(1024, 512, 8, 2)
    assert gen.num_styles == 26
    assert gen.n_latent == 18
    assert gen.style_latent_index[:5] == [0, 1, 1, 2, 3]
    assert gen.style_latent_index[-3:] == [15, 16, 17]
    assert len(gen.modulated_convs()) == 26


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_downsampling_conv_layer_equals_blur_then_strided_conv(kernel_size):
    """The 1×1 skip blurs at stride 2; the result is the blur-everything-then-stride definition."""
    from jojogan.op import upfirdn2d
    from jojogan.stylegan2.layers import ConvLayer

    torch.manual_seed(0)
    layer = ConvLayer(8, 16, kernel_size, downsample=True, bias=False, activate=False).double()
    x = torch.randn(2, 8, 32, 32, dtype=torch.float64, requires_grad=True)
    blur, conv = layer[0], layer[1]
    blurred = upfirdn2d(x, blur.kernel, pad=blur.pad)
    expected = torch.nn.functional.conv2d(blurred, conv.weight * conv.scale, stride=2)
    out = layer(x)
    assert out.shape == (2, 16, 16, 16)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    grad = torch.autograd.grad(out.square().sum(), x)[0]
    expected_grad = torch.autograd.grad(expected.square().sum(), x)[0]
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-12)
