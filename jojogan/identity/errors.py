"""Errors of the identity stage."""

from __future__ import annotations

from jojogan.errors import JojoganError

__all__ = ["IdentityError", "MissingExtraError"]


class IdentityError(JojoganError):
    """A face-recognition network cannot be used as asked, or it produced an unusable embedding."""


class MissingExtraError(IdentityError):
    """An optional dependency a recognizer needs is not installed.

    Args:
        what: what needs it (e.g. ``"the ONNX recognizer arcface-w600k-r50"``).
        package: the missing import name.
        extra: the ``jojogan[...]`` extra that installs it.
    """

    def __init__(self, what: str, package: str, extra: str) -> None:
        self.what = what
        self.package = package
        self.extra = extra
        super().__init__(
            f"{what} needs the '{package}' package, which is not installed: pip install \"jojogan[{extra}]\""
        )

    def __reduce__(self):
        return (type(self), (self.what, self.package, self.extra))
