"""One photo's work, shared by every engine: the settings of a batch and the worker that applies them.

The worker calls :meth:`jojogan.api.JoJoGAN.stylize` with the same arguments as ``jojogan stylize`` and
encodes the result the way :func:`jojogan.imaging.save_image` writes it (PNG with the result's metadata),
so a batch output is byte-for-byte the single-photo command's output.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from jojogan.cleanup.restore import DEFAULT_FIDELITY
from jojogan.config import CLEANUPS, INVERSION_DISTANCES, INVERSIONS, STYLED_SUFFIX
from jojogan.identity import DEFAULT_METRIC_NETWORK
from jojogan.inversion.images import DEFAULT_MAX_PIXELS
from jojogan.style_file import file_sha256

__all__ = ["BatchSettings", "PhotoResult", "Stylizer", "encode_png"]

OUTPUT_SUFFIX = STYLED_SUFFIX  # as ``jojogan stylize`` names its results in a folder


@dataclass(frozen=True)
class BatchSettings:
    """Everything that decides a batch's outputs (and, for resuming, its fingerprint).

    The fields mean what the ``jojogan stylize`` options of the same names mean. ``face`` also takes
    ``"all"``: every face of the photo, one output each (``STEM_face{i}_styled.png``), or with ``paste``
    one photo with every face pasted back. ``identity_net=None`` does not measure identity.
    """

    style: Path
    alpha: float | tuple[float, ...] = 1.0
    inversion: str = INVERSIONS[0]
    inversion_steps: int | None = None
    distance: str = INVERSION_DISTANCES[0]
    aligned: bool = False
    face: str | int = "largest"
    paste: bool = False
    match_colour: bool = False
    cleanup: str | None = None
    fidelity: float = DEFAULT_FIDELITY
    restore_input: bool = False
    identity_net: str | None = DEFAULT_METRIC_NETWORK
    identity_weights: Path | None = None
    base: Path | None = None
    e4e: Path | None = None
    codeformer: Path | None = None
    device: str = "auto"
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    _fingerprint: list[str] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.inversion not in INVERSIONS:
            raise ValueError(f"inversion must be one of {INVERSIONS}, got {self.inversion!r}")
        if self.cleanup is not None and self.cleanup not in CLEANUPS:
            raise ValueError(f"cleanup must be None or one of {CLEANUPS}, got {self.cleanup!r}")
        if not (self.face in ("largest", "all") or (isinstance(self.face, int) and self.face >= 0)):
            raise ValueError(f'face must be "largest", "all" or an index >= 0, got {self.face!r}')
        if self.paste and self.aligned:
            raise ValueError("paste needs the photo's alignment, which aligned inputs do not have")
        if isinstance(self.alpha, list):
            object.__setattr__(self, "alpha", tuple(self.alpha))

    def fingerprint(self) -> str:
        """sha256 over the settings and the contents of the files they name (the style, the base, ...).

        Moving or renaming a weights file keeps the fingerprint; changing its contents changes it. The
        device is part of it: CPU and GPU results differ in the last bits.
        """
        if not self._fingerprint:
            values = {}
            for item in dataclasses.fields(self):
                if item.name.startswith("_"):
                    continue
                value = getattr(self, item.name)
                if isinstance(value, Path):
                    value = {"sha256": file_sha256(value)} if value.is_file() else {"missing": str(value)}
                values[item.name] = value
            blob = json.dumps(values, sort_keys=True, default=str).encode()
            self._fingerprint.append(hashlib.sha256(blob).hexdigest())
        return self._fingerprint[0]

    def alpha_arg(self) -> float | list[float]:
        return self.alpha if isinstance(self.alpha, float | int) else list(self.alpha)


@dataclass
class PhotoResult:
    """What a worker returns for one photo.

    Attributes:
        outputs: (name relative to the output folder, encoded PNG bytes) pairs; empty on error.
        faces: faces stylized.
        identity: one score per face (empty when not measured).
        error: one readable line, or ``None``.
        seconds: the worker's time for the photo.
        peak_rss_mb: the worker process's peak resident memory so far (what a worker needs).
    """

    outputs: list[tuple[str, bytes]]
    faces: int = 0
    identity: list[float] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    peak_rss_mb: float = 0.0


def encode_png(image: Image.Image, pnginfo) -> bytes:
    """The bytes :func:`jojogan.imaging.save_image` writes for ``image`` to a ``.png`` path."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=pnginfo)
    return buffer.getvalue()


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if isinstance(error, _expected_errors()) else f"{type(error).__name__}: {text}"


