"""JoJoGAN fine-tuning: teach a copy of the generator to turn mixed style codes into the references.

Each step draws one ``z`` and one set of noise maps per reference, builds the training codes with
:func:`jojogan.mixing.mix_styles`, synthesizes them, and minimises the L1 distance between the
discriminator features of the results and of the references (blocks 1, 3, 4, 5), averaged over the
blocks; Adam updates every generator parameter. The discriminator is frozen and the reference features
are computed once. With the default :class:`~jojogan.config.FinetuneConfig` this is the original
JoJoGAN loop.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from jojogan.config import FinetuneConfig
from jojogan.mixing import layer_styles, mean_latent_code, mix_styles, reference_layer_latents, resolve_mask
from jojogan.mixing import swapped_layers as list_swapped_layers
from jojogan.op.memory import cpu_memory_reuse
from jojogan.op.precision import autocast, precision_scope
from jojogan.stylegan2.errors import JojoganError
from jojogan.stylegan2.model import Discriminator, Generator

__all__ = [
    "FinetuneDivergedError",
    "FinetuneOutOfMemoryError",
    "FinetuneResult",
    "FinetuneState",
    "IdentityNet",
    "accumulate_gradients",
    "default_micro_batch",
    "finetune",
    "identity_loss",
    "reference_features",
]

logger = logging.getLogger(__name__)

IdentityNet = Callable[[torch.Tensor], torch.Tensor]
"""A face-recognition network: images ``[batch, 3, H, W]`` in [-1, 1] → embeddings ``[batch, dim]``."""

ProgressCallback = Callable[[int, float, "torch.Tensor | None"], None]
"""``callback(step, loss, preview)``: after every step; ``preview`` is ``[refs, 3, H, W]`` or ``None``."""


class FinetuneOutOfMemoryError(JojoganError):
    """A step did not fit in the device's memory even at the smallest micro-batch allowed."""

    def __init__(self, step: int, micro_batch: int, refs: int, size: int, device: torch.device):
        advice = (
            "pass a smaller micro_batch (--micro-batch), fewer references, a smaller model or another device"
            if micro_batch > 1
            else "one reference at a time is the least this needs: use a smaller model or another device"
        )
        super().__init__(
            f"out of {device.type} memory at step {step} with {micro_batch} of {refs} references per pass at "
            f"{size} px; {advice}. Checkpoints written so far are intact (resume with --resume)."
        )
        self.step = step
        self.micro_batch = micro_batch


def default_micro_batch(refs: int, device: torch.device) -> int:
    """References per pass when the config leaves it open (``micro_batch=None``).

    One on the CPU: a single reference folds its styles into the weights, which is no slower per
    reference there and needs the least memory. All of them elsewhere (a GPU's throughput grows with the
    batch); :func:`finetune` halves it whenever a step runs out of memory.
    """
    return 1 if device.type == "cpu" else refs


class FinetuneDivergedError(JojoganError):
    """The loss or the gradients became NaN or infinite.

    Attributes:
        step: the 1-based step at which it happened (its update was not applied).
        last_good_state: the generator's state dict (CPU) before that step, with finite weights.
        losses: the losses of the completed steps.
    """

    def __init__(self, step: int, last_good_state: dict[str, torch.Tensor], losses: list[float], what: str):
        super().__init__(
            f"fine-tuning diverged at step {step}: the {what} became NaN or infinite. The weights from "
            f"before this step are kept in the error's last_good_state; try a lower learning rate or check "
            f"the reference images for invalid values."
        )
        self.step = step
        self.last_good_state = last_good_state
        self.losses = losses


