"""Style files: a fine-tuned generator and how it was made, in one safetensors file.

Layout: the tensors are the generator's full state dict (buffers included) under the official
StyleGAN2 names, without prefix, so any official-layout loader reads them. The safetensors header
metadata (a ``str → str`` map) holds one key, ``"jojogan"``, whose value is a JSON object:

* ``format_version`` (1), ``package_version``, ``created`` (UTC, ISO 8601);
* ``generator``: the generator's configuration, ``generator.config.to_dict()``: ``size``, ``style_dim``,
  ``n_mlp``, ``channels`` (``{resolution: channels}``, keys as strings), ``lr_mlp``, ``blur_kernel`` and
  ``conv_clamp`` (``null`` unless the generator clamps: models converted from NVIDIA's); loading builds
  the generator from it (files without the last two get the official kernel and no clamp);
* whatever the caller adds, typically :func:`style_metadata`'s fields: the run's settings (every
  :class:`~jojogan.config.FinetuneConfig` field, ``mask`` as the swapped style layers), the base
  checkpoint's name and sha256, the references' sha256s and the losses.

:func:`load_style` also reads the official JoJoGAN style files, ``{"g": state_dict}`` saved with
``torch.save``, without executing pickled code.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from jojogan.errors import CheckpointError
from jojogan.fileio import atomic_output, file_sha256
from jojogan.stylegan2.checkpoint import generator_from_state, read_weights_file
from jojogan.stylegan2.config import GeneratorConfig
from jojogan.stylegan2.model import Generator

__all__ = [
    "STYLE_FORMAT_VERSION",
    "StyleFile",
    "check_dtypes",
    "is_style_file",
    "load_style",
    "read_style_metadata",
    "save_style",
    "style_metadata",
]

STYLE_FORMAT_VERSION = 1
"""Version of the style-file metadata this code writes; newer files are refused, older ones read."""

_METADATA_KEY = "jojogan"
# Keys save_style fills in itself; a caller's values for them are replaced.
_RESERVED_KEYS = ("format_version", "package_version", "created", "generator")


@dataclass
class StyleFile:
    """A loaded style.

    Attributes:
        generator: the fine-tuned generator (eval mode).
        metadata: the JSON metadata; for official JoJoGAN files ``{"format": "jojogan-official", ...}``.
        path: where it was read from.
    """

    generator: Generator
    metadata: dict
    path: Path


def _package_version() -> str:
    from jojogan import __version__

    return __version__


def _recorded_config(metadata: dict, name: str) -> GeneratorConfig:
    """The generator configuration a style file records (``generator.config`` when it was saved)."""
    recorded = metadata.get("generator")
    if not isinstance(recorded, dict):
        raise CheckpointError(f"{name}: the style metadata has no generator configuration")
    try:
        return GeneratorConfig.from_dict(recorded)
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"{name}: the style metadata's generator configuration is invalid ({error})"
        ) from error


def style_metadata(
    *,
    base_name: str,
    base_sha256: str | None,
    reference_sha256s: Sequence[str],
    losses: Sequence[float],
    run: Mapping[str, object],
    **extra: object,
) -> dict:
    """The provenance fields a style file records (JSON-ready).

    Args:
        base_name: file name of the base checkpoint.
        base_sha256: its sha256 (``None`` when unknown).
        reference_sha256s: sha256 of each reference image file (or of its pixels).
        losses: the loss of every step.
        run: the run's settings, :func:`jojogan.finetune.run_record` (the config's fields, ``mask`` as
            the swapped S layers).
        extra: further JSON-serialisable fields (e.g. ``inversion``, ``reference_names``).
    """
    return {
        **run,
        "base_checkpoint": {"name": base_name, "sha256": base_sha256},
        "reference_sha256s": list(reference_sha256s),
        "losses": [float(v) for v in losses],
        **extra,
    }


def save_style(path: str | os.PathLike, generator: Generator, metadata: Mapping | None = None) -> Path:
    """Write a style file atomically: either the complete new file exists afterwards, or nothing changed.

    The file is written to a temporary file in the same folder, flushed to disk and renamed over
    ``path``; on any failure the temporary file is removed.

    Args:
        path: destination, ending in ``.safetensors``.
        generator: the fine-tuned generator.
        metadata: JSON-serialisable fields to record (see :func:`style_metadata`).

    Returns:
        The path written.

    Raises:
        ValueError: a wrong suffix, metadata that is not JSON-serialisable, or non-finite weights.
        JojoganError: the file could not be written (missing folder, full disk, permissions).
    """
    from safetensors.torch import save as safetensors_bytes

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"style files are .safetensors files, got {path.name}")
    # Cloned so that no two entries share storage, which safetensors refuses.
    state = {
        key: value.detach().to("cpu").contiguous().clone() for key, value in generator.state_dict().items()
    }
    bad = [
        key for key, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()
    ]
    if bad:
        raise ValueError(f"refusing to save a generator with NaN or infinite weights in {', '.join(bad[:5])}")
    fields = {key: value for key, value in dict(metadata or {}).items() if key not in _RESERVED_KEYS}
    fields.update(
        format_version=STYLE_FORMAT_VERSION,
        package_version=_package_version(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        generator=generator.config.to_dict(),
    )
    try:
        text = json.dumps(fields, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise ValueError(f"style metadata must be JSON-serialisable with finite numbers: {error}") from error
    payload = safetensors_bytes(state, metadata={"format": "pt", _METADATA_KEY: text})

    with atomic_output(path) as tmp:
        with open(tmp, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
    return path


MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects accepted in style metadata (ours is 3 levels deep)."""

FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
"""How the tensors of a generator may be stored (safetensors' names): weights are floating point."""


def _json_depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` in a JSON text (strings skipped), in one pass, no recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _not_finite(constant: str):
    raise ValueError(f"{constant} is not a finite number")


def _is_int(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _power_of_two(value: object, high: int) -> bool:
    return _is_int(value, 4, high) and value & (value - 1) == 0


def _generator_problem(config: object) -> str | None:
    """What is wrong with the ``generator`` field (``None``: nothing): types and ranges of each value."""
    if not isinstance(config, dict):
        return "has no generator configuration (an object)"
    checks = {
        "size": lambda v: _power_of_two(v, 8192),
        "style_dim": lambda v: _is_int(v, 1, 8192),
        "n_mlp": lambda v: _is_int(v, 1, 64),
        "lr_mlp": lambda v: _is_number(v) and 0 < v <= 1,
        "conv_clamp": lambda v: v is None or (_is_number(v) and v > 0),
        "channels": lambda v: (
            isinstance(v, dict)
            and all(
                k.isdigit() and _power_of_two(int(k), 8192) and _is_int(c, 1, 16384) for k, c in v.items()
            )
        ),
    }
    expected = {
        "size": "a power of two from 4 to 8192",
        "style_dim": "a whole number from 1 to 8192",
        "n_mlp": "a whole number from 1 to 64",
        "lr_mlp": "a finite number in (0, 1] (0.01 for every official model)",
        "conv_clamp": "a positive finite number (NVIDIA's models: 256), or none",
        "channels": 'an object {"resolution": channels}',
    }
    for key, check in checks.items():
        if key in config and not check(config[key]):
            return f"says generator.{key} = {_shown(config[key])}; expected {expected[key]}"
    return None


_FIELDS = {
    "package_version": (lambda v: isinstance(v, str), "a string"),
    "created": (lambda v: isinstance(v, str), "a string"),
    "base_checkpoint": (
        lambda v: (
            isinstance(v, dict) and all(isinstance(v.get(k), (str, type(None))) for k in ("name", "sha256"))
        ),
        'an object {"name": ..., "sha256": ...}',
    ),
    "reference_sha256s": (
        lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "a list of strings",
    ),
    "losses": (lambda v: isinstance(v, list) and all(_is_number(x) for x in v), "a list of finite numbers"),
    "iterations": (lambda v: _is_int(v, 0, 10**9), "a whole number"),
}
"""The provenance fields save_style writes, with their types; other fields are free (JSON, bounded depth)."""


def _shown(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _parse_metadata(header: dict | None, name: str) -> dict | None:
    """The ``jojogan`` metadata of a safetensors header, checked against its schema before anything is
    built: a JSON object no deeper than :data:`MAX_JSON_DEPTH`, finite numbers only, a known format
    version, the generator configuration's types and ranges, and the provenance fields' types."""
    if not header or _METADATA_KEY not in header:
        return None
    text = header[_METADATA_KEY]
    if _json_depth(text) > MAX_JSON_DEPTH:
        raise CheckpointError(f"{name}: the style metadata is nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        metadata = json.loads(text, parse_constant=_not_finite)
    except (ValueError, RecursionError) as error:
        raise CheckpointError(f"{name}: the style metadata is not valid JSON ({error})") from error
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{name}: the style metadata is not a JSON object (got {_shown(metadata)})")
    version = metadata.get("format_version")
    if not _is_int(version, 1, 10**6):
        raise CheckpointError(f"{name}: the style metadata has no valid format_version (got {version!r})")
    if version > STYLE_FORMAT_VERSION:
        raise CheckpointError(
            f"{name} was written in style format {version}, this jojogan reads up to {STYLE_FORMAT_VERSION}; "
            f"upgrade jojogan to load it"
        )
    problem = _generator_problem(metadata.get("generator"))
    if problem:
        raise CheckpointError(f"{name}: the style metadata {problem}")
    for key, (check, expected) in _FIELDS.items():
        if key in metadata and not check(metadata[key]):
            raise CheckpointError(
                f"{name}: the style metadata's {key} is {_shown(metadata[key])}; expected {expected}"
            )
    return metadata


def check_dtypes(dtypes: Mapping[str, str], name: str) -> None:
    """Every tensor of a generator is stored as floating point (an int64 copy of a weight would be used
    truncated).

    Args:
        dtypes: tensor name → safetensors dtype name (``"F32"``, ``"I64"``, ...).
        name: the file, for the message.

    Raises:
        CheckpointError: the first tensor stored otherwise, named.
    """
    for key, dtype in dtypes.items():
        if dtype not in FLOAT_DTYPES:
            raise CheckpointError(
                f"{name}: tensor {key} is stored as {dtype}; a generator's weights are floating point "
                f"({', '.join(FLOAT_DTYPES)})"
            )


def is_style_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a ``.safetensors`` file carrying jojogan style metadata (reads the header only;
    an unreadable file is not one: its loader reports why)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata()
    except (SafetensorError, OSError, ValueError):
        return False
    return bool(header) and _METADATA_KEY in header


def read_style_metadata(path: str | os.PathLike) -> dict | None:
    """The jojogan metadata of a ``.safetensors`` style file, reading only its header (``None``: none).

    Raises:
        CheckpointError: the file is unreadable or its metadata is invalid.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata()
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path.name} is not a readable safetensors file ({error})") from error
    return _parse_metadata(header, path.name)


def _read_safetensors(path: Path) -> tuple[dict, dict | None]:
    """The tensors and the checked metadata; the metadata and every tensor's dtype are checked from the
    header before any tensor is read."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = _parse_metadata(handle.metadata(), path.name)
            check_dtypes({key: handle.get_slice(key).get_dtype() for key in handle.keys()}, path.name)
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path.name} is not a readable safetensors file ({error})") from error
    return state, metadata


def _dtype_names(state: Mapping) -> dict[str, str]:
    """The safetensors dtype name of each tensor of a state dict (what :func:`check_dtypes` reads)."""
    names = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.float64: "F64"}
    return {
        str(key): names.get(value.dtype, str(value.dtype).removeprefix("torch."))
        for key, value in state.items()
        if isinstance(value, torch.Tensor)
    }


def load_style(path: str | os.PathLike, device: str | torch.device = "cpu") -> StyleFile:
    """Load a style file: ours (``.safetensors``) or an official JoJoGAN one (``{"g": state_dict}`` ``.pt``).

    A ``.safetensors`` file without jojogan metadata is read as a bare generator state dict
    (metadata ``{"format": "state-dict"}``).

    Args:
        path: the style file.
        device: where to put the generator.

    Returns:
        :class:`StyleFile`.

    Raises:
        CheckpointError: the file is missing, unreadable, unsafe, not in the generator layout, holds NaN
            or infinite weights, or was written by a newer format version.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise CheckpointError(f"style file not found: {path}")
        state, metadata = _read_safetensors(path)
        config = None if metadata is None else _recorded_config(metadata, path.name)
        generator = generator_from_state(state, path.name, device=device, config=config)
        metadata = {"format": "state-dict", "source": path.name} if metadata is None else metadata
        return StyleFile(generator=generator, metadata=metadata, path=path)

    data = read_weights_file(path, device="cpu")
    state = data.get("g")
    if not isinstance(state, dict):
        keys = ", ".join(map(str, list(data)[:8]))
        raise CheckpointError(
            f"{path.name} is not a style file: expected a .safetensors style file or an official JoJoGAN "
            f'file {{"g": state_dict}}, found top-level keys: {keys}'
        )
    check_dtypes(_dtype_names(state), path.name)
    generator = generator_from_state(state, path.name, device=device)
    metadata = {"format": "jojogan-official", "source": path.name, "sha256": file_sha256(path)}
    return StyleFile(generator=generator, metadata=metadata, path=path)
