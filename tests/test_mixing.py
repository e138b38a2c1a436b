"""Style mixing in S space: presets equal the original W+ mixing, masks, reference codes, mean codes."""

from __future__ import annotations

import pytest
import torch

from jojogan.config import DEFAULT_SWAP_W_PLUS, PRESERVE_COLOR_SWAP_W_PLUS
from jojogan.mixing import (
    MeanLatentCache,
    layer_latents,
    layer_styles,
    mix_styles,
    reference_layer_latents,
    resolve_mask,
    swapped_layers,
    w_plus_swap_layers,
)
from jojogan.stylegan2.config import num_style_layers, style_layer_is_rgb, style_layer_resolution

from factories import TINY_STYLE_DIM, tiny_generator


def test_presets_are_the_official_s_layer_sets_at_1024():
    assert swapped_layers(resolve_mask("default", 1024)) == list(range(10, 26))
    assert swapped_layers(resolve_mask("preserve-color", 1024)) == [13, 14, 16, 17, 22, 23, 24, 25]
    assert swapped_layers(resolve_mask("preserve-colour", 1024)) == [13, 14, 16, 17, 22, 23, 24, 25]
    assert resolve_mask("default", 1024).shape == (26,)


def test_default_preset_clips_to_n_latent_at_256():
    # n_latent = 14 at 256 px: range(7, 18) means W+ 7…13, which feed S layers 10…19.
    assert swapped_layers(resolve_mask("default", 256)) == list(range(10, 20))
    assert w_plus_swap_layers([13], 256) == [19]  # the last to_rgb
    assert w_plus_swap_layers([11], 256) == [16, 17]  # a to_rgb and the next up-sampling conv


def _original_w_plus_mixing(generator, latents, swap, mix_strength, z, noise):
    """The original JoJoGAN code's mixing, written as it does it: on whole W+ entries."""
    mean_w = generator.get_latent(z).unsqueeze(1).repeat(1, generator.n_latent, 1)
    in_latent = latents.clone()
    in_latent[:, swap] = (1 - mix_strength) * latents[:, swap] + mix_strength * mean_w[:, swap]
    styles = generator.styles(in_latent)
    return styles, generator.synthesis(in_latent, noise)


@pytest.mark.parametrize("preset", ["default", "preserve-color"])
@pytest.mark.parametrize("mix_strength", [1.0, 0.35])
def test_preset_s_mixing_equals_original_w_plus_mixing(preset, mix_strength):
    size = 256
    gen = tiny_generator(size, seed=3).train()
    torch.manual_seed(11)
    latents = gen.to_w_plus(gen.get_latent(torch.randn(2, TINY_STYLE_DIM))).detach()
    latents = latents + 0.3 * torch.randn_like(latents)  # a real W+ code: entries differ
    z = torch.randn(2, TINY_STYLE_DIM)
    noise = gen.make_noise(2)
    official = DEFAULT_SWAP_W_PLUS if preset == "default" else PRESERVE_COLOR_SWAP_W_PLUS
    swap = [i for i in official if i < gen.n_latent]

    ref_styles, ref_image = _original_w_plus_mixing(gen, latents, swap, mix_strength, z, noise)
    ref_image.square().mean().backward()
    ref_grads = {name: p.grad.clone() for name, p in gen.named_parameters()}
    gen.zero_grad(set_to_none=True)

    styles = mix_styles(gen, layer_latents(latents, size), resolve_mask(preset, size), mix_strength, z)
    image = gen.synthesis_from_styles(styles, noise)
    image.square().mean().backward()

    assert len(styles) == len(ref_styles) == num_style_layers(size)
    for ours, theirs in zip(styles, ref_styles, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    torch.testing.assert_close(image, ref_image, rtol=0, atol=1e-5)
    # Same gradients for every generator parameter, mapping network and affine layers included.
    for name, param in gen.named_parameters():
        torch.testing.assert_close(param.grad, ref_grads[name], rtol=1e-4, atol=1e-7, msg=name)
    assert ref_grads["style.1.weight"].abs().sum() > 0


def test_mixing_keeps_and_replaces_the_right_layers():
    size = 64
    gen = tiny_generator(size)
    w_plus = torch.randn(3, gen.n_latent, TINY_STYLE_DIM)
    z = torch.randn(3, TINY_STYLE_DIM)
    keep = resolve_mask([2, 5, 11], size)
    reference = gen.styles(w_plus)
    randoms = gen.styles(gen.get_latent(z))
    with torch.no_grad():
        full = mix_styles(gen, layer_latents(w_plus, size), keep, 1.0, z)
        half = mix_styles(gen, layer_latents(w_plus, size), keep, 0.5, z)
        none = mix_styles(gen, layer_latents(w_plus, size), keep, 0.0, z)
    for k in range(gen.num_styles):
        expected = randoms[k] if k in (2, 5, 11) else reference[k]
        torch.testing.assert_close(full[k], expected, rtol=0, atol=1e-6)
        # The affine layers are linear, so mixing latents mixes the style codes.
        torch.testing.assert_close(half[k], 0.5 * (reference[k] + expected), rtol=0, atol=1e-5)
        assert torch.equal(none[k], reference[k].detach())


def test_layer_latents_and_layer_styles_reproduce_generator_styles():
    gen = tiny_generator(64)
    w_plus = torch.randn(2, gen.n_latent, TINY_STYLE_DIM)
    ours = layer_styles(gen, layer_latents(w_plus, 64))
    for a, b in zip(ours, gen.styles(w_plus), strict=True):
        assert torch.equal(a, b)


def test_groups_partition_the_layers():
    for size in (64, 256, 1024):
        structure = set(swapped_layers(resolve_mask("structure", size)))
        colour = set(swapped_layers(resolve_mask("colour", size)))
        assert structure.isdisjoint(colour)
        assert structure | colour == set(range(num_style_layers(size)))
        assert set(swapped_layers(resolve_mask("color", size))) == colour
        is_rgb = style_layer_is_rgb(size)
        resolution = style_layer_resolution(size)
        assert all(k in colour for k in range(len(is_rgb)) if is_rgb[k] or resolution[k] > 32)
    assert swapped_layers(resolve_mask("structure", 1024)) == [0, 2, 3, 5, 6, 8, 9]
    assert swapped_layers(resolve_mask("all", 64)) == list(range(14))
    assert swapped_layers(resolve_mask("none", 64)) == []


def test_mask_by_indices_resolutions_and_w_plus():
    assert swapped_layers(resolve_mask([0, 13, 4], 64)) == [0, 4, 13]
    # 64 px layers are 11, 12, 13; 8 px layers are 2, 3, 4.
    assert swapped_layers(resolve_mask({"resolutions": [64, 8]}, 64)) == [2, 3, 4, 11, 12, 13]
    assert swapped_layers(resolve_mask({"w_plus": [1]}, 64)) == [1, 2]
    assert swapped_layers(resolve_mask({"layers": [0], "resolutions": [4]}, 64)) == [0, 1]
    keep = torch.ones(14, dtype=torch.bool)
    keep[3] = False
    assert swapped_layers(resolve_mask(keep, 64)) == [3]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([14], r"\[0, 13\]"),
        ([-1], r"\[0, 13\]"),
        ({"resolutions": [48]}, "resolutions must be among"),
        ({"w_plus": [10]}, "W\\+ indices"),
        ({"colours": [1]}, "keys among"),
        ("sketchy", "must be one of"),
        ([True, False], "booleans are not indices"),
        (torch.ones(13, dtype=torch.bool), "needs 14 entries"),
        (torch.ones(14), "bool keep-mask"),
    ],
)
def test_bad_masks_are_refused_clearly(spec, message):
    with pytest.raises(ValueError, match=message):
        resolve_mask(spec, 64)


