"""Optimisation-based inversion: find the W+ code (and noise maps) that make a StyleGAN2 draw a given face.

This is the fallback when no e4e encoder is available, and the better choice for references far from
the photo domain (sketches, paintings), where an encoder trained on photos returns a generic face.

The recipe follows the StyleGAN2 projector (Karras et al., "Analyzing and Improving the Image Quality of
StyleGAN", 2020), with a second phase added:

1. **W phase.** One w per image, shared by every layer, starts at the mean latent. Adam with a cosine
   learning-rate schedule (short linear ramp-up, cosine ramp-down) reduces the distance to the target.
   During the first ``noise_ramp`` of the phase, Gaussian noise is added to w, with a strength that
   starts at ``noise_strength`` times the spread of W and falls off quadratically: this lets the search
   leave the mean latent's basin before it settles.
2. **W+ phase.** Each layer gets its own copy of the W solution and they are refined separately (fresh
   Adam, the same learning-rate schedule, no latent noise: this phase is a local refinement, and
   independent per-layer noise would only push the code off the W manifold).

Throughout, the per-layer noise maps are optimised too, by one Adam whose schedule spans both phases.
To keep them from absorbing image content they are penalised for spatial autocorrelation at every scale
of an average-pooling pyramid, and re-normalised to zero mean and unit variance after every step.

Distance: with an ``lpips`` callable, LPIPS on images pooled to at most 256 px (what LPIPS is calibrated
for). Otherwise the L1 distance between discriminator features, which needs nothing beyond the StyleGAN2
checkpoint. Either way a pixel MSE on a 64 px version of both images is added with a small weight: it
pins down colour and overall layout, which the feature distances constrain only loosely.

The losses of the images in a batch are summed, so each image is optimised as if it were alone (Adam is
element-wise); the reported loss is the batch mean.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from jojogan.errors import JojoganError
from jojogan.op.optim import Adam
from jojogan.op.shapes import check_shape
from jojogan.stylegan2.layers import frozen
from jojogan.stylegan2.model import D_FEATURE_BLOCKS, Discriminator, Generator

__all__ = [
    "DEFAULT_STEPS",
    "DEFAULT_W_PLUS_STEPS",
    "LPIPS_MAX_SIZE",
    "PIXEL_LOSS_SIZE",
    "ProjectionConfig",
    "ProjectionResult",
    "noise_regularization",
    "normalize_noise_",
    "project",
    "projection_lr",
]

logger = logging.getLogger(__name__)

DEFAULT_STEPS = 200
"""Steps of the W phase. The StyleGAN2 projector uses 1000 on a GPU; with the W+ refinement after it,
200 + 100 steps already reconstruct closely. Cost is dominated by the convolutions at full resolution: on
a CPU one 1024 px step (generator, discriminator up to block 5, backward) took about 45 s on one core, so
CPU users should lower the step counts or use e4e; a 256 px step is roughly 16 times cheaper."""

DEFAULT_W_PLUS_STEPS = 100
"""Steps of the W+ refinement after the W phase."""

PIXEL_LOSS_SIZE = 64
"""Side to which both images are average-pooled for the pixel MSE term (colour and layout, not detail)."""

LPIPS_MAX_SIZE = 256
"""Images larger than this are average-pooled to it before the ``lpips`` callable sees them."""

_W_SAMPLES = 4096  # z samples for the mean and spread of W
_RANGE_TOLERANCE = 1e-3  # a target in [-1, 1] may overshoot by float rounding

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ProjectionConfig:
    """Settings of :func:`project`.

    Attributes:
        steps: optimisation steps in W (one w per image, broadcast to every layer).
        w_plus_steps: refinement steps in W+ afterwards (0 returns the W solution).
        lr: peak Adam learning rate of each phase.
        noise_regularize: weight of the noise-map autocorrelation penalty.
        noise_ramp: fraction of the W phase over which the latent noise fades to zero.
        noise_strength: initial latent noise, as a fraction of the spread of W.
        lr_rampup: fraction of each phase spent warming the learning rate up.
        lr_rampdown: fraction of each phase spent decaying it (half cosine) to zero.
        pixel_weight: weight of the MSE between 64 px versions of the images (0 disables it).
        d_blocks: discriminator blocks compared: by default those JoJoGAN's loss reads, so the reference
            is reconstructed in the feature space the style is later learnt in (blocks a small
            discriminator lacks are dropped).
        seed: seeds the W statistics, the initial noise maps and the latent noise; equal seeds and inputs
            give identical results on the same device.
        optimize_noise: optimise the noise maps; when false the generator's stored noise buffers are used.
    """

    steps: int = DEFAULT_STEPS
    w_plus_steps: int = DEFAULT_W_PLUS_STEPS
    lr: float = 0.1
    noise_regularize: float = 1e5
    noise_ramp: float = 0.75
    noise_strength: float = 0.05
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    pixel_weight: float = 0.1
    d_blocks: tuple[int, ...] = D_FEATURE_BLOCKS
    seed: int = 0
    optimize_noise: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "w_plus_steps", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        for name in ("noise_regularize", "noise_strength", "pixel_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("noise_ramp", "lr_rampup", "lr_rampdown"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        object.__setattr__(self, "d_blocks", tuple(self.d_blocks))

    @classmethod
    def from_total_steps(cls, total: int | None, **settings: object) -> ProjectionConfig:
        """A config whose two phases share ``total`` steps as the defaults do (two thirds in W);
        ``None`` keeps the default step counts."""
        if total is not None:
            settings = {"w_plus_steps": total // 3, "steps": total - total // 3, **settings}
        return cls(**settings)


@dataclass
class ProjectionResult:
    """What :func:`project` found.

    Attributes:
        w_plus: the code ``[batch, n_latent, style_dim]``.
        image: ``generator.synthesis(w_plus, noise)``, ``[batch, 3, size, size]`` (not clamped).
        noise: the noise maps ``[batch, 1, res, res]`` in ``noises.noise_i`` order; pass them back to
            ``synthesis`` to reproduce ``image`` exactly.
        losses: the batch-mean total loss (distance + noise penalty) of every step, W phase first.
        distances: the batch-mean reconstruction distance of every step (the loss without the noise
            penalty, which dominates the first steps).
    """

    w_plus: torch.Tensor
    image: torch.Tensor
    noise: list[torch.Tensor]
    losses: list[float] = field(default_factory=list)
    distances: list[float] = field(default_factory=list)


def projection_lr(t: float, lr: float, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """Learning rate at fraction ``t`` in [0, 1) of a phase.

    Linear warm-up over the first ``rampup`` of the phase and a half-cosine decay to zero over the last
    ``rampdown``, as in the StyleGAN2 projector.
    """
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if rampup > 0:
        ramp *= min(1.0, t / rampup)
    return lr * ramp


def noise_regularization(noise: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-image autocorrelation penalty on noise maps, over a 2× average-pooling pyramid.

    At each scale (down to 8×8) the squared correlation of each map with itself shifted by one pixel
    horizontally and vertically is added (with wrap-around). Independent Gaussian noise scores about 0;
    noise that has started to encode image structure scores high.

    Args:
        noise: maps ``[batch, 1, res, res]``.

    Returns:
        ``[batch]``.
    """
    total = noise[0].new_zeros(noise[0].shape[0])
    for maps in noise:
        while True:
            for dim in (2, 3):
                total = total + (maps * torch.roll(maps, shifts=1, dims=dim)).mean(dim=(1, 2, 3)).square()
            if maps.shape[-1] <= 8:
                break
            maps = F.avg_pool2d(maps, 2)
    return total


