"""Choosing between the reference and the CUDA implementation of an operator.

``JOJOGAN_OPS`` (read on every call, so tests can flip it):

* ``auto`` (default): CUDA tensors use the compiled kernels; if the build fails, warn once and use the
  reference from then on.
* ``cuda``: CUDA tensors must use the compiled kernels; a build failure raises.
* ``ref``: always the reference; nothing is ever compiled.

CPU tensors always use the reference.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# torch is imported by the two reports that need it: the environment switches and the cache folder
# (env_choice, home_dir) are read by processes that never compute, such as Ray's drivers.

MODES = ("auto", "cuda", "ref")
IMPLS = ("ref", "cuda")

_build_error: str | None = None
_warned = False


def env_choice(variable: str, choices: tuple[str, ...]) -> str:
    """The value of an environment switch (case-insensitive; unset or empty: ``choices[0]``).

    Raises:
        ValueError: a value not in ``choices``.
    """
    value = os.environ.get(variable, "").strip().lower() or choices[0]
    if value not in choices:
        raise ValueError(f"{variable} must be one of {choices}, got {value!r}")
    return value


def home_dir() -> Path:
    """The project's cache folder: ``$JOJOGAN_HOME``, else ``~/.cache/jojogan``.

    The one owner of that choice: downloaded weights live in it, the compiled ops in its ``ops/``.
    """
    root = os.environ.get("JOJOGAN_HOME")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "jojogan"


def ops_mode() -> str:
    """The policy named by ``JOJOGAN_OPS``; raises ``ValueError`` for an unknown value."""
    return env_choice("JOJOGAN_OPS", MODES)


def _load_cuda():
    """Build (or fetch from cache) the CUDA extension; returns the module or raises ``RuntimeError``."""
    from jojogan.op import _build

    return _build.load_extension()


def resolve(impl: str | None, tensor: torch.Tensor):
    """Decide which implementation serves a call.

    Args:
        impl: ``None`` to follow ``JOJOGAN_OPS``, or ``"ref"``/``"cuda"`` to force one.
        tensor: the op's main input; its device decides whether CUDA is possible at all.

    Returns:
        ``None`` for the reference, or the loaded CUDA extension module.
    """
    global _build_error, _warned
    if impl is not None and impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS} or None, got {impl!r}")
    if impl == "ref":
        return None
    if not tensor.is_cuda:
        if impl == "cuda":
            raise ValueError("impl='cuda' needs a CUDA tensor, got one on " + str(tensor.device))
        return None
    mode = "cuda" if impl == "cuda" else ops_mode()
    if mode == "ref":
        return None
    try:
        return _load_cuda()
    except Exception as error:  # noqa: BLE001 - any build problem means the same fallback
        _build_error = f"{type(error).__name__}: {error}"
        if mode == "cuda":
            raise RuntimeError(
                f"JOJOGAN_OPS=cuda but the CUDA ops could not be built: {_build_error}"
            ) from error
        if not _warned:
            warnings.warn(
                f"jojogan: CUDA ops unavailable, using the PyTorch reference ({_build_error})", stacklevel=3
            )
            _warned = True
        return None


def active_impl(device: str | torch.device = "cpu") -> tuple[str, str]:
    """Which implementation ops on ``device`` would use now, and why (for ``jojogan env``).

    Does not compile anything: on CUDA it reports whether a cached build exists.
    """
    import torch

    device = torch.device(device)
    mode = ops_mode()
    if device.type != "cuda":
        return "ref", f"tensors on {device.type} always use the PyTorch reference"
    if mode == "ref":
        return "ref", "JOJOGAN_OPS=ref"
    if _build_error is not None:
        return "ref", f"CUDA build failed earlier: {_build_error}"
    from jojogan.op import _build

    state = "cached build present" if _build.is_cached() else "will compile on first use"
    return "cuda", f"JOJOGAN_OPS={mode}; {state}"


def ops_report() -> dict[str, str]:
    """A small dict describing the op configuration, for diagnostics."""
    import torch

    report = {"JOJOGAN_OPS": ops_mode()}
    for dev in ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",):
        impl, why = active_impl(dev)
        report[f"ops[{dev}]"] = f"{impl} ({why})"
    return report
