"""Exceptions shared by every layer of jojogan (defined at the bottom so all layers can raise them)."""


class JojoganError(Exception):
    """Base class of the errors jojogan reports to users (the CLI prints the message, no traceback)."""


class CheckpointError(JojoganError):
    """A weights file is missing, unreadable, unsafe to load, or not in the expected layout."""
