"""Alpha feature interpolation: exact endpoints, in-between behaviour, per-layer alpha, random samples."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from jojogan.imaging import from_pil, to_pil
from jojogan.stylization import alpha_coefficients, sample_styled, stylize_latents

from factories import TINY_STYLE_DIM, tiny_generator


def _pair(scale: float = 0.2):
    original = tiny_generator(64, seed=0)
    finetuned = copy.deepcopy(original)
    gen = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for param in finetuned.parameters():
            param.add_(scale * torch.randn(param.shape, generator=gen))
    return original, finetuned


def _w_plus(original, batch=2):
    return original.to_w_plus(original.get_latent(torch.randn(batch, TINY_STYLE_DIM))).detach()


def test_alpha_endpoints_are_exact():
    original, finetuned = _pair()
    w_plus = _w_plus(original)
    noise = original.make_noise(2)
    with torch.no_grad():
        plain = original.synthesis(w_plus, noise)
        styled = finetuned.synthesis(w_plus, noise)
    assert torch.equal(stylize_latents(original, finetuned, w_plus, alpha=0.0, noise=noise), plain)
    assert torch.equal(stylize_latents(original, finetuned, w_plus, alpha=1.0, noise=noise), styled)
    # Stored noise buffers by default.
    with torch.no_grad():
        assert torch.equal(stylize_latents(original, finetuned, w_plus, alpha=1), finetuned.synthesis(w_plus))
    assert not torch.allclose(plain, styled, atol=1e-3)


def test_alpha_in_between_differs_from_both_ends():
    original, finetuned = _pair()
    w_plus = _w_plus(original)
    ends = [stylize_latents(original, finetuned, w_plus, alpha=a) for a in (0.0, 1.0)]
    middle = stylize_latents(original, finetuned, w_plus, alpha=0.5)
    for end in ends:
        assert (middle - end).abs().mean() > 0.1 * (ends[1] - ends[0]).abs().mean()


def test_small_weight_changes_interpolate_almost_linearly():
    # For fine-tuned weights close to the original, blending features is a first-order blend of images
    # (up to the few activations whose leaky-ReLU kink lies between the two generators' values).
    original, finetuned = _pair(scale=1e-4)
    w_plus = _w_plus(original)
    start = stylize_latents(original, finetuned, w_plus, alpha=0.0)
    end = stylize_latents(original, finetuned, w_plus, alpha=1.0)
    for alpha in (0.25, 0.5, 0.75):
        blended = stylize_latents(original, finetuned, w_plus, alpha=alpha)
        linear = (1 - alpha) * start + alpha * end
        assert (blended - linear).abs().mean() < 0.005 * (end - start).abs().mean()


def test_per_layer_alpha():
    original, finetuned = _pair()
    w_plus = _w_plus(original)
    count = original.num_styles
    for value in (0.0, 1.0, 0.3):
        assert torch.equal(
            stylize_latents(original, finetuned, w_plus, alpha=[value] * count),
            stylize_latents(original, finetuned, w_plus, alpha=value),
        )
    # Only the last to_rgb from the fine-tuned model: close to the original, but not equal.
    only_last = stylize_latents(original, finetuned, w_plus, alpha=[0.0] * (count - 1) + [1.0])
    plain = stylize_latents(original, finetuned, w_plus, alpha=0.0)
    styled = stylize_latents(original, finetuned, w_plus, alpha=1.0)
    assert not torch.equal(only_last, plain)
    assert (only_last - plain).abs().mean() < (styled - plain).abs().mean()


@pytest.mark.parametrize(
    ("alpha", "message"),
    [
        (1.5, r"\[0, 1\]"),
        (-0.1, r"\[0, 1\]"),
        ([0.5] * 3, "needs 14 values"),
        ([0.5] * 13 + [2.0], r"\[0, 1\]"),
    ],
)
def test_bad_alpha_is_refused(alpha, message):
    original, finetuned = _pair()
    with pytest.raises(ValueError, match=message):
        stylize_latents(original, finetuned, _w_plus(original), alpha=alpha)


def test_mismatched_generators_are_refused():
    original, _ = _pair()
    other = tiny_generator(32)
    with pytest.raises(ValueError, match="does not match the original"):
        stylize_latents(original, other, _w_plus(original))


def test_alpha_coefficients():
    assert alpha_coefficients(0.25, 3) == [[0.75, 0.25]] * 3
    assert alpha_coefficients([0.0, 1.0], 2) == [[1.0, 0.0], [0.0, 1.0]]


def test_samples_follow_the_original_notebook():
    original, finetuned = _pair()
    latent_avg = torch.randn(TINY_STYLE_DIM)
    plain, styled = sample_styled(
        original, finetuned, 3, truncation=0.7, latent_avg=latent_avg, seed=4, batch=2
    )
    assert plain.shape == styled.shape == (3, 3, 64, 64)
    z = torch.randn(3, TINY_STYLE_DIM, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected_plain = original(z, truncation=0.7, truncation_latent=latent_avg)
        expected_styled = finetuned(z, truncation=0.7, truncation_latent=latent_avg)
    # Batches of 2 and 1 against one batch of 3: equal up to float rounding.
    torch.testing.assert_close(plain, expected_plain, rtol=0, atol=1e-5)
    torch.testing.assert_close(styled, expected_styled, rtol=0, atol=1e-5)
    again = sample_styled(original, finetuned, 3, truncation=0.7, latent_avg=latent_avg, seed=4, batch=2)
    assert torch.equal(again[1], styled)
    at_zero = sample_styled(original, finetuned, 3, truncation=0.7, latent_avg=latent_avg, seed=4, alpha=0.0)
    assert torch.equal(at_zero[1], at_zero[0])


def test_samples_default_to_the_mean_latent():
    original, finetuned = _pair()
    ours = sample_styled(original, finetuned, 2, truncation=0.0, seed=1)
    with torch.no_grad():
        centre = original.mean_latent()
        expected = original.synthesis(original.to_w_plus(centre.expand(2, -1)))
    # Truncation 0 puts every sample on the truncation centre.
    torch.testing.assert_close(ours[0], expected, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="truncation"):
        sample_styled(original, finetuned, 2, truncation=1.5)


def test_pil_round_trip():
    pixels = torch.randint(0, 256, (8, 6, 3), dtype=torch.uint8)
    image = Image.fromarray(pixels.numpy())
    tensor = from_pil(image)
    assert tensor.shape == (1, 3, 8, 6) and tensor.min() >= -1 and tensor.max() <= 1
    assert torch.equal(torch.from_numpy(np.array(to_pil(tensor))), pixels)
    assert to_pil(torch.full((3, 2, 2), 5.0)).getpixel((0, 0)) == (255, 255, 255)
    assert from_pil(image, size=4).shape == (1, 3, 4, 4)
    with pytest.raises(ValueError, match="one image"):
        to_pil(torch.zeros(2, 3, 4, 4))


@pytest.mark.parametrize("batch", [1, 3])
def test_inference_runs_in_place_with_the_same_values_as_training(batch):
    """Without gradients the layers overwrite their own outputs; the arithmetic must not change."""
    from jojogan.stylization import synthesize_blend

    original, finetuned = _pair()
    w_plus = _w_plus(original, batch)
    noise = original.make_noise(batch)
    noise_before = [n.clone() for n in noise]
    original.requires_grad_(True)
    finetuned.requires_grad_(True)
    styles = [gen.styles(w_plus) for gen in (original, finetuned)]
    coefficients = [[0.3, 0.7]] * original.num_styles
    trained = synthesize_blend([original, finetuned], styles, coefficients, noise)
    assert trained.requires_grad  # the out-of-place path
    with torch.no_grad():
        inferred = synthesize_blend(
            [original, finetuned], [[s.detach() for s in g] for g in styles], coefficients, noise
        )
        plain = original.synthesis(w_plus, noise)
    assert torch.equal(inferred, trained.detach())
    assert torch.equal(plain, original.synthesis(w_plus, noise).detach())
    assert all(torch.equal(n, m) for n, m in zip(noise, noise_before, strict=True))  # inputs untouched
