"""Safe loading of StyleGAN2 weights in the official (rosinality) layout.

Accepted files:

* ``stylegan2-ffhq-config-f.pt`` and the like: ``{"g_ema": ..., "d": ..., "latent_avg": ...}``
  (``g``/``g_optim``/``d_optim`` and other extra keys are ignored);
* official JoJoGAN style files: ``{"g": generator_state_dict}``;
* e4e checkpoints: ``{"state_dict": {"decoder.*": ...}, "latent_avg": ...}`` (the decoder only);
* a bare generator state dict, and ``.safetensors`` files holding one (optionally prefixed ``g_ema.``,
  ``g.`` or ``generator.``, with ``d.``/``discriminator.`` for a discriminator).

Architecture (size, style_dim, n_mlp, channel table) is inferred from tensor shapes; loading is strict and
never executes pickled code. What shapes cannot tell (the mapping's learning-rate multiplier, NVIDIA's
``conv_clamp``, the minibatch-stddev group) a file may carry under :data:`MODEL_CONFIG_KEY`: a top-level
dict in a ``.pt`` file, a JSON string in a ``.safetensors`` header (see :func:`model_config`).
"""

from __future__ import annotations

import json
import math
import pickle
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from jojogan.errors import CheckpointError
from jojogan.stylegan2.model import Discriminator, Generator

_STYLE_KEY = re.compile(r"^style\.(\d+)\.weight$")
_CONV_KEY = re.compile(r"^convs\.(\d+)\.conv\.weight$")
_D_BLOCK_KEY = re.compile(r"^convs\.(\d+)\.conv1\.0\.weight$")

MODEL_CONFIG_KEY = "jojogan_model"
"""Where a checkpoint keeps the settings its shapes cannot tell (e.g. a converted NVIDIA model's)."""
MODEL_CONFIG_VERSION = 1
_PROFILE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass
class StyleGAN2Checkpoint:
    """What a checkpoint file held.

    Attributes:
        generator: the generator (``g_ema`` or the style file's ``g``), in eval mode.
        discriminator: the discriminator, or ``None`` when the file has none.
        latent_avg: mean w ``[style_dim]``, or ``None`` when the file has none.
        path: where it was read from.
        profile: the domain profile the file records (a converted NVIDIA model's), or ``None``.
    """

    generator: Generator
    discriminator: Discriminator | None
    latent_avg: torch.Tensor | None
    path: Path | None = None
    profile: str | None = None


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


def infer_generator_config(state: dict, name: str = "checkpoint") -> dict:
    """``size``, ``style_dim``, ``n_mlp`` and ``channels`` of a generator state dict, from shapes."""
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
    return {"size": 4 * 2**levels, "style_dim": int(style_dim), "n_mlp": len(style_ids), "channels": channels}


