"""Safe loading of StyleGAN2 weights in the official (rosinality) layout.

Accepted files:

* ``stylegan2-ffhq-config-f.pt`` and the like: ``{"g_ema": ..., "d": ..., "latent_avg": ...}``
  (``g``/``g_optim``/``d_optim`` and other extra keys are ignored);
* official JoJoGAN style files: ``{"g": generator_state_dict}``;
* e4e checkpoints: ``{"state_dict": {"decoder.*": ...}, "latent_avg": ...}`` (the decoder only);
* a bare generator state dict, and ``.safetensors`` files holding one (optionally prefixed ``g_ema.``,
  ``g.`` or ``generator.``, with ``d.``/``discriminator.`` for a discriminator).

Architecture (size, style_dim, n_mlp, channel table) is inferred from tensor shapes into a
:class:`~jojogan.stylegan2.config.GeneratorConfig`; loading is strict and never executes pickled code.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from jojogan.errors import CheckpointError
from jojogan.stylegan2.config import GeneratorConfig
from jojogan.stylegan2.model import Discriminator, Generator

_STYLE_KEY = re.compile(r"^style\.(\d+)\.weight$")
_CONV_KEY = re.compile(r"^convs\.(\d+)\.conv\.weight$")
_D_BLOCK_KEY = re.compile(r"^convs\.(\d+)\.conv1\.0\.weight$")


@dataclass
class StyleGAN2Checkpoint:
    """What a checkpoint file held.

    Attributes:
        generator: the generator (``g_ema`` or the style file's ``g``), in eval mode.
        discriminator: the discriminator, or ``None`` when the file has none.
        latent_avg: mean w ``[style_dim]``, or ``None`` when the file has none.
        path: where it was read from.
    """

    generator: Generator
    discriminator: Discriminator | None
    latent_avg: torch.Tensor | None
    path: Path | None = None


def read_weights_file(path: str | Path, device: str | torch.device = "cpu", safe_globals: tuple = ()) -> dict:
    """Read a ``.pt``/``.pth`` (weights only) or ``.safetensors`` file into a dict of tensors.

    The one reader of weights files. ``safe_globals`` names plain data classes a format stores besides
    tensors (e4e keeps its options as an ``argparse.Namespace``, which only holds attributes): they are
    allowed up front, so a refusal never comes after a gigabyte of tensors has been read.

    Raises:
        CheckpointError: the file is missing, truncated, not a checkpoint, or holds pickled code.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} does not exist or is not a file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=str(device))
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(f"{path.name} is not a readable safetensors file ({error})") from error
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            data = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path.name} is not a readable PyTorch checkpoint") from error
        lines = str(error).splitlines()
        refused = [ln.strip() for ln in lines if "Unsupported global" in ln]
        detail = refused[0] if refused else "refused by weights_only=True"
        raise CheckpointError(
            f"{path.name} holds Python objects that cannot be loaded safely ({detail}). "
            "Use an official checkpoint or re-save the tensors as a plain state dict."
        ) from error
    except Exception as error:  # noqa: BLE001 - torch raises many types for damaged files
        raise CheckpointError(f"{path.name} is not a readable PyTorch checkpoint ({error})") from error
    if not isinstance(data, dict):
        raise CheckpointError(f"{path.name} holds a {type(data).__name__}, expected a dict of weights")
    return data


