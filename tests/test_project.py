"""Optimisation inversion (``jojogan.inversion.project``) on tiny seeded models and the 256 px fixture."""

from __future__ import annotations

import importlib
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from jojogan.errors import JojoganError
from jojogan.inversion.project import (
    ProjectionResult,
    noise_regularization,
    normalize_noise_,
    project,
    projection_lr,
)
from jojogan.stylegan2 import load_checkpoint
from jojogan.stylegan2.model import Discriminator, Generator

TINY_CHANNELS = {4: 16, 8: 16, 16: 8, 32: 8}


@pytest.fixture
def models() -> tuple[Generator, Discriminator]:
    torch.manual_seed(0)
    gen = Generator(32, style_dim=16, n_mlp=2, channels=TINY_CHANNELS).eval()
    disc = Discriminator(32, channels=TINY_CHANNELS).eval()
    return gen, disc


def _known_target(gen: Generator, batch: int = 2) -> torch.Tensor:
    """An image the generator itself draws from a W+ code away from the mean, clamped to [-1, 1]."""
    rng = torch.Generator().manual_seed(1)
    with torch.no_grad():
        w = gen.get_latent(torch.randn(batch, gen.style_dim, generator=rng))
        w_plus = gen.to_w_plus(w) + 0.3 * w.std() * torch.randn(
            batch, gen.n_latent, gen.style_dim, generator=rng
        )
        return gen.synthesis(w_plus).clamp(-1, 1)


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.mse_loss(a, b).item()


def test_projection_reconstructs_a_generated_image(models):
    """The same bounds on half the former budget: 60 + 40 steps reached 0.05 of the start's error,
    30 + 20 reach 0.10, three times below the 0.3 bound (the distance ratio: 0.18 against 0.5)."""
    gen, disc = models
    target = _known_target(gen)
    start = project(gen, target, discriminator=disc, steps=0, w_plus_steps=0)
    result = project(gen, target, discriminator=disc, steps=30, w_plus_steps=20)

    start_mse, final_mse = _mse(start.image, target), _mse(result.image, target)
    assert final_mse < 0.3 * start_mse, (start_mse, final_mse)
    assert result.distances[-1] < 0.5 * result.distances[0]
    # The returned image is exactly what the returned code and noise synthesise.
    with torch.no_grad():
        torch.testing.assert_close(gen.synthesis(result.w_plus, result.noise), result.image)


def test_start_is_the_mean_latent(models):
    gen, disc = models
    target = _known_target(gen, batch=1)
    latent_avg = torch.randn(gen.style_dim)
    start = project(gen, target, discriminator=disc, steps=0, w_plus_steps=0, latent_avg=latent_avg)
    assert torch.equal(start.w_plus, latent_avg.expand(1, gen.n_latent, -1))

    seeded = project(gen, target, discriminator=disc, steps=0, w_plus_steps=0, seed=3)
    expected = gen.mean_latent(4096, seed=3)
    torch.testing.assert_close(seeded.w_plus[:, 0], expected)


def test_output_shapes_and_phases(models):
    gen, disc = models
    target = F.interpolate(_known_target(gen, batch=3), size=64, mode="bilinear")  # resized to 32 inside
    result = project(gen, target, discriminator=disc, steps=3, w_plus_steps=0)

    assert isinstance(result, ProjectionResult)
    assert result.w_plus.shape == (3, gen.n_latent, gen.style_dim)
    assert result.image.shape == (3, 3, 32, 32)
    assert [tuple(n.shape) for n in result.noise] == [
        (3, 1, b.shape[2], b.shape[3]) for b in gen.noise_buffers()
    ]
    assert len(result.losses) == len(result.distances) == 3
    assert not result.w_plus.requires_grad and not result.image.requires_grad
    # Without a W+ phase every layer holds the same w.
    assert torch.equal(result.w_plus, result.w_plus[:, :1].expand_as(result.w_plus))

    refined = project(gen, target, discriminator=disc, steps=3, w_plus_steps=3)
    assert len(refined.losses) == 6
    assert not torch.allclose(refined.w_plus[:, 0], refined.w_plus[:, -1])


