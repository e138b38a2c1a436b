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
import dataclasses
import functools
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from jojogan.config import FinetuneConfig
from jojogan.errors import CheckpointError, JojoganError
from jojogan.fileio import atomic_output
from jojogan.mixing import (
    MeanLatentCache,
    layer_styles,
    mix_styles,
    reference_layer_latents,
    resolve_mask,
)
from jojogan.mixing import swapped_layers as list_swapped_layers
from jojogan.op.optim import Adam
from jojogan.op.precision import autocast, precision_scope
from jojogan.op.shapes import check_shape
from jojogan.stylegan2.checkpoint import read_weights_file
from jojogan.stylegan2.config import GeneratorConfig
from jojogan.stylegan2.layers import frozen
from jojogan.stylegan2.model import D_FEATURE_BLOCKS, Discriminator, Generator

__all__ = [
    "MEAN_LATENTS",
    "FinetuneDivergedError",
    "FinetuneOutOfMemoryError",
    "FinetuneResult",
    "IdentityNet",
    "ResumeMismatchError",
    "ResumeState",
    "RunPlan",
    "accumulate_gradients",
    "check_resume",
    "default_micro_batch",
    "finetune",
    "identity_loss",
    "load_resume_state",
    "plan_run",
    "reference_features",
    "reference_mean_latent",
    "resume_settings",
    "run_record",
    "save_resume_state",
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
            f"{size} px; {advice}. Resume states saved so far are intact (continue with --resume)."
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
        generator_config: the configuration of the generator ``last_good_state`` belongs to.
    """

    def __init__(
        self,
        step: int,
        last_good_state: dict[str, torch.Tensor],
        losses: list[float],
        what: str,
        generator_config: GeneratorConfig | None = None,
    ):
        super().__init__(
            f"fine-tuning diverged at step {step}: the {what} became NaN or infinite. The weights from "
            f"before this step are kept in the error's last_good_state; try a lower learning rate or check "
            f"the reference images for invalid values."
        )
        self.step = step
        self.last_good_state = last_good_state
        self.losses = losses
        self.generator_config = generator_config


class ResumeMismatchError(JojoganError, ValueError):
    """A resume state was made by another run (other settings, references, base or inversion).

    Attributes:
        changed: the names of the settings that differ, sorted.
    """

    def __init__(self, changed: list[str], message: str):
        super().__init__(message)
        self.changed = changed


@dataclass
class ResumeState:
    """Everything needed to continue a fine-tuning run exactly where it stopped (the "resume state").

    Attributes:
        step: steps completed.
        generator_state: the fine-tuned generator's state dict (CPU copies).
        optimizer_state: the Adam state dict (CPU copies).
        rng_state: state of the random generator drawing ``z`` and noise.
        losses: the loss of every completed step.
        settings: :func:`run_record` of the run without the keys that may change on resume; a resume
            with other settings is refused.
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
    def from_dict(cls, data: dict) -> ResumeState:
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
        record: :func:`run_record` of the run (what style files record as its settings).
        resumed_from: the step this call started after (0 unless it continued a resume state).
    """

    generator: Generator
    losses: list[float]
    config: FinetuneConfig
    record: dict
    resumed_from: int = 0

    @property
    def swapped_layers(self) -> list[int]:
        """The S layers the training mask swapped."""
        return list(self.record["mask"])


def _cpu_copy(value):
    """Deep copy of nested dicts/lists/tuples with every tensor detached and copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: _cpu_copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu_copy(item) for item in value)
    return copy.deepcopy(value)


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
    if identity_weight > 0 and (identity_net is None or original is None):
        raise ValueError("identity_weight > 0 needs identity_net and the original generator")
    for chunk in _chunks(refs, micro_batch):
        loss = _chunk_loss(
            generator, discriminator, latents[chunk], keep, mix_strength, z[chunk], [n[chunk] for n in noise],
            [r[chunk] for r in ref_features], blocks, precision,
            identity=(identity_net, identity_weight, original) if identity_weight > 0 else None,
        )  # fmt: skip
        share = (chunk.stop - chunk.start) / refs
        (loss * share).backward()
        total += loss.detach() * share
    return total