@torch.no_grad()
def normalize_noise_(noise: Sequence[torch.Tensor]) -> None:
    """Shift and scale every map of every image, in place, to zero mean and unit variance."""
    for maps in noise:
        maps.sub_(maps.mean(dim=(1, 2, 3), keepdim=True))
        maps.mul_(maps.square().mean(dim=(1, 2, 3), keepdim=True).add(1e-8).rsqrt())


def _check_target(target: torch.Tensor) -> None:
    check_shape(target, "batch 3 height width", "target")
    if target.shape[0] == 0:
        raise ValueError("target holds no image (batch 0)")
    if target.shape[2] != target.shape[3]:
        raise ValueError(
            "target must be a square aligned face [batch, 3, size, size], "
            f"got {target.shape[2]}×{target.shape[3]} pixels"
        )
    if not target.is_floating_point():
        raise ValueError(f"target must be a float tensor in [-1, 1], got dtype {target.dtype}")
    if not torch.isfinite(target).all():
        raise ValueError("target must be finite, got NaN or infinite values")
    low, high = target.min().item(), target.max().item()
    if low < -1 - _RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
        raise ValueError(
            f"target values must lie in [-1, 1], got [{low:.3g}, {high:.3g}] "
            "(convert [0, 1] images with x * 2 - 1, [0, 255] ones with x / 127.5 - 1)"
        )