def test_noise_maps_stay_normalised_or_are_the_buffers(models):
    gen, disc = models
    target = _known_target(gen)
    result = project(gen, target, discriminator=disc, steps=4, w_plus_steps=2)
    for maps in result.noise:
        torch.testing.assert_close(maps.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
        torch.testing.assert_close(maps.square().mean(dim=(1, 2, 3)), torch.ones(2), atol=1e-4, rtol=0)

    fixed = project(gen, target, discriminator=disc, steps=2, w_plus_steps=1, optimize_noise=False)
    for maps, buffer in zip(fixed.noise, gen.noise_buffers(), strict=True):
        assert torch.equal(maps, buffer.expand(2, -1, -1, -1))


def test_models_are_untouched_and_flags_restored(models):
    gen, disc = models
    gen.style.requires_grad_(False)  # a mix of flags, as a caller fine-tuning part of a model might have
    disc.convs[0].requires_grad_(False)
    flags = {name: p.requires_grad for m in (gen, disc) for name, p in m.named_parameters()}
    states = [{k: v.clone() for k, v in m.state_dict().items()} for m in (gen, disc)]
    seen_during = []

    def callback(step, loss):
        seen_during.append(any(p.requires_grad for m in (gen, disc) for p in m.parameters()))

    project(gen, _known_target(gen), discriminator=disc, steps=3, w_plus_steps=2, callback=callback)

    assert seen_during == [False] * 5
    for module, state in zip((gen, disc), states, strict=True):
        for key, value in module.state_dict().items():
            assert torch.equal(value, state[key]), key
        assert all(p.grad is None for p in module.parameters())
    assert {name: p.requires_grad for m in (gen, disc) for name, p in m.named_parameters()} == flags


def test_flags_restored_when_projection_fails(models):
    gen, disc = models

    def callback(step, loss):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        project(gen, _known_target(gen), discriminator=disc, steps=2, callback=callback)
    assert all(p.requires_grad for m in (gen, disc) for p in m.parameters())


def test_same_seed_same_result(models):
    gen, disc = models
    target = _known_target(gen)
    first = project(gen, target, discriminator=disc, steps=5, w_plus_steps=3, seed=7)
    second = project(gen, target, discriminator=disc, steps=5, w_plus_steps=3, seed=7)
    other = project(gen, target, discriminator=disc, steps=5, w_plus_steps=3, seed=8)

    assert torch.equal(first.w_plus, second.w_plus)
    assert torch.equal(first.image, second.image)
    assert all(torch.equal(a, b) for a, b in zip(first.noise, second.noise, strict=True))
    assert first.losses == second.losses
    assert not torch.equal(first.w_plus, other.w_plus)


def test_callback_gets_every_step_and_its_loss(models):
    gen, disc = models
    calls = []
    result = project(
        gen,
        _known_target(gen),
        discriminator=disc,
        steps=4,
        w_plus_steps=3,
        callback=lambda s, v: calls.append((s, v)),
    )
    assert [s for s, _ in calls] == list(range(7))
    assert [v for _, v in calls] == result.losses
    assert all(isinstance(v, float) and math.isfinite(v) for _, v in calls)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (torch.zeros(3, 32, 32), r"\[batch, 3, height, width\], got \[3, 32, 32\]"),
        (torch.zeros(1, 1, 32, 32), r"\[batch, 3, height, width\], got \[1, 1, 32, 32\]"),
        (torch.zeros(0, 3, 32, 32), r"no image"),
        (torch.zeros(1, 3, 32, 16), r"square .* got 32×16"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), r"float tensor .* got dtype torch.uint8"),
        (torch.full((1, 3, 32, 32), 255.0), r"\[-1, 1\], got \[255, 255\]"),
        (torch.full((1, 3, 32, 32), float("nan")), r"finite"),
    ],
)
def test_bad_targets_are_refused(models, target, message):
    gen, disc = models
    with pytest.raises(ValueError, match=message):
        project(gen, target, discriminator=disc, steps=1)


def test_bad_settings_are_refused(models):
    gen, disc = models
    target = _known_target(gen, batch=1)
    with pytest.raises(ValueError, match="discriminator or an lpips callable"):
        project(gen, target, steps=1)
    with pytest.raises(ValueError, match="discriminator size 64 does not match generator size 32"):
        project(gen, target, discriminator=Discriminator(64, channels={**TINY_CHANNELS, 64: 8}), steps=1)
    with pytest.raises(ValueError, match="steps must be an integer >= 0, got -1"):
        project(gen, target, discriminator=disc, steps=-1)
    with pytest.raises(ValueError, match="lr_rampdown must be in \\[0, 1\\], got 2"):
        project(gen, target, discriminator=disc, steps=1, lr_rampdown=2)
    with pytest.raises(ValueError, match=r"latent_avg must have shape \[16\] or \[1, 16\], got \(18, 16\)"):
        project(gen, target, discriminator=disc, steps=1, latent_avg=torch.zeros(18, 16))
    with pytest.raises(ValueError, match=r"blocks \[6, 7\] exist .* blocks 0..3"):
        project(gen, target, discriminator=disc, steps=1, d_blocks=(6, 7))


def test_nan_loss_raises_jojogan_error(models):
    gen, _ = models
    target = _known_target(gen, batch=1)

    def broken(images, targets):
        return torch.full((images.shape[0],), float("nan"))

    with pytest.raises(JojoganError, match="diverged: the loss became nan at step 0"):
        project(gen, target, lpips=broken, steps=3)
    assert all(p.requires_grad for p in gen.parameters())