def infer_discriminator_config(state: dict, name: str = "checkpoint") -> dict:
    """``size``, ``channels`` and ``stddev_feat`` of a discriminator state dict, from shapes."""
    blocks = sorted(int(m.group(1)) for k in state if (m := _D_BLOCK_KEY.match(k)))
    if not blocks:
        raise CheckpointError(f"{name}: no residual blocks 'convs.N.conv1.0.weight' in the discriminator")
    size = 2 ** (len(blocks) + 2)
    channels = {size: int(_shape(state, "convs.0.0.weight", name, "discriminator")[0])}
    for i in blocks:
        channels[size // 2**i] = int(_shape(state, f"convs.{i}.conv2.1.weight", name, "discriminator")[0])
    final_in = int(_shape(state, "final_conv.0.weight", name, "discriminator")[1])
    stddev_feat = final_in - channels.get(4, final_in)
    if stddev_feat < 1:
        raise CheckpointError(f"{name}: the discriminator's final conv has no minibatch-stddev input channel")
    return {"size": size, "channels": channels, "stddev_feat": stddev_feat}


# ---------------------------------------------------------------------------------------------- settings
def model_config(generator: Generator, discriminator: Discriminator | None = None, **extra: object) -> dict:
    """What a checkpoint records under :data:`MODEL_CONFIG_KEY` (JSON-ready): the settings of the models that
    their shapes cannot tell, the inferred ones for checking, and ``extra`` fields (e.g. ``source``)."""
    config: dict = {"format_version": MODEL_CONFIG_VERSION, "generator": _json_ready(generator.config)}
    if discriminator is not None:
        config["discriminator"] = _json_ready(discriminator.config)
    return {**config, **extra}


def _json_ready(config: dict) -> dict:
    return {k: ({str(r): c for r, c in v.items()} if k == "channels" else v) for k, v in config.items()}


def _positive(value: object, what: str, name: str, optional: bool = False, integer: bool = False) -> object:
    if value is None and optional:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not 0 < value < math.inf:
        raise CheckpointError(f"{name}: the recorded {what} {value!r} is not a positive number")
    return value if integer else float(value)


def _parse_model_config(raw: object, name: str) -> dict:
    """The loaders' keyword arguments from a recorded config, validated (parsed, never trusted)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("format_version"), int):
        raise CheckpointError(f"{name}: the '{MODEL_CONFIG_KEY}' settings are not a versioned JSON object")
    if raw["format_version"] > MODEL_CONFIG_VERSION:
        raise CheckpointError(
            f"{name} records model settings of format {raw['format_version']}; this jojogan reads up to "
            f"{MODEL_CONFIG_VERSION}: upgrade jojogan"
        )
    gen, disc = raw.get("generator") or {}, raw.get("discriminator") or {}
    if not isinstance(gen, dict) or not isinstance(disc, dict):
        raise CheckpointError(f"{name}: the recorded generator/discriminator settings are not JSON objects")
    parsed = {"generator": {}, "discriminator": {}}
    if "lr_mlp" in gen:
        parsed["generator"]["lr_mlp"] = _positive(gen["lr_mlp"], "lr_mlp", name)
    for part, found in (("generator", gen), ("discriminator", disc)):
        if "conv_clamp" in found:
            parsed[part]["conv_clamp"] = _positive(found["conv_clamp"], "conv_clamp", name, optional=True)
        if "size" in found:
            parsed[part]["size"] = _positive(found["size"], f"{part} size", name, integer=True)
    if "stddev_group" in disc:
        group = _positive(disc["stddev_group"], "stddev_group", name, optional=True, integer=True)
        parsed["discriminator"]["stddev_group"] = group
    source = raw.get("source") if isinstance(raw.get("source"), dict) else {}
    profile = source.get("profile")
    if profile is not None and not (isinstance(profile, str) and _PROFILE_NAME.fullmatch(profile)):
        raise CheckpointError(f"{name}: the recorded domain profile {str(profile)[:40]!r} is not a name")
    return {**parsed, "profile": profile}


def read_model_config(path: Path, data: Mapping) -> dict:
    """The recorded settings of a checkpoint, parsed: ``{"generator": {...}, "discriminator": {...}}`` of
    keyword arguments for the loaders (empty dicts when the file records none), and ``"profile"``: the
    domain profile's name recorded as the source's, or ``None``.

    Args:
        path: the file (a ``.safetensors`` header is read from it).
        data: what :func:`read_weights_file` returned (a ``.pt`` file keeps the settings as a dict entry).
    """
    raw = data.get(MODEL_CONFIG_KEY)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as handle:
            text = (handle.metadata() or {}).get(MODEL_CONFIG_KEY)
        try:
            raw = json.loads(text) if text is not None else None
        except json.JSONDecodeError as error:
            raise CheckpointError(
                f"{path.name}: the '{MODEL_CONFIG_KEY}' header is not JSON ({error})"
            ) from error
    if raw is None:
        return {"generator": {}, "discriminator": {}, "profile": None}
    return _parse_model_config(raw, path.name)


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


def _check_recorded_size(found: int, recorded: int | None, name: str, what: str) -> None:
    if recorded is not None and recorded != found:
        raise CheckpointError(
            f"{name}: the settings record a {recorded} px {what}, the weights are {found} px"
        )


def generator_from_state(
    state: dict,
    name: str = "checkpoint",
    lr_mlp: float = 0.01,
    device: str | torch.device = "cpu",
    conv_clamp: float | None = None,
    size: int | None = None,
) -> Generator:
    """Build a :class:`Generator` that fits ``state`` and load it strictly.

    ``lr_mlp`` and ``conv_clamp`` are settings shapes cannot tell; ``size``, when given, must match.
    """
    config = infer_generator_config(state, name)
    _check_recorded_size(config["size"], size, name, "generator")
    gen = Generator(lr_mlp=lr_mlp, conv_clamp=conv_clamp, **config)
    _load_strict(gen, state, name, "generator")
    return gen.to(device).eval()


def discriminator_from_state(
    state: dict,
    name: str = "checkpoint",
    device="cpu",
    conv_clamp: float | None = None,
    stddev_group: int | None = 4,
    size: int | None = None,
) -> Discriminator:
    """Build a :class:`Discriminator` that fits ``state`` and load it strictly (settings as in
    :func:`generator_from_state`)."""
    config = infer_discriminator_config(state, name)
    _check_recorded_size(config["size"], size, name, "discriminator")
    disc = Discriminator(conv_clamp=conv_clamp, stddev_group=stddev_group, **config)
    _load_strict(disc, state, name, "discriminator")
    return disc.to(device).eval()


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", lr_mlp: float = 0.01, discriminator: bool = True
) -> StyleGAN2Checkpoint:
    """Load an official-layout StyleGAN2 checkpoint or JoJoGAN style file.

    Args:
        path: ``.pt``/``.pth``/``.safetensors`` file (see the module docstring for the layouts).
        device: where to put the models.
        lr_mlp: mapping-network learning-rate multiplier (0.01 for every official model; it cannot be read
            from the weights) when the file records none (see :func:`read_model_config`).
        discriminator: build the discriminator when the file has one (fine-tuning needs it).

    Raises:
        CheckpointError: with a message naming what is missing or mismatched.
    """
    path = Path(path)
    data = read_weights_file(path, device="cpu")
    gen_state, disc_state, latent_avg = _split_sections(data, path.name)
    settings = read_model_config(path, data)
    gen = generator_from_state(
        gen_state, path.name, **{"lr_mlp": lr_mlp, **settings["generator"]}, device=device
    )
    disc = None
    if discriminator and disc_state:
        disc = discriminator_from_state(disc_state, path.name, device, **settings["discriminator"])
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
    return StyleGAN2Checkpoint(gen, disc, latent_avg, path=path, profile=settings["profile"])