def _pool_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """Average-pool a power-of-two image batch ``[batch, 3, s, s]`` to at most ``size``."""
    factor = images.shape[-1] // size
    return F.avg_pool2d(images, factor) if factor > 1 else images


def _check_latent_avg(latent_avg: torch.Tensor | None, style_dim: int) -> None:
    if latent_avg is None:
        return
    if (
        not torch.is_tensor(latent_avg)
        or latent_avg.numel() != style_dim
        or latent_avg.shape[-1] != style_dim
    ):
        shape = tuple(latent_avg.shape) if torch.is_tensor(latent_avg) else type(latent_avg).__name__
        raise ValueError(f"latent_avg must have shape [{style_dim}] or [1, {style_dim}], got {shape}")
    if not torch.isfinite(latent_avg).all():
        raise ValueError("latent_avg must be finite, got NaN or infinite values")


def _w_statistics(
    generator: Generator, latent_avg: torch.Tensor | None, seed: int
) -> tuple[torch.Tensor, float]:
    """Start point ``[1, style_dim]`` and the spread of W (root mean squared distance from it)."""
    mean, spread = generator.latent_statistics(_W_SAMPLES, seed=seed, center=latent_avg)
    start = mean if latent_avg is None else latent_avg.reshape(1, -1).to(mean)
    return start, spread


class _Distance:
    """Per-image distance ``[batch]`` between generated images and the fixed target."""

    def __init__(
        self,
        target: torch.Tensor,
        discriminator: Discriminator | None,
        lpips: Distance | None,
        d_blocks: Sequence[int],
        pixel_weight: float,
    ):
        self.lpips = lpips
        self.discriminator = discriminator
        self.pixel_weight = pixel_weight
        self.target_pixels = _pool_to(target, PIXEL_LOSS_SIZE)
        if lpips is not None:
            self.target_lpips = _pool_to(target, LPIPS_MAX_SIZE)
        else:
            assert discriminator is not None
            self.blocks = [b for b in d_blocks if b < len(discriminator.convs)]
            if not self.blocks:
                raise ValueError(
                    f"none of the discriminator blocks {list(d_blocks)} exist "
                    f"(this discriminator has blocks 0..{len(discriminator.convs) - 1})"
                )
            with torch.no_grad():
                self.target_features = discriminator.features(target, self.blocks)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        batch = images.shape[0]
        if self.lpips is not None:
            value = self.lpips(_pool_to(images, LPIPS_MAX_SIZE), self.target_lpips)
            if not torch.is_tensor(value) or value.numel() != batch:
                shape = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
                raise ValueError(f"lpips must return one distance per image ({batch}), got {shape}")
            distance = value.reshape(batch)
        else:
            features = self.discriminator.features(images, self.blocks)
            per_block = [
                (a - b).abs().flatten(1).mean(1) for a, b in zip(features, self.target_features, strict=True)
            ]
            distance = torch.stack(per_block).mean(0)
        if self.pixel_weight:
            pixels = (_pool_to(images, PIXEL_LOSS_SIZE) - self.target_pixels).square().flatten(1).mean(1)
            distance = distance + self.pixel_weight * pixels
        return distance


