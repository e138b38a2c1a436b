"""One photo's work, shared by every engine: the settings of a batch and the worker that applies them.

The worker calls :meth:`jojogan.api.JoJoGAN.stylize` with the same arguments as ``jojogan stylize`` and
encodes the result the way :func:`jojogan.imaging.save_image` writes it (PNG with the result's metadata),
so a batch output is byte-for-byte the single-photo command's output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import resource
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from PIL import Image

from jojogan.batch.inputs import InputItem, local_photo, unreadable
from jojogan.batch.manifest import output_name, video_output_name
from jojogan.config import StylizeConfig
from jojogan.fileio import file_sha256
from jojogan.models import Models

if TYPE_CHECKING:
    from jojogan.api import StylizeResult
    from jojogan.inversion.align import AlignedFace
    from jojogan.video import VideoConfig

__all__ = [
    "AlignedPhoto",
    "BatchSettings",
    "PhotoResult",
    "Stylizer",
    "align_photo",
    "GPU_BATCH_SIZE",
    "default_batch_size",
    "encode_png",
    "error_line",
    "generator_size",
    "clear_workspace",
    "video_output",
    "video_workspace",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchSettings:
    """Everything that decides a batch's outputs (and, for resuming, its fingerprint).

    Attributes:
        style: the style file.
        config: the stylize settings (:class:`StylizeConfig`), as ``jojogan stylize`` takes them; its
            ``face="all"`` gives one output per face (``STEM_face{i}_styled.png``), or with ``paste`` one
            photo with every face pasted back.
        models: the models to load (base, domain, component files, device).
        video: the settings of the videos among the inputs (:class:`jojogan.video.VideoConfig`; ``None``:
            its defaults). Their faces are stylized with ``config`` (``paste`` puts them back in the frames).
    """

    style: Path
    config: StylizeConfig = field(default_factory=lambda: StylizeConfig(identity="auto"))
    models: Models = field(default_factory=Models)
    video: VideoConfig | None = None
    # a cache, never copied by dataclasses.replace (a copy with other settings has another fingerprint)
    _fingerprint: dict[bool, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def fingerprint(self, video: bool = False) -> str:
        """sha256 over the settings and the contents of the files they name (the style, the base, ...).

        Moving or renaming a weights file keeps the fingerprint; changing its contents changes it. The
        device is part of it: CPU and GPU results differ in the last bits. With ``video``, the fingerprint
        of a video's line: the video settings that change frames count too where they are not the defaults
        (:func:`jojogan.video.pipeline.frame_settings`; a photo's line never depends on them, and a batch
        with the default video settings keeps the photos' fingerprint).
        """
        if video not in self._fingerprint:
            values = {"style": _content(self.style)}
            for part in (self.models, self.config):
                values |= {item.name: _content(getattr(part, item.name)) for item in dataclasses.fields(part)}
            if video and self.video is not None:
                from jojogan.video.pipeline import frame_settings

                if frame_settings(self.video) != frame_settings(_default_video()):
                    values["video"] = frame_settings(self.video)
            blob = json.dumps(values, sort_keys=True, default=str).encode()
            self._fingerprint[video] = hashlib.sha256(blob).hexdigest()
        return self._fingerprint[video]


def _content(value: object) -> object:
    """A file by its contents (moving it keeps a fingerprint), anything else as it is."""
    if isinstance(value, Path):
        return {"sha256": file_sha256(value)} if value.is_file() else {"missing": str(value)}
    return value


@dataclass
class PhotoResult:
    """What a worker returns for one photo.

    Attributes:
        outputs: (name relative to the output folder, encoded PNG bytes) pairs; empty on error.
        faces: faces stylized.
        identity: one score per face as :meth:`IdentityScore.to_dict` (empty when not measured); for a
            video one per face track, the median of its sampled frames judged by the network's rule.
        error: one readable line, or ``None``.
        seconds: the workers' time for the photo (alignment included).
        align_seconds: the part of ``seconds`` spent aligning (the stage that may run elsewhere).
        peak_rss_mb: the worker process's peak resident memory so far (what a worker needs).
        align_peak_rss_mb: the same for the process that aligned the photo.
        frames: for a video, the frames written (its one output is the encoded video).
        chunks: for a video, its chunks (the unit of splitting and resuming); chunks_resumed: the chunk
            files (codes, segments) an interrupted run had finished; chunk_workers: the processes that
            inverted or rendered its chunks in this run.
    """

    outputs: list[tuple[str, bytes]]
    faces: int = 0
    identity: list[dict] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    align_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    align_peak_rss_mb: float = 0.0
    frames: int = 0
    chunks: int = 0
    chunks_resumed: int = 0
    chunk_workers: int = 0


WORK_FOLDER = ".jojogan-video"
"""The output folder's hidden folder where videos are made, chunk by chunk, so an interrupted batch
resumes a half-done video (:func:`video_workspace`); emptied as each video is written."""


def video_workspace(workdir: Path, name: str) -> Path:
    """Where a batch makes the video output ``name`` (relative to the output folder ``workdir``): its chunk
    store lies beside it (:func:`jojogan.video.store.store_path`)."""
    return Path(workdir) / WORK_FOLDER / PurePosixPath(name)


def clear_workspace(made: Path, workdir: Path) -> None:
    """Remove a video's file from the workspace (once read, or never written), and the workspace's folders
    left empty (a failed video's chunk store stays, for the next run to resume)."""
    made.unlink(missing_ok=True)
    root = Path(workdir) / WORK_FOLDER
    folder = made.parent
    while folder == root or root in folder.parents:
        try:
            folder.rmdir()
        except OSError:  # not empty: another video's work
            return
        folder = folder.parent


def video_output(item: InputItem) -> str:
    """A video's output name: ``STEM_styled`` and its container when that holds H.264, else ``.mp4``."""
    name = item.fs_path if item.filesystem is not None else str(item.path)
    return video_output_name(item.stem, PurePosixPath(str(name)).suffix)


def encode_png(image: Image.Image, pnginfo) -> bytes:
    """The bytes :func:`jojogan.imaging.save_image` writes for ``image`` to a ``.png`` path."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=pnginfo)
    return buffer.getvalue()


def _default_video() -> VideoConfig:
    from jojogan.video import VideoConfig

    return VideoConfig()


def error_line(error: BaseException) -> str:
    """A manifest's error line: the message of an expected error (bad input), else its type and message."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if isinstance(error, _expected_errors()) else f"{type(error).__name__}: {text}"


def _expected_errors() -> tuple[type[BaseException], ...]:
    from jojogan.errors import JojoganError

    return (JojoganError,)


def generator_size(style: str | os.PathLike) -> int:
    """The side of the images a style's generator makes, which is the side faces are aligned to.

    Reads only the header of our ``.safetensors`` style files; other style files are loaded once.
    """
    from jojogan.style_file import is_style_file, load_style, read_style_metadata

    if is_style_file(style):
        size = (read_style_metadata(style).get("generator") or {}).get("size")
        if isinstance(size, int):
            return size
    return load_style(style).generator.size


@dataclass
class AlignedPhoto:
    """One photo's faces, aligned (by :func:`align_photo`), on their way to :meth:`Stylizer.finish_many`.

    Attributes:
        crops: the aligned faces, one (``face`` = ``"largest"`` or an index) or every usable one.
        error: why the photo could not be aligned (one readable line), or ``None``.
        seconds: the time alignment took.
        peak_rss_mb: the aligning process's peak resident memory so far.
    """

    crops: list[AlignedFace]
    error: str | None = None
    seconds: float = 0.0
    peak_rss_mb: float = 0.0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _named(error: str, local: Path, item: InputItem) -> str:
    """An error line about a temporary copy of a photo names the photo itself."""
    return error if item.filesystem is None else error.replace(str(local), str(item.path))


def align_photo(item: InputItem, settings: BatchSettings, size: int) -> AlignedPhoto:
    """Align the faces of one photo as ``jojogan stylize`` would; a failure becomes ``error``, not an
    exception (a bad photo is a manifest line).

    Args:
        item: the photo (a local file, or one on a pyarrow filesystem, read through it).
        settings: the batch's settings (its config's ``face``, ``aligned``, ``max_pixels``).
        size: the generator's side in pixels (:func:`generator_size`).
    """
    start = time.perf_counter()
    result = _align(item, settings, size)
    result.seconds = time.perf_counter() - start
    result.peak_rss_mb = _peak_rss_mb()
    return result


def _align(item: InputItem, settings: BatchSettings, size: int) -> AlignedPhoto:
    from jojogan.inversion.align import align_face, align_faces

    config = settings.config
    try:
        with local_photo(item) as path:
            try:
                if config.face == "all" and not config.aligned:
                    crops = align_faces(path, output_size=size, max_pixels=config.max_pixels)
                else:
                    face = "largest" if config.face == "all" else config.face  # a crop has one face
                    crops = [
                        align_face(
                            path, size, face=face, aligned=config.aligned, max_pixels=config.max_pixels
                        )
                    ]
            except Exception as error:  # a bad photo is a manifest line, never the end of the batch
                return AlignedPhoto(crops=[], error=_named(error_line(error), path, item))
    except OSError as error:  # the copy of a photo on another filesystem could not be made
        return AlignedPhoto(crops=[], error=unreadable(item, error))
    return AlignedPhoto(crops=crops)


GPU_BATCH_SIZE = 16
"""Faces batched on a GPU by default."""


def default_batch_size(device) -> int:
    """Faces stylized together by default: 16 on CUDA (at 1024 px twice as fast per face as one at a
    time), 1 elsewhere (a CPU gains nothing from larger batches, and one face is byte-identical to
    ``jojogan stylize``)."""
    return GPU_BATCH_SIZE if str(device).startswith("cuda") else 1


class Stylizer:
    """Loads the pipeline once (base, style, recognizer, CodeFormer) and stylizes photos.

    Args:
        settings: the batch's settings.
        batch_size: faces that go through inversion (e4e) and the generators together; default
            :func:`default_batch_size`. With 1, results are byte-identical to ``jojogan stylize``; with
            more, equal within float tolerance.
        workdir: the batch's output folder, where videos are made resumably (:func:`video_workspace`);
            ``None``: in a temporary folder (an interrupted video starts over).
    """

    def __init__(self, settings: BatchSettings, batch_size: int | None = None, workdir: Path | None = None):
        self.settings = settings
        self.workdir = None if workdir is None else Path(workdir)
        self.pipe = settings.models.load()
        self.config = self.pipe.settings(settings.config)
        self.pipe.load_style(settings.style)
        if self.config.cleaner_runs:
            self.pipe.cleaner(self.config.cleaner)  # a missing cleaner file fails here, before any photo
        self.pipe.recognizer_for(self.config)  # and so does a missing identity network
        self.batch_size = default_batch_size(self.pipe.device) if batch_size is None else batch_size
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")

    @property
    def size(self) -> int:
        """The side, in pixels, that faces are aligned to for this pipeline."""
        return self.pipe.size

    def finish_many(self, items: Sequence[InputItem], aligned: Sequence[AlignedPhoto]) -> list[PhotoResult]:
        """Stylize several aligned photos, up to :attr:`batch_size` faces at a time on the device.

        When a batch fails, its photos are stylized again one by one, so that an error is the line of the
        photo that caused it. A photo's ``seconds`` are its alignment's plus its share of its batch's.
        """
        start = time.perf_counter()
        todo = [i for i, photo in enumerate(aligned) if photo.error is None]
        results = {i: PhotoResult(outputs=[], error=aligned[i].error) for i in range(len(items))}
        if len(todo) > 1:
            try:
                with contextlib.ExitStack() as stack:
                    paths = [stack.enter_context(self._photo(items[i])) for i in todo]
                    photos = [(p, items[i].stem, aligned[i].crops) for p, i in zip(paths, todo, strict=True)]
                    done = self._photos(photos)
                results.update(zip(todo, done, strict=True))
                todo = []
            except Exception as error:  # one bad photo: each alone below, to blame the right one
                log.info("a batch of %d photos failed (%s): stylizing them one by one", len(todo), error)
        for i in todo:
            item = items[i]
            try:
                with self._photo(item) as path:
                    try:
                        (results[i],) = self._photos([(path, item.stem, aligned[i].crops)])
                    except Exception as error:  # a bad photo is a manifest line, never the batch's end
                        results[i] = PhotoResult(outputs=[], error=_named(error_line(error), path, item))
            except OSError as error:
                results[i] = PhotoResult(outputs=[], error=unreadable(item, error))
        share = (time.perf_counter() - start) / max(len(items), 1)
        rss = _peak_rss_mb()
        for i, result in results.items():
            result.seconds, result.align_seconds = aligned[i].seconds + share, aligned[i].seconds
            result.peak_rss_mb, result.align_peak_rss_mb = rss, aligned[i].peak_rss_mb
        return [results[i] for i in range(len(items))]

    def video(self, item: InputItem) -> PhotoResult:
        """Stylize one video with :func:`jojogan.video.stylize_video` and return its bytes as the one output
        (:func:`video_output`); a failure is ``error`` (one line), never an exception. With a
        :attr:`workdir`, the video is made in its workspace, so a batch interrupted in the middle of it
        resumes from its last finished chunk.
        """
        start = time.perf_counter()
        try:
            with contextlib.ExitStack() as stack:
                path = stack.enter_context(local_photo(item))
                try:
                    result = self._video(path, video_output(item), stack)
                except Exception as error:  # a bad video is a manifest line, never the batch's end
                    result = PhotoResult(outputs=[], error=_named(error_line(error), path, item))
        except OSError as error:
            result = PhotoResult(outputs=[], error=unreadable(item, error))
        result.seconds = time.perf_counter() - start
        result.peak_rss_mb = _peak_rss_mb()
        return result

    def _video(self, path: Path, name: str, stack: contextlib.ExitStack) -> PhotoResult:
        if self.workdir is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jojogan-video-")))
            made = folder / PurePosixPath(name).name
        else:
            made = video_workspace(self.workdir, name)
            made.parent.mkdir(parents=True, exist_ok=True)
            # afterwards the file goes, and the folders left empty (a failed video's chunks stay)
            stack.callback(clear_workspace, made, self.workdir)
        # the manifest records each face track's identity verdict but no flicker figure: not measured
        video = dataclasses.replace(self.settings.video or _default_video(), flicker_every=0)
        done = self.pipe.stylize_video(path, made, self.settings.style, self.settings.config, video)
        data = done.path.read_bytes()
        chunks, resumed = done.report["chunks"], done.report["chunks_resumed"]  # resumed: codes and segments
        return PhotoResult(
            outputs=[(name, data)], faces=done.report.get("tracks", 0), frames=done.report["frames"],
            identity=[track["verdict"] for track in done.identity or []],
            chunks=chunks, chunks_resumed=resumed, chunk_workers=int(resumed < 2 * chunks),
        )  # fmt: skip

    def _photo(self, item: InputItem) -> contextlib.AbstractContextManager[Path]:
        """The photo as the pipeline gets it once its faces are aligned: only ``paste`` reads it again,
        so a photo on another filesystem is fetched a second time only then (else its name stands in)."""
        if item.filesystem is None or self.config.paste:
            return local_photo(item)
        return contextlib.nullcontext(Path(PurePosixPath(item.fs_path).name))

    def _stylize(self, images: list, crops: list, **options) -> list[StylizeResult]:
        """``pipe.stylize_many`` over the faces, :attr:`batch_size` at a time."""
        results = []
        for first in range(0, len(images), self.batch_size):
            chunk = slice(first, first + self.batch_size)
            results += self.pipe.stylize_many(
                images[chunk], self.settings.style, config=self.config, crops=crops[chunk], **options
            )
        return results

    def _photos(self, photos: list[tuple[Path, str, list[AlignedFace]]]) -> list[PhotoResult]:
        """Stylize photos' aligned faces and encode each photo's outputs.

        Args:
            photos: ``(local path, output stem, aligned faces)`` per photo.
        """
        c = self.config
        if not (c.face == "all" and not c.aligned):
            face = "largest" if c.face == "all" else c.face  # "all" of an aligned crop: the crop's one face
            results = self._stylize(
                [path for path, _, _ in photos], [crops[0] for _, _, crops in photos], face=face
            )
            return [self._one(stem, r) for (_, stem, _), r in zip(photos, results, strict=True)]
        # every face: each goes through as an aligned crop, so its code path is a single photo's
        crops = [crop for _, _, faces in photos for crop in faces]
        results = self._stylize(
            [crop.image for crop in crops], [None] * len(crops), aligned=True, face="largest", paste=False,
            match_colour=False,
        )  # fmt: skip
        done, first = [], 0
        for path, stem, faces in photos:
            done.append(self._every(path, stem, faces, results[first : first + len(faces)]))
            first += len(faces)
        return done

    def _one(self, stem: str, result: StylizeResult) -> PhotoResult:
        image = result.pasted if self.config.paste else result.image
        identity = [] if result.identity is None else [result.identity.to_dict()]
        return PhotoResult(
            outputs=[(output_name(stem), encode_png(image, result.png_metadata()))],
            faces=1,
            identity=identity,
        )

    def _every(
        self, path: Path, stem: str, crops: list[AlignedFace], results: list[StylizeResult]
    ) -> PhotoResult:
        """One photo's faces stylized as aligned crops: one output each, or with ``paste`` the stylized
        faces back into the photo together."""
        from jojogan.inversion.paste import paste_faces

        identity = [r.identity.to_dict() for r in results if r.identity is not None]
        if self.config.paste:
            pasted = paste_faces(
                path, [(r.image, crop) for r, crop in zip(results, crops, strict=True)],
                match_colour=self.config.match_colour,
            )  # fmt: skip
            outputs = [(output_name(stem), encode_png(pasted, results[0].png_metadata()))]
        else:
            outputs = [
                (output_name(stem, crop.face_index), encode_png(r.image, r.png_metadata()))
                for r, crop in zip(results, crops, strict=True)
            ]
        return PhotoResult(outputs=outputs, faces=len(results), identity=identity)