def test_mix_styles_validates_inputs():
    gen = tiny_generator(64)
    latents = layer_latents(torch.randn(2, gen.n_latent, TINY_STYLE_DIM), 64)
    keep = resolve_mask("default", 64)
    with pytest.raises(ValueError, match="mix_strength"):
        mix_styles(gen, latents, keep, 1.5, torch.randn(2, TINY_STYLE_DIM))
    with pytest.raises(ValueError, match="one per reference"):
        mix_styles(gen, latents, keep, 1.0, torch.randn(3, TINY_STYLE_DIM))
    with pytest.raises(ValueError, match="bool tensor"):
        mix_styles(gen, latents, keep[:-1], 1.0, torch.randn(2, TINY_STYLE_DIM))


def test_mean_latent_depends_on_the_seed_not_on_chunking():
    gen = tiny_generator(64)
    mean_w = gen.mean_latent(n=10_000, seed=5, batch=3000)[0]
    assert mean_w.shape == (TINY_STYLE_DIM,)
    # Chunking does not change the mean; the seed does.
    torch.testing.assert_close(gen.mean_latent(n=10_000, seed=5, batch=10_000)[0], mean_w, rtol=0, atol=1e-6)
    assert not torch.allclose(gen.mean_latent(n=10_000, seed=6)[0], mean_w, rtol=0, atol=1e-6)
    assert not mean_w.requires_grad


def test_mean_latent_cache_computes_once_per_key(monkeypatch):
    from jojogan.stylegan2.model import Generator

    calls = []
    real = Generator.mean_latent

    def counting(generator, n, seed, batch):
        calls.append((n, seed))
        return real(generator, n=n, seed=seed, batch=batch)

    monkeypatch.setattr(Generator, "mean_latent", counting)
    cache = MeanLatentCache(max_entries=2)
    gen = tiny_generator(64)
    first = cache.get("abc", gen, n=500)
    again = cache.get("abc", gen, n=500)
    assert torch.equal(first, again) and len(calls) == 1
    cache.get("def", gen, n=500)
    cache.get("ghi", gen, n=500)  # evicts "abc", the least recently used
    assert len(cache) == 2
    cache.get("abc", gen, n=500)
    assert len(calls) == 4


def test_reference_codes_invert_mean_and_blend():
    size = 64
    w_plus = torch.randn(2, 10, TINY_STYLE_DIM)
    mean = torch.randn(TINY_STYLE_DIM)
    inverted = reference_layer_latents(size, w_plus, "invert")
    assert torch.equal(inverted, layer_latents(w_plus, size))
    only_mean = reference_layer_latents(size, None, "mean", mean_latent=mean, batch=3)
    assert only_mean.shape == (3, 14, TINY_STYLE_DIM)
    assert torch.equal(only_mean, mean.expand(3, 14, -1))
    blend = reference_layer_latents(size, w_plus, "blend", mean_latent=mean, blend_mask="colour")
    colour = swapped_layers(resolve_mask("colour", size))
    for k in range(14):
        expected = mean.expand(2, -1) if k in colour else inverted[:, k]
        assert torch.equal(blend[:, k], expected)
    with pytest.raises(ValueError, match="needs mean_latent"):
        reference_layer_latents(size, w_plus, "blend")
    with pytest.raises(ValueError, match="needs the inverted"):
        reference_layer_latents(size, None, "invert")