def project(
    generator: Generator,
    target: torch.Tensor,
    config: ProjectionConfig | None = None,
    *,
    discriminator: Discriminator | None = None,
    lpips: Distance | None = None,
    latent_avg: torch.Tensor | None = None,
    callback: Callable[[int, float], None] | None = None,
    show_progress: bool | str = False,
    **settings: object,
) -> ProjectionResult:
    """Invert aligned face images into the generator's W+ space by optimisation.

    The generator's and discriminator's weights are left untouched: their parameters are excluded from
    autograd for the duration and their ``requires_grad`` flags restored afterwards (also on error).

    Args:
        generator: the StyleGAN2 generator to invert.
        target: aligned faces ``[batch, 3, h, h]`` in [-1, 1]; resized (antialiased bilinear) to the
            generator's size when ``h`` differs.
        config: the settings (default :class:`ProjectionConfig`).
        discriminator: the checkpoint's discriminator, whose features give the distance when no
            ``lpips`` is given. Must have the generator's size.
        lpips: a callable ``(images, targets) -> [batch]`` perceptual distance (e.g. an LPIPS network);
            takes precedence over the discriminator. Its inputs are ``[batch, 3, s, s]`` in [-1, 1] with
            ``s = min(size, 256)``. If it is an ``nn.Module`` its parameters are frozen like the models'.
        latent_avg: starting w ``[style_dim]`` (e.g. the checkpoint's ``latent_avg``); default: the mean
            of 4096 mapped samples.
        callback: called as ``callback(step, loss)`` after every step, ``step`` counting from 0 across
            both phases and ``loss`` the batch-mean total loss.
        show_progress: show a tqdm progress bar; a string also labels it (e.g. with the image's name).
        settings: fields of :class:`ProjectionConfig` replacing those of ``config`` (``steps=50``).

    Returns:
        :class:`ProjectionResult` with ``w_plus [batch, n_latent, style_dim]``, the reconstruction
        ``[batch, 3, size, size]``, the noise maps and the loss history.

    Raises:
        ValueError: a badly shaped or out-of-range target, a discriminator of another size, no distance
            (neither ``discriminator`` nor ``lpips``), or invalid settings.
        JojoganError: the loss became NaN or infinite.
    """
    config = replace(config or ProjectionConfig(), **settings)
    _check_inputs(generator, target, discriminator, lpips, latent_avg)
    target = _prepare_target(target, generator)
    models = [generator, discriminator, lpips if isinstance(lpips, nn.Module) else None]
    with frozen(*models), torch.enable_grad():
        distance = _Distance(
            target, discriminator if lpips is None else None, lpips, config.d_blocks, config.pixel_weight
        )
        return _optimise(generator, distance, config, target.shape[0], latent_avg, callback, show_progress)


def _check_inputs(
    generator: Generator,
    target: torch.Tensor,
    discriminator: Discriminator | None,
    lpips: Distance | None,
    latent_avg: torch.Tensor | None,
) -> None:
    _check_target(target)
    _check_latent_avg(latent_avg, generator.style_dim)
    if lpips is None and discriminator is None:
        raise ValueError("project needs a distance: pass the checkpoint's discriminator or an lpips callable")
    if lpips is None and discriminator.size != generator.size:
        raise ValueError(
            f"discriminator size {discriminator.size} does not match generator size {generator.size}"
        )


