"""Exceptions about input images and faces.

Every error a user can cause with bad input derives from :class:`JojoganError`, so an application (or the
CLI) can catch that one class and show its message, which is written as a single sentence for a person
rather than a stack trace. The base class and :class:`CheckpointError` live in the dependency-free
:mod:`jojogan.errors` so every layer can raise them; they are re-exported here.
"""

from __future__ import annotations

from jojogan.errors import CheckpointError, JojoganError

__all__ = [
    "CheckpointError",
    "FaceNotFoundError",
    "FaceTooSmallError",
    "ImageError",
    "JojoganError",
]


class ImageError(JojoganError):
    """An image could not be used: missing, unreadable, truncated, not an image, or too large."""


class FaceNotFoundError(JojoganError):
    """No usable face was found in an image.

    Args:
        image_name: How the image is named in the message (usually its file name).
        reason: A full sentence replacing the default message; the default says that no face was detected
            and how to skip detection for an image that is already an aligned face crop.
    """

    def __init__(self, image_name: str, reason: str | None = None) -> None:
        self.image_name = image_name
        self.reason = reason
        if reason is None:
            reason = (
                f"No face was found in {image_name}; if it is already an aligned face crop, pass --aligned "
                "(aligned=True in Python) to skip face detection."
            )
        super().__init__(reason)

    def __reduce__(self):
        # The constructor's arguments differ from ``self.args``; keep pickling (worker processes) working.
        return (type(self), (self.image_name, self.reason))


class FaceTooSmallError(FaceNotFoundError):
    """A face was detected but is too small to align into a useful crop.

    Args:
        image_name: How the image is named in the message.
        face_px: The detected face's size in pixels (the shorter side of the detector's box).
        min_px: The smallest size accepted.
    """

    def __init__(self, image_name: str, face_px: int, min_px: int) -> None:
        self.face_px = int(face_px)
        self.min_px = int(min_px)
        super().__init__(
            image_name,
            f"The face in {image_name} is only {self.face_px} px across but at least {self.min_px} px is "
            "needed; use a larger photo or one in which the face fills more of the frame.",
        )

    def __reduce__(self):
        return (type(self), (self.image_name, self.face_px, self.min_px))
