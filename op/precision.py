"""Numeric precision of a heavy job (fine-tuning), as one setting.

``precision`` names what the convolutions and matrix products compute in:

* ``"fp32"``: strict float32; TF32 is switched off for cuDNN and for matrix products (what the CUDA
  parity tests need, and what the CPU always does).
* ``"tf32"``: float32 storage, TF32 tensor-core arithmetic for convolutions and matrix products on
  Ampere and later GPUs (10-bit mantissa products, float32 accumulation).
* ``"bf16"``: autocast to bfloat16 for the convolutions and matrix products of the synthesis network and
  the discriminator; parameters, style codes, demodulation, the loss and the optimiser stay float32.
* ``"auto"``: the device's default, :data:`AUTO_PRECISION` (the GPU's was chosen by measurement, see
  ``benchmarks/RESULTS.md``).

On the CPU every setting computes in float32 except ``"bf16"``, which autocasts there as well (worth it
only on processors with bfloat16 matrix units).

cuDNN's autotuner (``torch.backends.cudnn.benchmark``) is left as the caller set it (off by default): on an
H200 it made a 1024 px fine-tuning step no faster and raised its peak memory from 2.7 to 34 GB
(``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that switch something: the settings check a precision's name
# (check_precision) in processes that never compute, and importing torch costs them a CPU-second.

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "tf32", "bf16")
"""Accepted values of a ``precision`` setting."""

AUTO_PRECISION: dict[str, str] = {"cuda": "tf32", "cpu": "fp32", "mps": "fp32"}
"""What ``"auto"`` means per device type (other device types: ``"fp32"``)."""


def check_precision(precision: str) -> None:
    """Raise ``ValueError`` unless ``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``precision`` with ``"auto"`` replaced by the device's default."""
    import torch

    check_precision(precision)
    if precision != "auto":
        return precision
    return AUTO_PRECISION.get(torch.device(device).type, "fp32")


@contextlib.contextmanager
def precision_scope(precision: str, device: torch.device | str) -> Iterator[str]:
    """Apply ``precision``'s global switches for the duration of a job; yields the resolved name.

    Args:
        precision: one of :data:`PRECISIONS`.
        device: the job's device; only CUDA has switches to set.

    Restores every switch it touched on exit, so a job leaves the process as it found it.
    """
    import torch

    resolved = resolve_precision(precision, device)
    if torch.device(device).type != "cuda":
        yield resolved
        return
    tf32 = resolved != "fp32"
    matmul_before = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        with torch.backends.cudnn.flags(
            enabled=torch.backends.cudnn.enabled,
            benchmark=torch.backends.cudnn.benchmark,
            deterministic=torch.backends.cudnn.deterministic,
            allow_tf32=tf32,
        ):
            yield resolved
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul_before


def autocast(resolved: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The autocast context for a resolved precision: bfloat16 for ``"bf16"``, else nothing."""
    import torch

    if resolved == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