def _chunk_loss(
    generator: Generator,
    discriminator: Discriminator,
    latents: torch.Tensor,
    keep: torch.Tensor,
    mix_strength: float,
    z: torch.Tensor,
    noise: Sequence[torch.Tensor],
    ref_features: Sequence[torch.Tensor],
    blocks: Sequence[int],
    precision: str,
    identity: tuple[IdentityNet, float, Generator] | None,
) -> torch.Tensor:
    """The loss of some references (arguments as in :func:`accumulate_gradients`, sliced to them);
    ``identity`` is ``(identity_net, identity_weight, original)`` or ``None``."""
    styles = mix_styles(generator, latents, keep, mix_strength, z)
    with autocast(precision, latents.device):
        fake = generator.synthesis_from_styles(styles, noise)
        feats = discriminator.features(fake, blocks)
    loss = sum(F.l1_loss(f.float(), r) for f, r in zip(feats, ref_features, strict=True))
    loss = loss / len(blocks)
    if identity is None:
        return loss
    identity_net, identity_weight, original = identity
    # The original generator gets the same latents, z and noise; it maps them through its own
    # (untrained) mapping and affine layers, as it does when stylizing.
    with torch.no_grad():
        styles_orig = mix_styles(original, latents, keep, mix_strength, z)
        image_orig = original.synthesis_from_styles(styles_orig, noise)
    return loss + identity_weight * identity_loss(identity_net, image_orig, fake.float())