def _strip_prefix(state: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _split_sections(data: dict, name: str) -> tuple[dict, dict | None, torch.Tensor | None]:
    """Find the generator and discriminator state dicts and the mean latent inside a loaded file."""
    latent_avg = data.get("latent_avg")
    if isinstance(data.get("g_ema"), dict):
        gen = data["g_ema"]
    elif isinstance(data.get("g"), dict):
        gen = data["g"]
    elif isinstance(data.get("state_dict"), dict) and any(
        k.startswith("decoder.") for k in data["state_dict"]
    ):
        gen = _strip_prefix(data["state_dict"], "decoder.")
    else:
        gen = None
        for prefix in ("g_ema.", "g.", "generator."):
            gen = _strip_prefix(data, prefix) or None
            if gen:
                break
        if gen is None and "style.1.weight" in data:
            gen = {k: v for k, v in data.items() if torch.is_tensor(v) and k != "latent_avg"}
    if not gen:
        keys = ", ".join(list(data)[:8])
        raise CheckpointError(
            f"{name} has no StyleGAN2 generator: expected a 'g_ema' or 'g' entry (official layout), "
            f"found top-level keys: {keys}"
        )
    disc = data.get("d") if isinstance(data.get("d"), dict) else None
    if disc is None:
        for prefix in ("d.", "discriminator."):
            disc = _strip_prefix(data, prefix) or None
            if disc:
                break
    if latent_avg is not None and not torch.is_tensor(latent_avg):
        raise CheckpointError(f"{name}: 'latent_avg' must be a tensor, got {type(latent_avg).__name__}")
    return gen, disc, latent_avg


def _shape(state: dict, key: str, name: str, what: str) -> torch.Size:
    if key not in state or not torch.is_tensor(state[key]):
        raise CheckpointError(
            f"{name}: the {what} has no tensor '{key}', so it is not in the StyleGAN2 layout"
        )
    return state[key].shape


def infer_generator_config(state: dict, name: str = "checkpoint") -> GeneratorConfig:
    """The architecture of a generator state dict, from its shapes: ``size``, ``style_dim``, ``n_mlp`` and
    the channel table (``lr_mlp`` cannot be read from weights: the official :data:`LR_MLP`)."""
    style_ids = sorted(int(m.group(1)) for k in state if (m := _STYLE_KEY.match(k)))
    if not style_ids:
        raise CheckpointError(f"{name}: no mapping-network weights 'style.N.weight' in the generator")
    style_dim = _shape(state, "style.1.weight", name, "generator")[1]
    conv_ids = sorted(int(m.group(1)) for k in state if (m := _CONV_KEY.match(k)))
    if not conv_ids or len(conv_ids) % 2:
        raise CheckpointError(f"{name}: expected pairs of 'convs.N.conv.weight' in the generator")
    levels = len(conv_ids) // 2
    channels = {4: int(_shape(state, "input.input", name, "generator")[1])}
    for j in range(levels):
        channels[2 ** (j + 3)] = int(_shape(state, f"convs.{2 * j}.conv.weight", name, "generator")[1])
    return GeneratorConfig(
        size=4 * 2**levels, style_dim=int(style_dim), n_mlp=len(style_ids), channels=tuple(channels.items())
    )


def infer_discriminator_config(state: dict, name: str = "checkpoint") -> dict:
    """``size`` and ``channels`` of a discriminator state dict, from shapes."""
    blocks = sorted(int(m.group(1)) for k in state if (m := _D_BLOCK_KEY.match(k)))
    if not blocks:
        raise CheckpointError(f"{name}: no residual blocks 'convs.N.conv1.0.weight' in the discriminator")
    size = 2 ** (len(blocks) + 2)
    channels = {size: int(_shape(state, "convs.0.0.weight", name, "discriminator")[0])}
    for i in blocks:
        channels[size // 2**i] = int(_shape(state, f"convs.{i}.conv2.1.weight", name, "discriminator")[0])
    return {"size": size, "channels": channels}


MAX_LISTED_KEYS = 5
"""Layout errors name this many keys of each kind, then count the rest."""


def _shape_text(value: object) -> str:
    return str(list(value.shape)) if isinstance(value, torch.Tensor) else f"a {type(value).__name__}"


def _listing(names: Sequence[str], prefix: str) -> str:
    shown = ", ".join(prefix + name for name in names[:MAX_LISTED_KEYS])
    rest = len(names) - MAX_LISTED_KEYS
    return shown + (f", and {rest} more" if rest > 0 else "")


def layout_problems(
    found: Mapping[str, object], expected: Mapping[str, torch.Tensor], prefix: str = ""
) -> list[str]:
    """How a state dict differs from the layout a module expects, as phrases for an error message.

    Args:
        found: the file's tensors (values need not be tensors: anything else is reported).
        expected: the module's ``state_dict()``.
        prefix: printed before every key (the section of the file they came from, e.g. ``"encoder."``).

    Returns:
        Empty when names and shapes match exactly; else phrases such as ``"2 missing (a, b)"``,
        ``"1 unexpected (c)"``, ``"1 with the wrong shape (d: [3] in the file, expected [4])"``.
    """
    missing = [name for name in expected if name not in found]
    unexpected = [name for name in found if name not in expected]
    mismatched = [
        f"{prefix}{name}: {_shape_text(found[name])} in the file, expected {list(expected[name].shape)}"
        for name in expected
        if name in found
        and (not isinstance(found[name], torch.Tensor) or found[name].shape != expected[name].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({_listing(missing, prefix)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({_listing(unexpected, prefix)})")
    if mismatched:
        shown = "; ".join(mismatched[:MAX_LISTED_KEYS])
        rest = len(mismatched) - MAX_LISTED_KEYS
        problems.append(
            f"{len(mismatched)} with the wrong shape ({shown}{f'; and {rest} more' if rest > 0 else ''})"
        )
    return problems


def _load_strict(module: torch.nn.Module, state: dict, name: str, what: str) -> None:
    problems = layout_problems(state, module.state_dict())
    if problems:
        raise CheckpointError(
            f"{name}: the {what} does not match the StyleGAN2 layout; " + "; ".join(problems)
        )
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{name}: the {what} holds NaN or infinite values in {', '.join(bad[:5])}")
    module.load_state_dict(state, strict=True)


def generator_from_state(
    state: dict,
    name: str = "checkpoint",
    device: str | torch.device = "cpu",
    config: GeneratorConfig | None = None,
) -> Generator:
    """Build the :class:`Generator` that ``state`` belongs to and load it strictly.

    Args:
        state: a generator state dict in the official layout.
        name: the file, for messages.
        device: where to put the generator.
        config: the configuration the file records (style files); ``None``: inferred from the shapes.

    Raises:
        CheckpointError: the recorded configuration disagrees with the weights, or the layout is wrong.
    """
    inferred = infer_generator_config(state, name)
    if config is not None and config.size != inferred.size:
        raise CheckpointError(
            f"{name}: the metadata says {config.size} px but the weights are a {inferred.size} px generator"
        )
    gen = Generator.from_config(config or inferred)
    _load_strict(gen, state, name, "generator")
    return gen.to(device).eval()


def discriminator_from_state(state: dict, name: str = "checkpoint", device="cpu") -> Discriminator:
    """Build a :class:`Discriminator` that fits ``state`` and load it strictly."""
    disc = Discriminator(**infer_discriminator_config(state, name))
    _load_strict(disc, state, name, "discriminator")
    return disc.to(device).eval()


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", discriminator: bool = True
) -> StyleGAN2Checkpoint:
    """Load an official-layout StyleGAN2 checkpoint or JoJoGAN style file.

    Args:
        path: ``.pt``/``.pth``/``.safetensors`` file (see the module docstring for the layouts).
        device: where to put the models.
        discriminator: build the discriminator when the file has one (fine-tuning needs it).

    Raises:
        CheckpointError: with a message naming what is missing or mismatched.
    """
    path = Path(path)
    data = read_weights_file(path, device="cpu")
    gen_state, disc_state, latent_avg = _split_sections(data, path.name)
    gen = generator_from_state(gen_state, path.name, device=device)
    disc = discriminator_from_state(disc_state, path.name, device) if (discriminator and disc_state) else None
    if disc is not None and disc.size != gen.size:
        raise CheckpointError(
            f"{path.name}: discriminator size {disc.size} differs from generator size {gen.size}"
        )
    if latent_avg is not None:
        latent_avg = latent_avg.reshape(-1, latent_avg.shape[-1])[0] if latent_avg.ndim > 1 else latent_avg
        if latent_avg.shape != (gen.style_dim,):
            raise CheckpointError(
                f"{path.name}: latent_avg has shape {tuple(latent_avg.shape)}, expected [{gen.style_dim}]"
            )
        latent_avg = latent_avg.to(device)
    return StyleGAN2Checkpoint(generator=gen, discriminator=disc, latent_avg=latent_avg, path=path)
