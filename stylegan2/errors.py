"""The project's exceptions as the model layer sees them (they live in :mod:`jojogan.errors`)."""

from jojogan.errors import CheckpointError, JojoganError

__all__ = ["CheckpointError", "JojoganError"]