def _loss_and_health(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> tuple[float, bool]:
    """The loss as a float and whether every gradient is finite, read with one device synchronisation.

    On a GPU each read of a device value stalls the host until the queue drains; reading the loss and the
    finiteness flag together keeps it to one stall per step (measured on an H200 together with the fused
    Adam: 58 → 32 ms per 1024 px step, ``benchmarks/RESULTS.md``).
    """
    grads = [p.grad for p in params if p.grad is not None]
    finite = torch.isfinite(torch.stack(torch._foreach_norm(grads))).all() if grads else loss.new_ones(())
    value, grads_finite = torch.stack([loss.float(), finite.float()]).tolist()
    return value, grads_finite == 1.0


MEAN_LATENTS = MeanLatentCache()
"""Mean latents of base models keyed by their weights' sha256, shared by every pipeline in the process."""

# Settings a resumed run may change: they do not decide the results (micro-batching accumulates the same
# gradients; iterations only extends the run; the intervals only decide what is handed out).
_RESUMABLE_CHANGES = ("iterations", "micro_batch", "save_state_every", "preview_every")


def reference_mean_latent(
    generator: Generator, config: FinetuneConfig, cache_key: str | None = None
) -> torch.Tensor:
    """The mean latent ``[style_dim]`` that "mean" and "blend" reference codes train towards.

    The one owner of that choice: ``config.mean_code_samples`` mapped z seeded by ``config.seed``, so
    the API and :func:`finetune` always use the same code for the same config.

    Args:
        generator: the base generator.
        config: the run's settings.
        cache_key: names the generator's weights (e.g. the checkpoint's sha256) to reuse the mean from
            :data:`MEAN_LATENTS`; ``None`` computes it.
    """
    if cache_key is None:
        return generator.mean_latent(config.mean_code_samples, seed=config.seed)[0]
    return MEAN_LATENTS.get(cache_key, generator, n=config.mean_code_samples, seed=config.seed)


def _plain(value: object) -> object:
    """JSON- and ``weights_only``-friendly copy: tuples become lists, tensors lists of numbers."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def run_record(config: FinetuneConfig, keep: torch.Tensor, references: int) -> dict:
    """The settings of a run, derived from the config: what resume checks and style files record.

    Every :class:`FinetuneConfig` field, plus what the run resolved: ``mask`` is the list of swapped
    S layers (the spec it came from is ``mask_spec``) and ``references`` the number of references.
    """
    record = _plain(dataclasses.asdict(config))
    record["mask_spec"] = record["mask"]
    record["mask"] = list_swapped_layers(keep)
    record["references"] = int(references)
    return record


def resume_settings(record: dict, provenance: dict | None = None) -> dict:
    """What a resume state must match: the :func:`run_record` without the settings a resumed run may
    change, plus ``provenance`` (what the run was made from: e.g. the references' and the base's sha256
    and the inversion, which the caller knows and this stage does not)."""
    settings = {key: value for key, value in record.items() if key not in _RESUMABLE_CHANGES}
    settings.update(_plain(provenance or {}))
    return settings


# How check_resume names the provenance keys the API records (other keys are FinetuneConfig fields).
_RESUME_LABELS = {
    "reference_sha256s": "references (content sha256)",
    "base_sha256": "base checkpoint (sha256)",
    "references": "number of references",
}


def _shown(value: object) -> str:
    if isinstance(value, str) and len(value) == 64:  # a sha256: its first 12 digits tell them apart
        return value[:12]
    if isinstance(value, list) and value and all(isinstance(v, str) and len(v) == 64 for v in value):
        return "[" + ", ".join(v[:12] for v in value) + "]"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_resume(state: ResumeState, settings: dict) -> None:
    """Refuse ``state`` unless it was saved by a run with these :func:`resume_settings`.

    A state saved without settings (by an older version) is accepted.

    Raises:
        ResumeMismatchError: names every setting that differs, with the state's value and this run's.
    """
    if not state.settings or state.settings == settings:
        return
    saved = state.settings
    changed = sorted(k for k in set(settings) | set(saved) if saved.get(k) != settings.get(k))
    details = ", ".join(
        f"{_RESUME_LABELS.get(key, key)} (state: {_shown(saved.get(key))}, now: {_shown(settings.get(key))})"
        for key in changed
    )
    raise ResumeMismatchError(
        changed, f"cannot resume: the resume state was made by a run with a different {details}"
    )


def _check_references(references: torch.Tensor, size: int) -> None:
    check_shape(references, "refs 3 size size", "references", size=size)
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
    on_resume_state: Callable[[ResumeState], None] | None = None,
    resume: ResumeState | None = None,
    provenance: dict | None = None,
    device: str | torch.device | None = None,
    show_progress: bool = True,
) -> FinetuneResult:
    """Fine-tune a copy of ``generator`` on style references (JoJoGAN); returns a :class:`FinetuneResult`.

    The reference codes pass through the generator's affine layers at every step, so every generator
    parameter (mapping network and modulations included) is trained, as in the original code.

    Args:
        generator: the base generator; not modified (the result is a deep copy).
        discriminator: the base discriminator, moved to ``device`` and frozen during the run (its
            ``requires_grad`` flags and mode are restored afterwards).
        references: style references ``[refs, 3, size, size]`` in [-1, 1] at the generator's size.
        reference_latents: their inversions, W+ ``[refs, n_latent, style_dim]`` or w ``[refs, style_dim]``;
            may be ``None`` when ``config.reference_code == "mean"``.
        config: settings (default: the original recipe).
        mean_latent: mean w ``[style_dim]`` for "mean"/"blend" codes (default: :func:`reference_mean_latent`).
        identity_net: face-recognition network (:data:`IdentityNet`) for ``config.identity_weight > 0``.
        callback: a :data:`ProgressCallback` after every (1-based) step; every ``config.preview_every``
            steps its preview renders the reference codes ``[refs, 3, size, size]`` (CPU, in [-1, 1]).
        on_resume_state: receives a :class:`ResumeState` every ``config.save_state_every`` steps.
        resume: a state from ``on_resume_state`` to continue after its step as an uninterrupted run would;
            refused (:class:`ResumeMismatchError`) unless its :func:`resume_settings` are this run's.
        provenance: what the references and base are (JSON-like: their sha256), compared on resume.
        device: where to train (default: the generator's device).
        show_progress: show a tqdm progress bar with the loss.

    Raises:
        ValueError: inconsistent inputs or settings.
        FinetuneDivergedError: the loss or gradients became NaN or infinite.
        FinetuneOutOfMemoryError: a step did not fit at the given ``micro_batch`` (or at one reference).
    """
    config = _fit_feature_blocks(FinetuneConfig() if config is None else config, discriminator)
    device = torch.device(device) if device is not None else generator.input.input.device
    _check_inputs(
        generator, discriminator, references, reference_latents, config, identity_net, on_resume_state
    )
    # 1. the codes every step trains towards
    keep = resolve_mask(config.mask, generator.size).to(device)
    latents = _prepare_latents(generator, reference_latents, config, mean_latent, len(references), device)
    # 2. the models and the optimiser, restored from the resume state if there is one
    run = _Run.start(generator, config, identity_net, device, run_record(config, keep, len(references)))
    start = run.restore(resume, resume_settings(run.record, provenance))
    # 3. the loop, then the result
    report = functools.partial(_report, callback=callback, on_resume_state=on_resume_state)
    _loop(run, start, discriminator, references, latents, keep, identity_net, report, show_progress)
    return run.result(start)


def _loop(
    run: _Run,
    start: int,
    discriminator: Discriminator,
    references: torch.Tensor,
    latents: torch.Tensor,
    keep: torch.Tensor,
    identity_net: IdentityNet | None,
    report: Callable[..., None],
    show_progress: bool,
) -> None:
    """Steps ``start + 1 … config.iterations`` with the discriminator (and identity network) frozen."""
    config = run.config
    discriminator.to(run.device)
    logger.info(
        "fine-tuning %d reference(s) at %d px for %d iterations (swapping %d of %d style layers)",
        len(references), run.trained.size, config.iterations, int((~keep).sum()), keep.numel(),
    )  # fmt: skip
    progress = tqdm(
        range(start + 1, config.iterations + 1),
        total=config.iterations,
        initial=start,
        desc="fine-tuning",
        disable=not show_progress,
    )
    frozen_identity = identity_net if run.original is not None else None
    with (
        precision_scope(config.precision, run.device) as run.precision,
        frozen(discriminator, frozen_identity),
        contextlib.closing(progress),
    ):
        with autocast(run.precision, run.device):
            ref_features = reference_features(
                discriminator, references.to(run.device), config.d_blocks, run.micro_batch(len(references))
            )
        ref_features = [feature.float() for feature in ref_features]
        for step in progress:
            value = run.step(step, discriminator, latents, keep, ref_features, identity_net)
            progress.set_postfix(loss=f"{value:.4f}")
            report(run, step, value, latents)


def _fit_feature_blocks(config: FinetuneConfig, discriminator: Discriminator) -> FinetuneConfig:
    """The default loss blocks (1, 3, 4, 5) are JoJoGAN's set from 128 px up; a smaller discriminator (64 px
    has blocks 0..4) reads those of them it has. Any other set is used, and checked, as given."""
    convs = getattr(discriminator, "convs", None)
    if not isinstance(config, FinetuneConfig) or convs is None or config.d_blocks != D_FEATURE_BLOCKS:
        return config
    kept = tuple(block for block in config.d_blocks if block < len(convs))
    return config if kept == config.d_blocks else dataclasses.replace(config, d_blocks=kept)


def _check_inputs(
    generator: Generator,
    discriminator: Discriminator,
    references: torch.Tensor,
    reference_latents: torch.Tensor | None,
    config: FinetuneConfig,
    identity_net: IdentityNet | None,
    on_resume_state: Callable[[ResumeState], None] | None,
) -> None:
    if not isinstance(config, FinetuneConfig):
        raise ValueError(f"config must be a FinetuneConfig, got {type(config).__name__}")
    size = generator.size
    if discriminator.size != size:
        raise ValueError(f"discriminator size {discriminator.size} differs from generator size {size}")
    if max(config.d_blocks) >= len(discriminator.convs):
        raise ValueError(
            f"d_blocks {config.d_blocks} exceed the discriminator's {len(discriminator.convs)} blocks"
        )
    _check_references(references, size)
    if reference_latents is not None and reference_latents.shape[0] != references.shape[0]:
        raise ValueError(
            f"{references.shape[0]} references but {reference_latents.shape[0]} reference latents"
        )
    if config.identity_weight > 0 and identity_net is None:
        raise ValueError("identity_weight > 0 needs identity_net (a face-recognition network)")
    if config.save_state_every and on_resume_state is None:
        raise ValueError("save_state_every > 0 needs an on_resume_state callback to receive the states")


def _prepare_latents(
    generator: Generator,
    reference_latents: torch.Tensor | None,
    config: FinetuneConfig,
    mean_latent: torch.Tensor | None,
    refs: int,
    device: torch.device,
) -> torch.Tensor:
    """Per-layer latents ``[refs, num_styles, style_dim]`` of the reference codes, on ``device``."""
    if config.reference_code != "invert" and mean_latent is None:
        mean_latent = reference_mean_latent(generator, config)
    latents = reference_layer_latents(
        generator.size,
        None if reference_latents is None else reference_latents.detach().to(device),
        config.reference_code,
        mean_latent=None if mean_latent is None else mean_latent.detach().to(device),
        blend_mask=config.blend_mask,
        batch=refs,
    )
    if latents.shape[2] != generator.style_dim:
        raise ValueError(
            f"reference latents have style_dim {latents.shape[2]}, the generator {generator.style_dim}"
        )
    return latents


def _report(
    run: _Run,
    step: int,
    value: float,
    latents: torch.Tensor,
    *,
    callback: ProgressCallback | None,
    on_resume_state: Callable[[ResumeState], None] | None,
) -> None:
    """Hand out the step's loss (with a preview when due) and, when due, a resume state."""
    config = run.config
    if callback is not None:
        preview = None
        if config.preview_every and step % config.preview_every == 0:
            preview = _preview(run.trained, latents, run.micro_batch(len(latents)))
        callback(step, value, preview)
    if config.save_state_every and step % config.save_state_every == 0:
        assert on_resume_state is not None
        on_resume_state(run.resume_state(step))


@dataclass
class _Run:
    """The mutable state of one fine-tuning run: the trained copy, its optimiser and random stream."""

    config: FinetuneConfig
    trained: Generator
    original: Generator | None
    optimizer: Adam
    rng: torch.Generator
    device: torch.device
    record: dict
    settings: dict = field(default_factory=dict)  # what a resume state of this run must match
    losses: list[float] = field(default_factory=list)
    chosen_micro_batch: int | None = None
    precision: str = "fp32"  # resolved for the device when the loop starts

    @classmethod
    def start(
        cls,
        generator: Generator,
        config: FinetuneConfig,
        identity_net: IdentityNet | None,
        device,
        record: dict,
    ) -> _Run:
        trained = copy.deepcopy(generator).to(device).requires_grad_(True).train()
        original = None
        if config.identity_weight > 0:
            # the identity term compares with the untouched generator, on the training device
            on_device = generator.input.input.device == device
            original = generator if on_device else copy.deepcopy(generator).to(device)
        # The fused CUDA Adam updates every parameter in a few launches instead of several per tensor;
        # jojogan.op.optim.Adam is torch.optim.Adam's arithmetic and state without importing torch._dynamo.
        fused = torch.device(device).type == "cuda"
        optimizer = Adam(trained.parameters(), lr=config.lr, betas=config.betas, fused=fused)
        rng = torch.Generator(device=device).manual_seed(config.seed)
        return cls(
            config, trained, original, optimizer, rng, device, record, chosen_micro_batch=config.micro_batch
        )

    def restore(self, resume: ResumeState | None, settings: dict) -> int:
        """Continue from ``resume`` (refused unless it was made with these resume ``settings``, which the
        run's own resume states record); returns its step."""
        self.settings = settings
        if resume is None:
            return 0
        check_resume(resume, settings)
        iterations = self.config.iterations
        if not 0 <= resume.step <= iterations:
            raise ValueError(f"cannot resume from step {resume.step} of a {iterations}-iteration run")
        self.trained.load_state_dict(resume.generator_state, strict=True)
        self.optimizer.load_state_dict(resume.optimizer_state)
        self.rng.set_state(resume.rng_state.cpu())
        self.losses = list(resume.losses)
        return resume.step

    def result(self, start: int) -> FinetuneResult:
        """The trained copy (eval mode, frozen) and the run's losses, after the loop."""
        if self.losses:
            logger.info("fine-tuning done: %d steps, final loss %.4f", len(self.losses), self.losses[-1])
        self.trained.requires_grad_(False).eval()
        return FinetuneResult(
            generator=self.trained,
            losses=self.losses,
            config=self.config,
            record=self.record,
            resumed_from=start,
        )

    def micro_batch(self, refs: int) -> int:
        if self.chosen_micro_batch is None:
            self.chosen_micro_batch = default_micro_batch(refs, self.device)
        return self.chosen_micro_batch

    def resume_state(self, step: int) -> ResumeState:
        return ResumeState(
            step=step,
            generator_state=_cpu_copy(self.trained.state_dict()),
            optimizer_state=_cpu_copy(self.optimizer.state_dict()),
            rng_state=self.rng.get_state(),
            losses=list(self.losses),
            settings=copy.deepcopy(self.settings),
        )

    def step(self, step, discriminator, latents, keep, ref_features, identity_net) -> float:
        """One optimisation step; returns its loss. Halves an automatic micro-batch on out-of-memory."""
        refs = latents.shape[0]
        # Draw order (z, then noise in noises.noise_i order) is part of reproducibility and of resume.
        z = torch.randn(refs, self.trained.style_dim, device=self.device, generator=self.rng)
        noise = self.trained.make_noise(refs, generator=self.rng)
        loss = None
        while loss is None:
            micro_batch = self.micro_batch(refs)
            self.optimizer.zero_grad(set_to_none=True)
            try:
                loss = accumulate_gradients(
                    self.trained, discriminator, latents, keep, self.config.mix_strength, z, noise,
                    ref_features, self.config.d_blocks, micro_batch=micro_batch,
                    identity_net=identity_net, identity_weight=self.config.identity_weight,
                    original=self.original, precision=self.precision,
                )  # fmt: skip
            except torch.OutOfMemoryError as error:
                if self.config.micro_batch is not None or micro_batch == 1:
                    raise FinetuneOutOfMemoryError(
                        step, micro_batch, refs, self.trained.size, self.device
                    ) from error
            if loss is None:
                self._shrink_micro_batch(micro_batch)
        value, grads_finite = _loss_and_health(loss, list(self.trained.parameters()))
        if not math.isfinite(value) or not grads_finite:
            what = "loss" if not math.isfinite(value) else "gradient"
            state = _cpu_copy(self.trained.state_dict())
            raise FinetuneDivergedError(step, state, list(self.losses), what, self.trained.config)
        self.optimizer.step()
        self.losses.append(value)
        return value

    def _shrink_micro_batch(self, micro_batch: int) -> None:
        # called outside the except block, so the failed pass's tensors are already released
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        smaller = (micro_batch + 1) // 2
        logger.warning(
            "out of memory with %d references per pass; retrying the step with %d", micro_batch, smaller
        )
        self.chosen_micro_batch = smaller


@torch.no_grad()
def _preview(generator: Generator, latents: torch.Tensor, micro_batch: int | None) -> torch.Tensor:
    """The generator's rendering of the unmixed reference codes with its stored noise, ``[refs, 3, H, W]``."""
    images = [
        generator.synthesis_from_styles(layer_styles(generator, latents[chunk]))
        for chunk in _chunks(latents.shape[0], micro_batch)
    ]
    return torch.cat(images).clamp(-1, 1).cpu()


# ---------------------------------------------------------------------------------------------- run plan
def save_resume_state(state: ResumeState, path: str | os.PathLike) -> Path:
    """Write a resume state atomically (temporary file + rename).

    Raises:
        JojoganError: it could not be written (full disk, permissions); the previous file is kept.
    """
    with atomic_output(path) as tmp:
        torch.save(state.to_dict(), tmp)
    return Path(path)


def load_resume_state(path: str | os.PathLike) -> ResumeState:
    """Read a state written by :func:`save_resume_state` (weights only, never pickled code).

    Raises:
        JojoganError: the file is unreadable, holds Python objects (refused unexecuted) or is no state.
    """
    try:
        return ResumeState.from_dict(read_weights_file(path))
    except CheckpointError as error:
        reason = "it holds Python objects, not only tensors" if "Python objects" in str(error) else error
        raise JojoganError(
            f"{path} is not a fine-tuning resume state jojogan can load safely ({reason}); delete it to "
            "start over"
        ) from error
    except ValueError as error:
        raise JojoganError(f"{path} is not a readable fine-tuning resume state ({error})") from error


@dataclass
class RunPlan:
    """What a fine-tuning run settles before it inverts or trains (:func:`plan_run`).

    Attributes:
        provenance: the base's and references' sha256 and the inversion, recorded in resume states.
        resume: the state the run continues, already checked against this run, or ``None``.
        mean_latent: the code "mean"/"blend" references train towards, or ``None`` for "invert".
        save_state: where resume states go (``on_resume_state`` of :func:`finetune`), or ``None``.
    """

    provenance: dict
    resume: ResumeState | None
    mean_latent: torch.Tensor | None
    save_state: Callable[[ResumeState], object] | None

    @property
    def inverted(self) -> bool:
        """The references' codes come from an inversion (not "mean")."""
        return self.provenance["inversion"] is not None


def plan_run(
    generator: Generator,
    config: FinetuneConfig,
    *,
    reference_sha256s: list[str],
    base_sha256: str | None,
    inversion: str,
    resume: bool | ResumeState = False,
    resume_state_path: str | os.PathLike | None = None,
) -> RunPlan:
    """Settle a run before anything expensive: its provenance, the resume state it continues (a state
    from another run is refused here, before any inversion), its mean latent and its state saver.

    Args:
        generator: the base generator.
        config: the run's settings.
        reference_sha256s: one sha256 per reference (file bytes, or aligned pixels).
        base_sha256: the base checkpoint's sha256 (also keys the cached mean latent), or ``None``.
        inversion: how references are inverted (recorded unless ``reference_code="mean"``).
        resume: continue the state at ``resume_state_path`` when it exists, or this loaded state.
        resume_state_path: where resume states are kept.

    Raises:
        ValueError: ``config.save_state_every`` without ``resume_state_path``.
        ResumeMismatchError: the resume state was made by another run; names what differs.
    """
    if config.save_state_every and resume_state_path is None:
        raise ValueError("config.save_state_every needs resume_state_path (where the state is kept)")
    inverted = config.reference_code != "mean"
    provenance = {
        "base_sha256": base_sha256,
        "reference_sha256s": list(reference_sha256s),
        "inversion": inversion if inverted else None,
    }
    state = resume if isinstance(resume, ResumeState) else None
    if state is None and resume and resume_state_path is not None and Path(resume_state_path).is_file():
        state = load_resume_state(resume_state_path)
        logger.info("resuming from %s at step %d", resume_state_path, state.step)
    if state is not None:
        keep = resolve_mask(config.mask, generator.size)
        check_resume(state, resume_settings(run_record(config, keep, len(reference_sha256s)), provenance))
    mean = (
        None if config.reference_code == "invert" else reference_mean_latent(generator, config, base_sha256)
    )
    saver = None
    if resume_state_path is not None and config.save_state_every:
        saver = functools.partial(save_resume_state, path=resume_state_path)
    return RunPlan(provenance=provenance, resume=state, mean_latent=mean, save_state=saver)
