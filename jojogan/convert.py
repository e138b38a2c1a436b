"""NVIDIA's StyleGAN2 pickles as official-layout checkpoints: converted once, saved, cached.

:func:`convert_network_pickle` reads a stylegan2-ada-pytorch / stylegan3 ``.pkl`` as data (nothing in it
runs, see :mod:`jojogan.stylegan2.nvidia_pickle`) and maps it to the official layout
(:mod:`jojogan.stylegan2.nvidia`); :func:`save_converted` writes ``{g_ema, d, latent_avg}`` as
``.safetensors`` (``g_ema.*``, ``d.*``, ``latent_avg``) or ``.pt``, with the settings shapes cannot tell
(``conv_clamp``, ``lr_mlp``, the stddev group) and the provenance under
:data:`~jojogan.stylegan2.checkpoint.MODEL_CONFIG_KEY`, so :func:`~jojogan.stylegan2.load_checkpoint`
rebuilds exactly the converted models. :func:`base_checkpoint_path` is what ``--base MODEL.pkl`` goes
through: the pickle's sha256 names its conversion in ``<weights cache>/converted/``, made on first use.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from jojogan.errors import CheckpointError
from jojogan.fileio import atomic_output
from jojogan.stylegan2.checkpoint import MODEL_CONFIG_KEY, model_config, read_model_config
from jojogan.stylegan2.nvidia import NvidiaConversion, convert_records
from jojogan.stylegan2.nvidia_pickle import is_pickle_file, read_network_pickle
from jojogan.weights import cache_dir, file_sha256, find_entry

__all__ = [
    "CONVERTED_SUFFIXES",
    "base_checkpoint_path",
    "cached_conversion_path",
    "convert_network_pickle",
    "describe",
    "save_converted",
    "source_profile",
]

log = logging.getLogger(__name__)

CONVERTED_SUFFIXES = (".safetensors", ".pt")
"""What a conversion can be written as."""


def convert_network_pickle(path: str | os.PathLike) -> NvidiaConversion:
    """Read NVIDIA's network pickle as data and map it to the official layout.

    Raises:
        CheckpointError: one line: a refused global, a truncated file, not a StyleGAN2 (StyleGAN3, a
            conditional model, another network) or a missing/misshapen tensor.
    """
    path = Path(path)
    return convert_records(read_network_pickle(path), path.name)


def describe(conversion: NvidiaConversion) -> str:
    """One line saying what was converted (size, latent size, mapping depth, clamp, discriminator)."""
    g = conversion.generator_config
    clamp = "no conv_clamp" if g["conv_clamp"] is None else f"conv_clamp {g['conv_clamp']:g}"
    disc = "with its discriminator" if conversion.d is not None else "without a discriminator"
    return f"{g['size']} px, w {g['style_dim']}, {g['n_mlp']} mapping layers, {clamp}, {disc}"


def save_converted(
    conversion: NvidiaConversion,
    output: str | os.PathLike,
    source: Path | None = None,
    sha256: str | None = None,
    profile: str | None = None,
) -> Path:
    """Write ``conversion`` as an official-layout checkpoint (atomically: all of it or nothing).

    Args:
        conversion: what :func:`convert_network_pickle` returned.
        output: ``.safetensors`` or ``.pt``.
        source: the pickle it came from (its name is recorded).
        sha256: the pickle's sha256 (recorded; computed from ``source`` when not given).
        profile: the domain profile to record (a :data:`jojogan.domains.PROFILES` name); ``None``: the one
            of the weights-registry row named like ``source``, if any.

    Returns:
        ``output``.
    """
    output = Path(output)
    if output.suffix not in CONVERTED_SUFFIXES:
        raise CheckpointError(f"a converted checkpoint is a .safetensors or .pt file, got {output.name}")
    if source is not None and sha256 is None:
        sha256 = file_sha256(source)
    profile = profile or (source_profile(source) if source is not None else None)
    provenance = {"file": source.name if source else None, "sha256": sha256, "profile": profile}
    provenance.update(conversion.source)
    config = model_config(conversion.generator(), conversion.discriminator(), source=provenance)
    g_ema = {k: v.detach().contiguous().clone() for k, v in conversion.g_ema.items()}
    d = {k: v.detach().contiguous().clone() for k, v in (conversion.d or {}).items()}
    latent_avg = conversion.latent_avg.detach().contiguous().clone()
    with atomic_output(output) as tmp:
        if output.suffix == ".safetensors":
            from safetensors.torch import save_file

            tensors = {**{f"g_ema.{k}": v for k, v in g_ema.items()}, **{f"d.{k}": v for k, v in d.items()}}
            metadata = {"format": "pt", MODEL_CONFIG_KEY: json.dumps(config, sort_keys=True)}
            save_file({**tensors, "latent_avg": latent_avg}, str(tmp), metadata=metadata)
        else:
            data = {"g_ema": g_ema, "latent_avg": latent_avg, MODEL_CONFIG_KEY: config}
            torch.save({**data, **({"d": d} if d else {})}, tmp)
    return output


def source_profile(source: Path) -> str | None:
    """The domain profile of the weights-registry row whose file is named like ``source`` (NVIDIA's
    ``afhqcat.pkl`` is the ``afhq-cat`` row's), or ``None``."""
    row = find_entry(Path(source).name)
    return row.profile if row is not None else None


def cached_conversion_path(source: Path, sha256: str) -> Path:
    """Where the conversion of the pickle with this sha256 lives in the weights cache."""
    return cache_dir() / "converted" / f"{source.stem}-{sha256[:16]}.safetensors"


def _recorded_source(path: Path) -> str | None:
    """The source sha256 a cached conversion records, or ``None`` when it cannot be read."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            config = json.loads((handle.metadata() or {}).get(MODEL_CONFIG_KEY, "{}"))
        read_model_config(path, {})  # the settings parse, so the file will load
    except (SafetensorError, OSError, ValueError, CheckpointError):
        return None
    source = config.get("source") if isinstance(config, dict) else None
    return source.get("sha256") if isinstance(source, dict) else None


def base_checkpoint_path(path: str | os.PathLike) -> Path:
    """The checkpoint to load for ``--base path``: ``path`` itself, or for NVIDIA's ``.pkl`` its
    conversion, made once and kept in ``<weights cache>/converted/`` under the pickle's sha256.

    A cached conversion is used only when it records the same source sha256 (a damaged or foreign file is
    converted again).
    """
    from filelock import FileLock

    path = Path(path)
    if not is_pickle_file(path):
        return path
    sha256 = file_sha256(path)
    target = cached_conversion_path(path, sha256)
    lock = cache_dir() / ".locks" / f"{target.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        if target.is_file() and _recorded_source(target) == sha256:
            log.debug("using %s, the cached conversion of %s", target, path)
            return target
        conversion = convert_network_pickle(path)
        save_converted(conversion, target, source=path, sha256=sha256)
    log.info("converted %s (%s) once into %s", path.name, describe(conversion), target)
    return target