@dataclass
class FinetuneState:
    """Everything needed to continue a fine-tuning run exactly where it stopped.

    Attributes:
        step: steps completed.
        generator_state: the fine-tuned generator's state dict (CPU copies).
        optimizer_state: the Adam state dict (CPU copies).
        rng_state: state of the random generator drawing ``z`` and noise.
        losses: the loss of every completed step.
        settings: the resolved settings the run used; a resume with other settings is refused.
    """

    step: int
    generator_state: dict[str, torch.Tensor]
    optimizer_state: dict
    rng_state: torch.Tensor
    losses: list[float]
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain dict of tensors, numbers, strings and lists: ``torch.save`` it and read it back with
        ``torch.load(..., weights_only=True)``."""
        return {
            "step": self.step,
            "generator_state": self.generator_state,
            "optimizer_state": self.optimizer_state,
            "rng_state": self.rng_state,
            "losses": list(self.losses),
            "settings": self.settings,
        }

    @classmethod
    def from_dict(cls, data: dict) -> FinetuneState:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: a key is missing.
        """
        missing = [
            key
            for key in ("step", "generator_state", "optimizer_state", "rng_state", "losses")
            if key not in data
        ]
        if missing:
            raise ValueError(f"not a fine-tuning state: missing {', '.join(missing)}")
        return cls(
            step=int(data["step"]),
            generator_state=data["generator_state"],
            optimizer_state=data["optimizer_state"],
            rng_state=data["rng_state"],
            losses=[float(v) for v in data["losses"]],
            settings=dict(data.get("settings", {})),
        )


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns.

    Attributes:
        generator: the fine-tuned generator (a copy; eval mode, parameters frozen).
        losses: the loss of every step, including steps done before a resume.
        config: the settings used.
        steps_done: number of completed steps (``config.iterations``).
        swapped_layers: the S layers the training mask swapped.
    """

    generator: Generator
    losses: list[float]
    config: FinetuneConfig
    steps_done: int
    swapped_layers: list[int] = field(default_factory=list)


def _cpu_copy(value):
    """Deep copy of nested dicts/lists/tuples with every tensor detached and copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: _cpu_copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu_copy(item) for item in value)
    return copy.deepcopy(value)


@contextlib.contextmanager
def _frozen(module: object) -> Iterator[None]:
    """Evaluate ``module`` without parameter gradients and in eval mode; restore both afterwards."""
    if not isinstance(module, nn.Module):
        yield
        return
    flags = [(p, p.requires_grad) for p in module.parameters()]
    was_training = module.training
    module.requires_grad_(False).eval()
    try:
        yield
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)
        module.train(was_training)


def _chunks(total: int, size: int | None) -> list[slice]:
    size = total if size is None else size
    return [slice(start, min(start + size, total)) for start in range(0, total, size)]


@torch.no_grad()
def reference_features(
    discriminator: Discriminator,
    references: torch.Tensor,
    blocks: Sequence[int],
    micro_batch: int | None = None,
) -> list[torch.Tensor]:
    """Discriminator features of the references, computed once without gradients.

    Args:
        discriminator: the (frozen) discriminator.
        references: ``[refs, 3, size, size]`` in [-1, 1].
        blocks: discriminator blocks to read.
        micro_batch: references per forward pass (bounds the memory of large batches).

    Returns:
        One tensor ``[refs, channels, h, w]`` per block.
    """
    parts = [
        discriminator.features(references[chunk], blocks) for chunk in _chunks(len(references), micro_batch)
    ]
    return [torch.cat(block_parts) for block_parts in zip(*parts, strict=True)]


def identity_loss(
    identity_net: IdentityNet, original_images: torch.Tensor, finetuned_images: torch.Tensor
) -> torch.Tensor:
    """Mean of ``1 - cos(F(original), F(finetuned))`` over the batch (the original side without grad)."""
    with torch.no_grad():
        target = identity_net(original_images)
    return (1 - F.cosine_similarity(identity_net(finetuned_images), target, dim=1)).mean()


