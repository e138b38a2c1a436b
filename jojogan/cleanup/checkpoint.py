"""Loading CodeFormer weights: the official ``codeformer.pth`` (key ``params_ema``), safely and strictly."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from jojogan.cleanup.network import CodeFormer, CodeFormerConfig
from jojogan.errors import CheckpointError
from jojogan.stylegan2.checkpoint import read_weights_file
from jojogan.weights import resolve_weights

__all__ = ["check_layout", "codeformer_state_dict", "load_codeformer"]

# How many differing names a layout error lists: enough to see the pattern, short enough to read.
_SHOWN = 5


def codeformer_state_dict(data: Mapping) -> dict[str, torch.Tensor]:
    """The network's tensors inside a loaded file.

    The official release stores them under ``params_ema`` (``params`` in training snapshots); a bare state
    dict (``.safetensors`` or a re-saved file) is taken as it is.
    """
    for key in ("params_ema", "params"):
        if isinstance(data.get(key), Mapping):
            return dict(data[key])
    return dict(data)


def _describe(value) -> str:
    return (
        str(list(value.shape))
        if isinstance(value, torch.Tensor)
        else f"not a tensor ({type(value).__name__})"
    )


def check_layout(state: Mapping[str, torch.Tensor], model: CodeFormer, name: str = "the file") -> None:
    """Raise :class:`CheckpointError` naming the first differences unless ``state`` fits ``model`` exactly.

    Args:
        state: tensors by name, as read from a file.
        model: the network they must fill (only names and shapes are read, so a ``meta`` model works).
        name: how the file is named in the message.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {_describe(state[k])} (expected {list(shape)})"
        for k, shape in expected.items()
        if k in state and (not isinstance(state[k], torch.Tensor) or tuple(state[k].shape) != shape)
    ]
    if not (missing or unexpected or wrong):
        return
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
            parts.append(f"{label} ({len(items)}): " + ", ".join(items[:_SHOWN]) + more)
    raise CheckpointError(
        f"{name} is not a CodeFormer checkpoint in the official layout (params_ema with {len(expected)} "
        f"tensors, e.g. {next(iter(expected))} {list(next(iter(expected.values())))}); " + "; ".join(parts)
    )


def load_codeformer(
    path: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    config: CodeFormerConfig | None = None,
) -> CodeFormer:
    """Load a CodeFormer network from a weights file, strictly and without executing pickled code.

    Args:
        path: the official ``codeformer.pth`` (``{"params_ema": state_dict, ...}``), or a ``.pt``/
            ``.safetensors`` file holding that state dict; ``"codeformer"`` or ``None`` for the file in
            the weights cache (``jojogan.weights``).
        device: where the network goes.
        config: the architecture; the released model's by default.

    Returns:
        The network in eval mode, float32, on ``device`` (channels-last on the CPU); ``forward(x, w)``
        takes ``[B, 3, 512, 512]``.

    Raises:
        CheckpointError: the file is missing or unreadable, holds pickled objects other than tensors
            (refused by weights-only loading), or its names or shapes differ from the official layout
            (the message lists the first differing names).
    """
    path = resolve_weights(path, default="codeformer", download=True)
    state = codeformer_state_dict(read_weights_file(path))
    with torch.device("meta"):  # only names and shapes: skip initialising 94 M parameters
        model = CodeFormer(config)
    check_layout(state, model, path.name)
    state = {k: v.to(torch.float32) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model = model.to(device).eval().requires_grad_(False)
    if torch.device(device).type == "cpu":
        # oneDNN's convolutions run about 8% faster on channels-last tensors here (benchmarks/RESULTS.md);
        # cleanup_face hands the network its input in the same format.
        model = model.to(memory_format=torch.channels_last)
    return model
