"""Where weights live: a small registry of the official files and the local cache directory.

Nothing is downloaded implicitly. The registry says what each file is, its expected layout and where users
get it; :func:`resolve_weights` finds a file given a path or a registry name, and explains what to do when
it is missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from jojogan.stylegan2.errors import CheckpointError


@dataclass(frozen=True)
class WeightsInfo:
    """One entry of the registry.

    Attributes:
        name: registry name used on the command line (``--base ffhq``).
        filename: file name in the cache directory.
        description: what it is.
        source: where users download it from.
        layout: the tensor layout the loader expects.
        licence: the licence the weights are released under, where it restricts their use.
    """

    name: str
    filename: str
    description: str
    source: str
    layout: str
    licence: str = ""


REGISTRY: dict[str, WeightsInfo] = {
    info.name: info
    for info in (
        WeightsInfo(
            name="ffhq",
            filename="stylegan2-ffhq-config-f.pt",
            description="StyleGAN2 config-f, FFHQ, 1024 px (generator, discriminator, mean latent)",
            source="the JoJoGAN repository's model links (rosinality conversion of NVIDIA's model)",
            layout="{'g_ema': ..., 'd': ..., 'latent_avg': [512]} in the rosinality layout",
        ),
        WeightsInfo(
            name="e4e",
            filename="e4e_ffhq_encode.pt",
            description="encoder4editing FFHQ encoder (IR-SE50 backbone) producing W+ [18, 512]",
            source="the encoder4editing repository's pretrained models (e4e_ffhq_encode.pt)",
            layout="{'state_dict': {'encoder.*', 'decoder.*'}, 'latent_avg': [18, 512], 'opts': ...}",
        ),
        WeightsInfo(
            name="codeformer",
            filename="codeformer.pth",
            description="CodeFormer face restoration at 512 px (--cleanup codeformer, --restore-input)",
            source="the CodeFormer repository's release assets (sczhou/CodeFormer, v0.1.0, codeformer.pth)",
            layout="{'params_ema': state_dict} with 515 tensors (position_emb [256, 512], encoder.*, ...)",
            licence="NTU S-Lab License 1.0: non-commercial use only (CodeFormer's code and weights)",
        ),
    )
}


def cache_dir() -> Path:
    """The weights cache: ``$JOJOGAN_HOME`` or ``~/.cache/jojogan``."""
    root = os.environ.get("JOJOGAN_HOME")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "jojogan"


def resolve_weights(spec: str | os.PathLike | None, default: str) -> Path:
    """Find a weights file.

    Args:
        spec: a path, a registry name (``"ffhq"``, ``"e4e"``), or ``None`` for ``default``.
        default: registry name used when ``spec`` is ``None``.

    Returns:
        An existing file.

    Raises:
        CheckpointError: the file does not exist; the message says where it was looked for, how to get it,
            and that any file in the official layout works.
    """
    if spec is not None and str(spec) not in REGISTRY:
        path = Path(spec).expanduser()
        if path.is_file():
            return path
        raise CheckpointError(f"weights file not found: {path}")
    info = REGISTRY[str(spec) if spec is not None else default]
    path = cache_dir() / info.filename
    if path.is_file():
        return path
    raise CheckpointError(
        f"{info.filename} ({info.description}) is not in the weights cache {cache_dir()}. "
        f"Download it from {info.source} and put it there (or set JOJOGAN_HOME), or pass its path; "
        f"any file in the official layout works ({info.layout})."
    )