def _expected_errors() -> tuple[type[BaseException], ...]:
    from jojogan.errors import JojoganError

    return (JojoganError,)


class Stylizer:
    """Loads the pipeline once (base, style, recognizer, CodeFormer) and stylizes photos one by one.

    Args:
        settings: the batch's settings.
    """

    def __init__(self, settings: BatchSettings):
        from jojogan.api import JoJoGAN

        self.settings = settings
        self.pipe = JoJoGAN.from_pretrained(base=settings.base, e4e=settings.e4e, device=settings.device)
        self.pipe.max_pixels = settings.max_pixels
        self.pipe.inversion_distance = settings.distance
        self.pipe.codeformer_path = settings.codeformer
        self.pipe.load_style(settings.style)
        if settings.cleanup or settings.restore_input:
            self.pipe.codeformer()  # a missing CodeFormer file fails here, before any photo
        self.recognizer = (
            None
            if settings.identity_net is None
            else self.pipe.recognizer(settings.identity_net, settings.identity_weights)
        )

    def __call__(self, path: str | os.PathLike, stem: str) -> PhotoResult:
        """Stylize one photo; a failure becomes ``PhotoResult.error`` (one line), never an exception."""
        start = time.perf_counter()
        try:
            every = self.settings.face == "all" and not self.settings.aligned
            result = self._all(path, stem) if every else self._one(path, stem)
        except Exception as error:  # a bad photo is a manifest line, never the end of the batch
            result = PhotoResult(outputs=[], error=_one_line(error))
        result.seconds = time.perf_counter() - start
        result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        return result

    def _one(self, path: str | os.PathLike, stem: str) -> PhotoResult:
        s = self.settings
        face = "largest" if s.face == "all" else s.face  # "all" of an aligned crop: the crop's one face
        result = self.pipe.stylize(
            path, s.style, s.alpha_arg(), inversion=s.inversion, inversion_steps=s.inversion_steps,
            aligned=s.aligned, face=face, paste=s.paste, identity=self.recognizer, cleanup=s.cleanup,
            fidelity=s.fidelity, restore_input=s.restore_input, match_colour=s.match_colour,
        )  # fmt: skip
        image = result.pasted if s.paste else result.image
        identity = [] if result.identity is None else [result.identity]
        return PhotoResult(
            outputs=[(stem + OUTPUT_SUFFIX, encode_png(image, result.png_metadata()))],
            faces=1,
            identity=identity,
        )

    def _all(self, path: str | os.PathLike, stem: str) -> PhotoResult:
        """Every face: each aligned face goes through ``stylize`` as an aligned crop, so each face's code
        path is the single-photo one; with ``paste`` the stylized faces go back into the photo together."""
        from jojogan.inversion.align import align_faces
        from jojogan.inversion.paste import paste_faces

        s = self.settings
        crops = align_faces(path, output_size=self.pipe.size, max_pixels=s.max_pixels)
        results = [
            self.pipe.stylize(
                crop.image,
                s.style,
                s.alpha_arg(),
                inversion=s.inversion,
                inversion_steps=s.inversion_steps,
                aligned=True,
                identity=self.recognizer,
                cleanup=s.cleanup,
                fidelity=s.fidelity,
                restore_input=s.restore_input,
            )  # fmt: skip
            for crop in crops
        ]
        identity = [r.identity for r in results if r.identity is not None]
        if s.paste:
            pasted = paste_faces(
                path, [(r.image, crop) for r, crop in zip(results, crops, strict=True)],
                match_colour=s.match_colour,
            )  # fmt: skip
            outputs = [(stem + OUTPUT_SUFFIX, encode_png(pasted, results[0].png_metadata()))]
        else:
            outputs = [
                (f"{stem}_face{crop.face_index}{OUTPUT_SUFFIX}", encode_png(r.image, r.png_metadata()))
                for r, crop in zip(results, crops, strict=True)
            ]
        return PhotoResult(outputs=outputs, faces=len(results), identity=identity)
