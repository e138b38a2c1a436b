"""The module names and shapes are the official checkpoints' contract (HOUSE_STYLE 4)."""

from __future__ import annotations

import copy

import pytest
import torch

from jojogan.stylegan2 import Discriminator, Generator

from conftest import shared_path
from factories import tiny_generator


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
    from jojogan.op.resample import conv_down_padding
    from jojogan.stylegan2.layers import ConvLayer

    torch.manual_seed(0)
    layer = ConvLayer(8, 16, kernel_size, downsample=True, bias=False, activate=False).double()
    x = torch.randn(2, 8, 32, 32, dtype=torch.float64, requires_grad=True)
    blur, conv = layer[0], layer[1]
    blurred = upfirdn2d(x, blur.kernel, pad=conv_down_padding(4, kernel_size))
    expected = torch.nn.functional.conv2d(blurred, conv.weight * conv.scale, stride=2)
    out = layer(x)
    assert out.shape == (2, 16, 16, 16)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    grad = torch.autograd.grad(out.square().sum(), x)[0]
    expected_grad = torch.autograd.grad(expected.square().sum(), x)[0]
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-12)


def test_the_synthesis_plan_is_the_generator_it_builds():
    """Each plan row names a module of the generator, whose style, output and noise fit the row."""
    gen = tiny_generator(64)
    state = gen.state_dict()
    noise_shapes = [tuple(buf.shape[2:]) for buf in gen.noise_buffers()]
    assert [row.noise for row in gen.plan if not row.is_rgb] == list(range(len(noise_shapes)))
    x = gen.input(1)
    for k, (row, layer) in enumerate(zip(gen.plan, gen.synthesis_layers(), strict=True)):
        assert f"{row.module}.conv.weight" in state and layer.style == k
        assert layer.module.conv.modulation.weight.shape[0] == row.in_channels == x.shape[1]
        style = layer.module.conv.modulation(torch.randn(1, gen.style_dim))
        out = layer.module(x, style) if row.is_rgb else layer.module(x, style, None)
        assert out.shape[1:] == (row.out_channels, row.resolution, row.resolution)
        if not row.is_rgb:
            assert noise_shapes[row.noise] == (row.resolution, row.resolution)
            x = out
    twin = copy.deepcopy(gen)  # the layers are looked up once: a copy must use its own
    for row, layer in zip(twin.plan, twin.synthesis_layers(), strict=True):
        assert layer.module is twin.get_submodule(row.module)


def test_a_generator_is_rebuilt_from_its_config():
    from jojogan.stylegan2.config import GeneratorConfig

    gen = Generator(32, style_dim=8, n_mlp=3, channels={4: 8, 8: 6, 16: 4, 32: 4, 64: 2}, lr_mlp=0.02)
    config = gen.config
    assert config.channel_table == {4: 8, 8: 6, 16: 4, 32: 4}  # entries above the size are dropped
    assert GeneratorConfig.from_dict(config.to_dict()) == config
    again = Generator.from_config(config)
    assert again.config == config
    assert layout_of(again) == layout_of(gen)
    assert again.style[1].lr_mul == 0.02
    with pytest.raises(ValueError, match="no entry for resolutions \\[32\\]"):
        GeneratorConfig(32, channels={4: 8, 8: 8, 16: 8})
    with pytest.raises(ValueError, match="unknown generator configuration keys \\['depth'\\]"):
        GeneratorConfig.from_dict({**config.to_dict(), "depth": 3})