def accumulate_gradients(
    generator: Generator,
    discriminator: Discriminator,
    latents: torch.Tensor,
    keep: torch.Tensor,
    mix_strength: float,
    z: torch.Tensor,
    noise: Sequence[torch.Tensor],
    ref_features: Sequence[torch.Tensor],
    blocks: Sequence[int],
    micro_batch: int | None = None,
    identity_net: IdentityNet | None = None,
    identity_weight: float = 0.0,
    original: Generator | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """One step's loss, with its gradients added to the generator's ``.grad``.

    The loss is the mean over references of the per-reference loss, so processing the references in
    micro-batches (one backward pass each, gradients accumulated) gives the loss and gradients of the
    full batch.

    Args:
        generator: the generator being trained.
        discriminator: frozen discriminator.
        latents: reference per-layer latents ``[refs, num_styles, style_dim]``.
        keep: keep-mask ``[num_styles]``.
        mix_strength: training mix strength in [0, 1].
        z: ``[refs, style_dim]``, one random latent per reference.
        noise: per-layer noise ``[refs, 1, res, res]``.
        ref_features: reference features ``[refs, ...]``, one per block.
        blocks: discriminator blocks (same order as ``ref_features``).
        micro_batch: references per backward pass (``None``: all).
        identity_net: face-recognition network for the identity term.
        identity_weight: its weight (0 disables it).
        original: the untouched generator the identity term compares with.
        precision: a resolved precision (:func:`jojogan.op.precision.resolve_precision`); "bf16" autocasts
            synthesis and discriminator, the style codes and the loss stay float32.

    Returns:
        The detached loss (a 0-d float32 tensor).
    """
    refs = latents.shape[0]
    total = torch.zeros((), device=latents.device)
    use_identity = identity_weight > 0
    if use_identity and (identity_net is None or original is None):
        raise ValueError("identity_weight > 0 needs identity_net and the original generator")
    for chunk in _chunks(refs, micro_batch):
        chunk_noise = [n[chunk] for n in noise]
        styles = mix_styles(generator, latents[chunk], keep, mix_strength, z[chunk])
        with autocast(precision, latents.device):
            fake = generator.synthesis_from_styles(styles, chunk_noise)
            feats = discriminator.features(fake, blocks)
        loss = sum(F.l1_loss(f.float(), r[chunk]) for f, r in zip(feats, ref_features, strict=True))
        loss = loss / len(blocks)
        if use_identity:
            # The original generator gets the same latents, z and noise; it maps them through its own
            # (untrained) mapping and affine layers, as it does when stylizing.
            with torch.no_grad():
                styles_orig = mix_styles(original, latents[chunk], keep, mix_strength, z[chunk])
                image_orig = original.synthesis_from_styles(styles_orig, chunk_noise)
            loss = loss + identity_weight * identity_loss(identity_net, image_orig, fake.float())
        share = (chunk.stop - chunk.start) / refs
        (loss * share).backward()
        total += loss.detach() * share
    return total


def _loss_and_health(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> tuple[float, bool]:
    """The loss as a float and whether every gradient is finite, read with one device synchronisation.

    On a GPU each read of a device value stalls the host until the queue drains; reading the loss and the
    finiteness flag together keeps it to one stall per step.
    """
    grads = [p.grad for p in params if p.grad is not None]
    finite = torch.isfinite(torch.stack(torch._foreach_norm(grads))).all() if grads else loss.new_ones(())
    value, grads_finite = torch.stack([loss.float(), finite.float()]).tolist()
    return value, grads_finite == 1.0


def _settings(config: FinetuneConfig, keep: torch.Tensor, latents: torch.Tensor) -> dict:
    """The settings that decide a run's results (``micro_batch`` does not; ``iterations`` may grow)."""
    return {
        "lr": config.lr,
        "betas": list(config.betas),
        "swapped_layers": list_swapped_layers(keep),
        "mix_strength": config.mix_strength,
        "d_blocks": list(config.d_blocks),
        "identity_weight": config.identity_weight,
        "seed": config.seed,
        "reference_code": config.reference_code,
        "references": int(latents.shape[0]),
    }


def _check_references(references: torch.Tensor, size: int) -> None:
    if (
        not isinstance(references, torch.Tensor)
        or references.ndim != 4
        or references.shape[1:] != (3, size, size)
    ):
        shape = tuple(references.shape) if isinstance(references, torch.Tensor) else type(references).__name__
        raise ValueError(f"references must be images [refs, 3, {size}, {size}] in [-1, 1], got {shape}")
    if references.shape[0] == 0:
        raise ValueError("at least one reference image is needed")
    if not references.is_floating_point() or not torch.isfinite(references).all():
        raise ValueError("references must be finite floating-point images in [-1, 1]")


def finetune(
    generator: Generator,
    discriminator: Discriminator,
    references: torch.Tensor,
    reference_latents: torch.Tensor | None,
    config: FinetuneConfig | None = None,
    *,
    mean_latent: torch.Tensor | None = None,
    identity_net: IdentityNet | None = None,
    callback: ProgressCallback | None = None,
    on_checkpoint: Callable[[FinetuneState], None] | None = None,
    resume: FinetuneState | None = None,
    device: str | torch.device | None = None,
    show_progress: bool = True,
) -> FinetuneResult:
    """Fine-tune a copy of ``generator`` on style references (JoJoGAN).

    The reference codes enter training as per-layer latents passed through the generator's affine
    layers at every step, so all generator parameters (mapping network and modulations included) are
    trained, as in the original code.

    Args:
        generator: the base generator; not modified (the result is a deep copy).
        discriminator: the base discriminator; frozen during the run (its ``requires_grad`` flags and mode
            are restored afterwards) and moved to ``device``.
        references: style references ``[refs, 3, size, size]`` in [-1, 1] at the generator's size.
        reference_latents: their inversions, W+ ``[refs, n_latent, style_dim]`` (or w
            ``[refs, style_dim]``); may be ``None`` when ``config.reference_code == "mean"``.
        config: settings (default: the original recipe).
        mean_latent: mean w ``[style_dim]`` for "mean"/"blend" codes (e.g. from a
            :class:`~jojogan.mixing.MeanLatentCache`); computed from ``generator`` when ``None``.
        identity_net: face-recognition network for ``config.identity_weight > 0``; images
            ``[batch, 3, size, size]`` in [-1, 1] → embeddings ``[batch, dim]``.
        callback: ``callback(step, loss, preview)`` after every step (1-based); ``preview`` is the
            current generator's rendering of the reference codes ``[refs, 3, size, size]`` (CPU, clamped
            to [-1, 1]) every ``config.preview_every`` steps, else ``None``.
        on_checkpoint: receives a :class:`FinetuneState` every ``config.checkpoint_every`` steps.
        resume: a state from ``on_checkpoint``; the run continues after its step, with identical results
            to an uninterrupted run.
        device: where to train (default: the generator's device).
        show_progress: show a tqdm progress bar with the loss.

    Returns:
        :class:`FinetuneResult`.

    Raises:
        ValueError: inconsistent inputs or settings.
        FinetuneDivergedError: the loss or gradients became NaN or infinite.
        FinetuneOutOfMemoryError: a step did not fit at the given ``micro_batch`` (or at one reference
            when it was left to choose).
    """
    config = FinetuneConfig() if config is None else config
    if not isinstance(config, FinetuneConfig):
        raise ValueError(f"config must be a FinetuneConfig, got {type(config).__name__}")
    device = torch.device(device) if device is not None else generator.input.input.device
    size = generator.size
    if discriminator.size != size:
        raise ValueError(f"discriminator size {discriminator.size} differs from generator size {size}")
    if max(config.d_blocks) >= len(discriminator.convs):
        raise ValueError(
            f"d_blocks {config.d_blocks} exceed the discriminator's {len(discriminator.convs)} blocks"
        )
    _check_references(references, size)
    if config.checkpoint_every and on_checkpoint is None:
        raise ValueError("checkpoint_every > 0 needs an on_checkpoint callback to receive the states")
    if config.identity_weight > 0 and identity_net is None:
        raise ValueError("identity_weight > 0 needs identity_net (a face-recognition network)")
    keep = resolve_mask(config.mask, size).to(device)
    references = references.to(device)
    refs = references.shape[0]

    if reference_latents is not None:
        reference_latents = reference_latents.detach().to(device)
        if reference_latents.shape[0] != refs:
            raise ValueError(f"{refs} references but {reference_latents.shape[0]} reference latents")
    if config.reference_code != "invert" and mean_latent is None:
        mean_latent = mean_latent_code(generator, n=config.mean_code_samples, seed=config.seed)
    latents = reference_layer_latents(
        size,
        reference_latents,
        config.reference_code,
        mean_latent=None if mean_latent is None else mean_latent.detach().to(device),
        blend_mask=config.blend_mask,
        batch=refs,
    )
    if latents.shape[2] != generator.style_dim:
        raise ValueError(
            f"reference latents have style_dim {latents.shape[2]}, the generator {generator.style_dim}"
        )

    trained = copy.deepcopy(generator).to(device).requires_grad_(True).train()
    original = None
    if config.identity_weight > 0:
        on_device = generator.input.input.device == device
        original = generator if on_device else copy.deepcopy(generator).to(device)
    params = list(trained.parameters())
    # The fused CUDA Adam updates every parameter in a few launches instead of several per tensor.
    optimizer = torch.optim.Adam(params, lr=config.lr, betas=config.betas, fused=device.type == "cuda")
    rng = torch.Generator(device=device).manual_seed(config.seed)
    settings = _settings(config, keep, latents)
    losses: list[float] = []
    start = 0
    if resume is not None:
        if resume.settings and resume.settings != settings:
            changed = [k for k in settings if resume.settings.get(k) != settings[k]]
            raise ValueError(f"cannot resume: the checkpoint was made with different {', '.join(changed)}")
        if not 0 <= resume.step <= config.iterations:
            raise ValueError(f"cannot resume from step {resume.step} of a {config.iterations}-iteration run")
        trained.load_state_dict(resume.generator_state, strict=True)
        optimizer.load_state_dict(resume.optimizer_state)
        rng.set_state(resume.rng_state.cpu())
        losses = list(resume.losses)
        start = resume.step

    discriminator.to(device)
    logger.info(
        "fine-tuning %d reference(s) at %d px for %d iterations (swapping %d of %d style layers)",
        refs,
        size,
        config.iterations,
        int((~keep).sum()),
        keep.numel(),
    )
    progress_bar = tqdm(
        range(start + 1, config.iterations + 1),
        total=config.iterations,
        initial=start,
        desc="fine-tuning",
        disable=not show_progress,
    )
    frozen_identity = identity_net if original is not None else None
    micro_batch = config.micro_batch or default_micro_batch(refs, device)
    with (
        cpu_memory_reuse(device),
        precision_scope(config.precision, device) as precision,
        _frozen(discriminator),
        _frozen(frozen_identity),
        contextlib.closing(progress_bar) as progress,
    ):
        with autocast(precision, device):
            ref_features = reference_features(discriminator, references, config.d_blocks, micro_batch)
        ref_features = [feature.float() for feature in ref_features]
        for step in progress:
            # Draw order (z, then noise in noises.noise_i order) is part of reproducibility and of resume.
            z = torch.randn(refs, generator.style_dim, device=device, generator=rng)
            noise = trained.make_noise(refs, generator=rng)
            loss = None
            while loss is None:
                optimizer.zero_grad(set_to_none=True)
                try:
                    loss = accumulate_gradients(
                        trained,
                        discriminator,
                        latents,
                        keep,
                        config.mix_strength,
                        z,
                        noise,
                        ref_features,
                        config.d_blocks,
                        micro_batch=micro_batch,
                        identity_net=identity_net,
                        identity_weight=config.identity_weight,
                        original=original,
                        precision=precision,
                    )
                except torch.OutOfMemoryError as error:
                    if config.micro_batch is not None or micro_batch == 1:
                        raise FinetuneOutOfMemoryError(step, micro_batch, refs, size, device) from error
                if loss is None:
                    # outside the except block, so the failed pass's tensors are already released
                    optimizer.zero_grad(set_to_none=True)
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    logger.warning(
                        "out of memory with %d references per pass; retrying the step with %d",
                        micro_batch,
                        (micro_batch + 1) // 2,
                    )
                    micro_batch = (micro_batch + 1) // 2
            value, grads_finite = _loss_and_health(loss, params)
            if not math.isfinite(value) or not grads_finite:
                raise FinetuneDivergedError(
                    step,
                    _cpu_copy(trained.state_dict()),
                    list(losses),
                    "loss" if not math.isfinite(value) else "gradient",
                )
            optimizer.step()
            losses.append(value)
            progress.set_postfix(loss=f"{value:.4f}")
            if callback is not None:
                preview = None
                if config.preview_every and step % config.preview_every == 0:
                    preview = _preview(trained, latents, micro_batch)
                callback(step, value, preview)
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                assert on_checkpoint is not None
                on_checkpoint(
                    FinetuneState(
                        step=step,
                        generator_state=_cpu_copy(trained.state_dict()),
                        optimizer_state=_cpu_copy(optimizer.state_dict()),
                        rng_state=rng.get_state(),
                        losses=list(losses),
                        settings=copy.deepcopy(settings),
                    )
                )
    if losses:
        logger.info("fine-tuning done: %d steps, final loss %.4f", len(losses), losses[-1])
    trained.requires_grad_(False).eval()
    return FinetuneResult(
        generator=trained,
        losses=losses,
        config=config,
        steps_done=config.iterations,
        swapped_layers=list_swapped_layers(keep),
    )


@torch.no_grad()
def _preview(generator: Generator, latents: torch.Tensor, micro_batch: int | None) -> torch.Tensor:
    """The generator's rendering of the unmixed reference codes with its stored noise, ``[refs, 3, H, W]``."""
    images = [
        generator.synthesis_from_styles(layer_styles(generator, latents[chunk]))
        for chunk in _chunks(latents.shape[0], micro_batch)
    ]
    return torch.cat(images).clamp(-1, 1).cpu()