def _prepare_target(target: torch.Tensor, generator: Generator) -> torch.Tensor:
    """The target on the generator's device, float32, at its size (antialiased bilinear)."""
    size = generator.size
    target = target.detach().to(device=generator.input.input.device, dtype=torch.float32)
    if target.shape[-1] != size:
        target = F.interpolate(
            target, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    return target


def _initial_noise(generator: Generator, config: ProjectionConfig, batch: int, rng: torch.Generator):
    """Noise maps ``[batch, 1, res, res]`` to optimise (fresh, normalised) or the stored buffers (fixed)."""
    if not config.optimize_noise:
        return [buf.detach().expand(batch, -1, -1, -1).clone() for buf in generator.noise_buffers()]
    noise = generator.make_noise(batch, generator=rng)
    normalize_noise_(noise)
    return [maps.requires_grad_(True) for maps in noise]


def _optimise(
    generator: Generator,
    distance: _Distance,
    config: ProjectionConfig,
    batch: int,
    latent_avg: torch.Tensor | None,
    callback: Callable[[int, float], None] | None,
    show_progress: bool | str,
) -> ProjectionResult:
    """The two phases (W, then W+) over one continuous noise optimisation."""
    device = generator.input.input.device
    rng = torch.Generator(device=device).manual_seed(config.seed)
    w_mean, w_std = _w_statistics(generator, latent_avg, config.seed)
    noise = _initial_noise(generator, config, batch, rng)
    w = w_mean.detach().repeat(batch, 1).requires_grad_(True)
    # The noise maps are one continuous optimisation across both phases: a fresh Adam at the phase change
    # would take full-size sign steps on them and undo the noise regularisation.
    noise_optimizer = Adam(noise, lr=config.lr) if config.optimize_noise else None
    label = show_progress if isinstance(show_progress, str) else "projecting"
    total_steps = config.steps + config.w_plus_steps
    with tqdm(total=total_steps, desc=label, disable=not show_progress, leave=False) as bar:
        run = _Projection(generator, distance, config, rng, w_std, noise, noise_optimizer, callback, bar)
        run.phase("W", config.steps, w)
        # Every layer starts from the W solution and is then free to move on its own.
        w = w.detach().unsqueeze(1).repeat(1, generator.n_latent, 1).requires_grad_(True)
        run.phase("W+", config.w_plus_steps, w)
    return run.result(w)


@dataclass
class _Projection:
    """One projection's models, settings, random stream and noise maps, and its history so far."""

    generator: Generator
    distance: _Distance
    config: ProjectionConfig
    rng: torch.Generator
    w_std: float
    noise: list[torch.Tensor]
    noise_optimizer: Adam | None
    callback: Callable[[int, float], None] | None
    bar: tqdm
    losses: list[float] = field(default_factory=list)
    distances: list[float] = field(default_factory=list)

    def phase(self, name: str, steps: int, w: torch.Tensor) -> None:
        """``steps`` updates of ``w`` (``[batch, style_dim]`` in "W", W+ in "W+") with a fresh Adam."""
        config = self.config
        total_steps = config.steps + config.w_plus_steps
        optimizer = Adam([w], lr=config.lr)
        for i in range(steps):
            step = len(self.losses)
            if self.noise_optimizer is not None:
                noise_lr = projection_lr(step / total_steps, config.lr, config.lr_rampup, config.lr_rampdown)
                self.noise_optimizer.param_groups[0]["lr"] = noise_lr
            latent = self._perturbed(w, i / steps) if name == "W" else w
            value, dist = _step(
                self.generator,
                self.distance,
                config,
                latent,
                self.noise,
                optimizer,
                self.noise_optimizer,
                i / steps,
            )
            self._record(step, name, value, dist)

    def _perturbed(self, w: torch.Tensor, t: float) -> torch.Tensor:
        """``w`` with the W phase's fading Gaussian exploration noise at fraction ``t`` of the phase."""
        config = self.config
        if config.noise_ramp <= 0:
            return w
        fade = max(0.0, 1.0 - t / config.noise_ramp) ** 2
        strength = self.w_std * config.noise_strength * fade
        if strength <= 0:
            return w
        return w + strength * torch.randn(w.shape, device=w.device, generator=self.rng)

    def _record(self, step: int, phase: str, value: float, dist: float) -> None:
        if not math.isfinite(value):
            raise JojoganError(
                f"projection diverged: the loss became {value} at step {step} ({phase} phase); "
                "try a lower learning rate"
            )
        self.losses.append(value)
        self.distances.append(dist)
        self.bar.update(1)
        self.bar.set_postfix(phase=phase, loss=f"{value:.4g}", distance=f"{dist:.4g}")
        if self.callback is not None:
            self.callback(step, value)

    def result(self, w: torch.Tensor) -> ProjectionResult:
        """The final code, its reconstruction and the history (no gradients)."""
        with torch.no_grad():
            w_plus = self.generator.to_w_plus(w.detach()).clone()
            noise = [maps.detach() for maps in self.noise]
            image = self.generator.synthesis(w_plus, noise)
        if self.distances:
            logger.debug(
                "projection: %d steps, distance %.4g -> %.4g",
                len(self.losses),
                self.distances[0],
                self.distances[-1],
            )
        return ProjectionResult(
            w_plus=w_plus, image=image, noise=noise, losses=self.losses, distances=self.distances
        )


def _step(
    generator: Generator,
    distance: _Distance,
    config: ProjectionConfig,
    latent: torch.Tensor,
    noise: list[torch.Tensor],
    optimizer: Adam,
    noise_optimizer: Adam | None,
    t: float,
) -> tuple[float, float]:
    """One update at fraction ``t`` of its phase; returns the batch-mean loss and distance.

    A non-finite loss returns before any update, so the caller can stop with the last good code.
    """
    optimizer.param_groups[0]["lr"] = projection_lr(t, config.lr, config.lr_rampup, config.lr_rampdown)
    images = generator.synthesis(generator.to_w_plus(latent), noise)
    per_image = distance(images)
    batch_distance = per_image.detach().mean().item()
    if noise_optimizer is not None and config.noise_regularize:
        per_image = per_image + config.noise_regularize * noise_regularization(noise)
    loss = per_image.sum()
    value = loss.item() / images.shape[0]
    if not math.isfinite(value):
        return value, batch_distance
    optimizer.zero_grad(set_to_none=True)
    if noise_optimizer is not None:
        noise_optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if noise_optimizer is not None:
        noise_optimizer.step()
        normalize_noise_(noise)
    return value, batch_distance
