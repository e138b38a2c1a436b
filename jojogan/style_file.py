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


def _parse_metadata(header: dict | None, name: str) -> dict | None:
    if not header or _METADATA_KEY not in header:
        return None
    try:
        metadata = json.loads(header[_METADATA_KEY])
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{name}: the style metadata is not valid JSON ({error})") from error
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{name}: the style metadata is not a JSON object")
    version = metadata.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{name}: the style metadata has no valid format_version (got {version!r})")
    if version > STYLE_FORMAT_VERSION:
        raise CheckpointError(
            f"{name} was written in style format {version}, this jojogan reads up to {STYLE_FORMAT_VERSION}; "
            f"upgrade jojogan to load it"
        )
    return metadata


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
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata()
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path.name} is not a readable safetensors file ({error})") from error
    return state, _parse_metadata(header, path.name)


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
    generator = generator_from_state(state, path.name, device=device)
    metadata = {"format": "jojogan-official", "source": path.name, "sha256": file_sha256(path)}
    return StyleFile(generator=generator, metadata=metadata, path=path)
