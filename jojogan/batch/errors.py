"""Errors of the batch layer."""

from __future__ import annotations

from jojogan.errors import JojoganError

__all__ = ["BatchError", "EngineUnavailableError"]


class BatchError(JojoganError):
    """The batch as a whole cannot run (no inputs, an unreadable list, an unusable output folder)."""


class EngineUnavailableError(BatchError):
    """The chosen engine's optional dependency is not installed (the message names the extra)."""
