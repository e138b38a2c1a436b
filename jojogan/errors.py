"""The project-wide exception base, importable from every layer without importing anything else.

Every error a user can cause derives from :class:`JojoganError`, so an application (or the CLI) can catch
that one class and show its message. This module imports nothing, so ``jojogan.op`` and
``jojogan.stylegan2`` can raise these errors without loading the layers above them.
"""

__all__ = ["CheckpointError", "JojoganError"]


class JojoganError(Exception):
    """Base class of the errors jojogan reports to users (the CLI prints the message, no traceback)."""


class CheckpointError(JojoganError):
    """A weights file is missing, unreadable, unsafe to load, or not in the expected layout."""