class _RecordingDistance(nn.Module):
    """Per-image MSE standing in for LPIPS; records its inputs and whether its weight was frozen."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.calls: list[tuple[tuple[int, ...], tuple[int, ...], bool]] = []

    def forward(self, images, targets):
        self.calls.append((tuple(images.shape), tuple(targets.shape), self.scale.requires_grad))
        return self.scale * (images - targets).square().flatten(1).mean(1)


def test_lpips_callable_replaces_the_discriminator(models):
    gen, _ = models
    target = _known_target(gen)
    distance = _RecordingDistance()
    result = project(gen, target, lpips=distance, steps=30, w_plus_steps=10, pixel_weight=0.0)

    assert distance.calls == [((2, 3, 32, 32), (2, 3, 32, 32), False)] * 40
    assert distance.scale.requires_grad and distance.scale.grad is None

    # Without latent noise the first step sees the mean latent's image, and with pixel_weight 0 the
    # reported distance is the callable's value alone.
    start = project(gen, target, lpips=distance, steps=0, w_plus_steps=0)
    first = project(
        gen, target, lpips=distance, steps=1, w_plus_steps=0, noise_strength=0.0, pixel_weight=0.0
    )
    assert first.distances[0] == pytest.approx(_mse(start.image, target), rel=1e-5)
    assert _mse(result.image, target) < 0.3 * _mse(start.image, target)


def test_lpips_must_return_one_value_per_image(models):
    gen, _ = models
    with pytest.raises(ValueError, match=r"one distance per image \(2\), got \(\)"):
        project(gen, _known_target(gen), lpips=lambda a, b: (a - b).abs().mean(), steps=1)


def test_projection_lr_schedule():
    assert projection_lr(0.0, 0.1) == 0.0  # warm-up starts from zero
    assert projection_lr(0.025, 0.1) == pytest.approx(0.05)  # half-way through the 5 % warm-up
    assert projection_lr(0.5, 0.1) == pytest.approx(0.1)
    # 10 % before the end: 40 % into the 25 % cosine ramp-down.
    assert projection_lr(0.9, 0.1) == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(0.4 * math.pi)))
    assert projection_lr(0.5, 0.1, rampup=0.0, rampdown=0.0) == pytest.approx(0.1)


def test_noise_regularization_and_normalization():
    rng = torch.Generator().manual_seed(0)
    white = torch.randn(2, 1, 64, 64, generator=rng)
    checker = (torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2 * 2.0 - 1.0
    structured = torch.stack([white[0], checker[None]])

    penalty = noise_regularization([structured])
    assert penalty.shape == (2,)
    # A ±1 checkerboard correlates -1 with both shifts at full scale (and averages to 0 below): 2.
    assert penalty[1].item() == pytest.approx(2.0, abs=1e-6)
    assert penalty[0].item() < 0.01

    maps = [3.0 + 5.0 * torch.randn(2, 1, 8, 8, generator=rng)]
    normalize_noise_(maps)
    torch.testing.assert_close(maps[0].mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(maps[0].square().mean(dim=(1, 2, 3)), torch.ones(2), atol=1e-5, rtol=0)


def test_fixture_projection_gets_closer_to_its_parity_image(shared):
    path = shared("fixtures", "reference", "stylegan2_tiny256.pt")
    checkpoint = load_checkpoint(path)
    gen, disc = checkpoint.generator, checkpoint.discriminator
    image = torch.load(path, weights_only=True)["parity"]["image"][:1]
    target = image / image.abs().max()  # the reference image is not clamped; keep its content in [-1, 1]

    kwargs = {"discriminator": disc, "latent_avg": checkpoint.latent_avg}
    start = project(gen, target, steps=0, w_plus_steps=0, **kwargs)
    result = project(gen, target, steps=15, w_plus_steps=10, **kwargs)

    def feature_l1(images):
        with torch.no_grad():
            pairs = zip(disc.features(images), disc.features(target), strict=True)
            return sum((a - b).abs().mean().item() for a, b in pairs)

    assert feature_l1(result.image) < 0.6 * feature_l1(start.image)
    assert _mse(result.image, target) < 0.5 * _mse(start.image, target)
    assert result.distances[-1] < result.distances[0]


def test_adam_is_torchs_bit_for_bit_without_an_optimiser_object(models, monkeypatch):
    """The projection's Adam steps exactly as ``torch.optim.Adam`` (noise maps and code, both phases,
    the schedule's rates), and it builds no ``torch.optim`` optimiser: their first use imports torch's
    compiler stack, a CPU-second in every process that projects."""
    projection = importlib.import_module("jojogan.inversion.project")  # the package exports the function
    gen, disc = models
    target = _known_target(gen)

    def refuse(self, *args, **kwargs):
        raise AssertionError("the projection built a torch.optim optimiser")

    with monkeypatch.context() as patch:
        patch.setattr(torch.optim.Optimizer, "__init__", refuse)
        ours = project(gen, target, discriminator=disc, steps=6, w_plus_steps=4)
    monkeypatch.setattr(projection, "Adam", lambda params, lr: torch.optim.Adam(params, lr=lr))
    torchs = project(gen, target, discriminator=disc, steps=6, w_plus_steps=4)
    assert torch.equal(ours.w_plus, torchs.w_plus) and ours.losses == torchs.losses
    assert all(torch.equal(a, b) for a, b in zip(ours.noise, torchs.noise, strict=True))
