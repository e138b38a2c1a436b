"""A façade over the Python API for interactive front ends: no Gradio, no web, testable on its own.

:class:`Studio` holds one :class:`jojogan.api.JoJoGAN` pipeline and a :class:`StyleLibrary`, and offers what
a page needs, each as one call: the crops that references will be trained on (with a readable reason per
file that cannot be used), training into the library with progress and cancellation, stylizing with the
inversion cached per photo (moving the α slider then costs one pass of the generators), saving a result as
a PNG with its metadata, the α strip and GIF, and random samples. The methods only call the API; no
algorithm lives here.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from jojogan.api import Face, JoJoGAN, StylizeResult
from jojogan.components import LRUCache
from jojogan.config import (
    SAMPLES,
    SLIDER_STEPS,
    STYLED_SUFFIX,
    TILE,
    AlphaSpec,
    FinetuneConfig,
    StylizeConfig,
)
from jojogan.errors import JojoganError
from jojogan.fileio import file_sha256
from jojogan.imaging import image_grid, labelled_strip, save_gif, save_image, to_pil
from jojogan.inversion.errors import FaceNotFoundError, FaceTooSmallError
from jojogan.results import finish_faces
from jojogan.style_file import StyleFile
from jojogan.stylization import TRUNCATION
from jojogan.ui.library import LibraryError, LibraryStyle, StyleLibrary, check_style_name
from jojogan.weights import check_cached, format_size, is_offline, official_styles, resolve_weights

__all__ = [
    "ALIGNED_LABEL",
    "OFFICIAL_PREFIX",
    "ReferenceCrop",
    "Studio",
    "TrainingCancelled",
    "TrainingJob",
    "TrainingProgress",
    "VideoCancelled",
    "VideoProgress",
]

OFFICIAL_PREFIX = "official:"
"""Prefix of a style choice naming an official JoJoGAN style of the weights registry (library names never
contain ``:``)."""

ALIGNED_LABEL = "References are aligned crops"
"""The page's checkbox for references that need no face detection (the errors name it)."""

VIDEO_CHUNK = 24
"""Frames per chunk of a video run (how often the page hears of its progress, and can cancel it)."""

DEFAULT_MAX_FACES = 8
"""Prepared (aligned and inverted) photos a studio keeps."""

PhotoSource = str | os.PathLike | Image.Image


class TrainingCancelled(JojoganError):
    """Training was stopped on request; nothing was saved."""

    def __init__(self, step: int):
        self.step = step
        super().__init__(f"training was cancelled after step {step}; nothing was saved")


class VideoCancelled(JojoganError):
    """A video run was stopped on request; no output was written."""

    def __init__(self):
        super().__init__("the video was cancelled; nothing was written")


@dataclass
class VideoProgress:
    """A snapshot of a video run.

    Attributes:
        stage: "tracking faces", "inverting faces", "rendering" or "done".
        frames: frames of this stage done.
        total: frames of the video (an estimate until the run is done).
        elapsed_s: seconds since the run started.
        fps: frames per second: while running, of the inverting and rendering passes together since the
            start; once done, of the whole run (video frames over its seconds); ``None`` before a chunk.
        eta_s: estimated seconds left, or ``None`` before a chunk.
    """

    stage: str = "tracking faces"
    frames: int = 0
    total: int = 0
    elapsed_s: float = 0.0
    fps: float | None = None
    eta_s: float | None = None

    def describe(self) -> str:
        """One line for the page, e.g. ``rendering · frame 48/120 · 3.1 frames/s · 0:23 left``."""
        if self.stage == "tracking faces":
            return f"tracking faces in {self.total} frames…"
        text = f"{self.stage} · frame {self.frames}/{self.total}"
        if self.fps is not None:
            text += f" · {self.fps:.1f} frames/s"
        if self.stage == "done":
            return text + f" · {_clock(self.elapsed_s)} in all"
        if self.eta_s is not None:
            text += f" · {_clock(self.eta_s)} left"
        return text


@dataclass
class ReferenceCrop:
    """What one uploaded reference becomes.

    Attributes:
        name: the file's name.
        image: the aligned crop training will use, or ``None`` when the file cannot be used.
        message: a sentence for the page: how it was cropped, or why it cannot be used.
    """

    name: str
    image: Image.Image | None
    message: str

    @property
    def ok(self) -> bool:
        return self.image is not None


@dataclass
class TrainingProgress:
    """A snapshot of a training run.

    Attributes:
        stage: "preparing" (aligning and inverting the references), "training", "saving", "done",
            "cancelled" or "failed".
        step: steps done.
        total: steps asked for.
        loss: the last step's loss, or ``None`` before the first step.
        elapsed_s: seconds since the run started.
        eta_s: estimated seconds left (from the mean time per step so far), or ``None`` before a step.
        previews: ``(step, image)`` of every preview so far (the first reference as the style renders it).
    """

    stage: str = "preparing"
    step: int = 0
    total: int = 0
    loss: float | None = None
    elapsed_s: float = 0.0
    eta_s: float | None = None
    previews: list[tuple[int, Image.Image]] = field(default_factory=list)

    def describe(self) -> str:
        """One line for the page, e.g. ``step 12/300 · loss 0.2134 · 0:41 left``."""
        if self.stage == "preparing":
            return "aligning and inverting the references…"
        text = f"step {self.step}/{self.total}"
        if self.loss is not None:
            text += f" · loss {self.loss:.4f}"
        if self.stage == "training" and self.eta_s is not None:
            text += f" · {_clock(self.eta_s)} left"
        if self.stage in ("saving", "done"):
            text += f" · {_clock(self.elapsed_s)} in all"
        return text


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TrainingJob:
    """One training run in a background thread; a page polls :attr:`progress` and may :meth:`cancel`.

    Use :meth:`Studio.start_training`; when :attr:`done`, :attr:`result` holds the new library style or
    :attr:`error` the exception (a :class:`TrainingCancelled` after :meth:`cancel`).
    """

    def __init__(self, run: Callable[..., LibraryStyle], **settings):
        self._lock = threading.Lock()
        self._progress = TrainingProgress(total=settings.get("iterations", 0))
        self._cancel = threading.Event()
        self.result: LibraryStyle | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._main, args=(run, settings), name="jojogan-training", daemon=True
        )

    def _main(self, run: Callable[..., LibraryStyle], settings: dict) -> None:
        try:
            self.result = run(on_progress=self._update, cancel=self._cancel, **settings)
            stage = "done"
        except TrainingCancelled as error:
            self.error, stage = error, "cancelled"
        except BaseException as error:  # handed to the page, which shows it as one line
            self.error, stage = error, "failed"
        with self._lock:
            self._progress = replace(self._progress, stage=stage)

    def _update(self, progress: TrainingProgress) -> None:
        with self._lock:
            self._progress = progress

    def start(self) -> TrainingJob:
        self._thread.start()
        return self

    @property
    def progress(self) -> TrainingProgress:
        """The latest snapshot (a copy: its preview list does not change afterwards)."""
        with self._lock:
            return replace(self._progress, previews=list(self._progress.previews))

    @property
    def done(self) -> bool:
        return not self._thread.is_alive() and self._progress.stage in ("done", "cancelled", "failed")

    def cancel(self) -> None:
        """Stop after the current step (the run then ends with :class:`TrainingCancelled`)."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run ends (or ``timeout`` seconds pass); returns :attr:`done`."""
        self._thread.join(timeout)
        return self.done


class _Reporter:
    """Turns the fine-tuning loop's callback into :class:`TrainingProgress` snapshots, and stops the loop
    when ``cancel`` is set.

    Args:
        iterations: steps asked for.
        on_progress: receives each snapshot (a copy), or ``None``.
        cancel: set it to stop after the current step.
    """

    def __init__(
        self,
        iterations: int,
        on_progress: Callable[[TrainingProgress], None] | None,
        cancel: threading.Event | None,
    ):
        self.progress = TrainingProgress(total=iterations)
        self._report = on_progress or (lambda _: None)
        self._cancel = cancel
        self._started = time.monotonic()
        self._first_step: float | None = None  # when training proper began (after the inversion)

    def _send(self) -> None:
        self._report(replace(self.progress, previews=list(self.progress.previews)))

    def stage(self, stage: str) -> None:
        """Report a new stage ("preparing", "saving", "done")."""
        self.progress.stage = stage
        if stage == "done":
            self.progress.elapsed_s, self.progress.eta_s = time.monotonic() - self._started, 0.0
        self._send()

    def on_step(self, step: int, loss: float, preview) -> None:
        """The fine-tuning callback: one step done (with a preview ``[1, 3, H, W]`` or ``None``).

        Raises:
            TrainingCancelled: ``cancel`` is set.
        """
        now = time.monotonic()
        if self._first_step is None:
            self._first_step = now
        total = self.progress.total
        per_step = (now - self._first_step) / max(step - 1, 1) if step > 1 else now - self._started
        p = self.progress
        p.stage, p.step, p.loss = "training", step, loss
        p.elapsed_s, p.eta_s = now - self._started, per_step * (total - step)
        if preview is not None:
            p.previews.append((step, to_pil(preview[0])))
        self._send()
        if self._cancel is not None and self._cancel.is_set():
            raise TrainingCancelled(step)


class _VideoReporter:
    """Turns the video engine's chunk callback into :class:`VideoProgress` snapshots, and stops the run when
    ``cancel`` is set."""

    def __init__(self, total: int, chunk: int, on_progress, cancel: threading.Event | None):
        self.progress = VideoProgress(total=total)
        self._chunk = chunk
        self._report = on_progress or (lambda _: None)
        self._cancel = cancel
        self._started = time.monotonic()
        self._report(replace(self.progress))

    def on_chunk(self, stage: str, number: int) -> None:
        """The engine's callback: chunk ``number`` of ``stage`` ("codes" or "render") is stored.

        Raises:
            VideoCancelled: ``cancel`` is set.
        """
        p, now = self.progress, time.monotonic()
        p.frames = min((number + 1) * self._chunk, p.total)
        p.stage = "inverting faces" if stage == "codes" else "rendering"
        work = p.frames + (p.total if stage == "render" else 0)  # both passes go over every frame
        p.elapsed_s = now - self._started
        p.fps = work / p.elapsed_s if p.elapsed_s > 0 else None
        p.eta_s = (2 * p.total - work) / p.fps if p.fps else None
        self._report(replace(p))
        if self._cancel is not None and self._cancel.is_set():
            raise VideoCancelled()

    def done(self, frames: int) -> None:
        p = self.progress
        p.stage, p.frames, p.total, p.eta_s = "done", frames, frames, 0.0
        p.elapsed_s = time.monotonic() - self._started
        p.fps = frames / p.elapsed_s if p.elapsed_s > 0 else None
        self._report(replace(p))


class Studio:
    """Everything the web UI does, as plain Python over one pipeline and one style library.

    Args:
        pipe: the loaded pipeline (its base checkpoint, device and e4e weights).
        library: where trained styles go; ``None`` for ``$JOJOGAN_HOME/styles``.
        config: the page's stylize settings (how photos become codes, the upload limit, ...); the page's
            controls replace its fields per call. Keyword ``overrides`` replace fields too.
        max_faces: how many prepared photos to keep.
    """

    def __init__(
        self,
        pipe: JoJoGAN,
        library: StyleLibrary | None = None,
        *,
        config: StylizeConfig | None = None,
        max_faces: int = DEFAULT_MAX_FACES,
        **overrides,
    ):
        self.pipe = pipe
        self.library = library if library is not None else StyleLibrary()
        self.config = pipe.settings(config, **overrides)
        self.video = None  # the video settings (a jojogan.video.VideoConfig; None: its defaults)
        self._faces: LRUCache[tuple, Face] = LRUCache(max_faces)
        self._model_lock = threading.RLock()  # one piece of model work at a time, whoever calls

    # ------------------------------------------------------------------ references
    def reference_crops(self, files: Sequence[PhotoSource], aligned: bool = False) -> list[ReferenceCrop]:
        """The crop each reference will be trained on, or why it cannot be used (one sentence each).

        Args:
            files: uploaded images (paths or PIL images).
            aligned: they are already aligned face crops (no face detection).
        """
        crops = []
        for source in files:
            name = _name(source)
            try:
                crop = self.pipe.align(source, self.config, aligned=aligned)
            except FaceNotFoundError as error:
                crops.append(ReferenceCrop(name, None, _page_wording(error, name)))
                continue
            except JojoganError as error:  # the messages name the upload's temporary path: keep its name
                crops.append(ReferenceCrop(name, None, str(error).replace(str(source), name)))
                continue
            if aligned:
                message = f"{name}: used as an aligned crop"
            elif crop.num_faces > 1:
                message = f"{name}: {crop.num_faces} faces found; the largest one is used"
            else:
                message = f"{name}: face found and aligned"
            crops.append(ReferenceCrop(name, crop.image, message))
        return crops

    # ------------------------------------------------------------------ training
    def train(
        self,
        files: Sequence[PhotoSource],
        name: str,
        *,
        preset: str = "default",
        iterations: int = 300,
        identity_weight: float = 0.0,
        aligned: bool = False,
        preview_every: int | None = None,
        on_progress: Callable[[TrainingProgress], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> LibraryStyle:
        """Fine-tune a style from reference faces and store it in the library as ``name``.

        Args:
            files: the references (paths or PIL images), one face each.
            name: the new style's name (checked, and refused when taken, before any work).
            preset: the training mask, "default" or "preserve-color".
            iterations: fine-tuning steps.
            identity_weight: weight of the identity loss (0: off); its network is the API's default.
            aligned: the references are already aligned face crops.
            preview_every: a preview every N steps (``None``: about eight over the run).
            on_progress: receives a :class:`TrainingProgress` after every step and at each stage.
            cancel: set it to stop after the current step (:class:`TrainingCancelled` is raised).

        Raises:
            LibraryError: the name is not allowed or taken.
            TrainingCancelled: ``cancel`` was set.
            JojoganError: a reference cannot be used, the weights are missing, ...
        """
        name = self._check_new_style(files, name)
        every = preview_every if preview_every is not None else max(1, iterations // 8)
        config = FinetuneConfig(
            iterations=iterations, mask=preset, identity_weight=identity_weight, preview_every=every
        )
        reporter = _Reporter(iterations, on_progress, cancel)
        run, thumbnail = self._finetune(name, files, config, aligned, reporter)
        info = {
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "references": run.metadata.get("reference_names", [_name(f) for f in files]),
            "preset": preset,
            "iterations": iterations,
            "identity_weight": identity_weight,
            "final_loss": run.losses[-1] if run.losses else None,
            "inversion": self.config.inversion,
            "base": self.pipe.base_path.name if self.pipe.base_path else None,
        }
        saved = self.library.add(name, run.save, thumbnail, info)
        reporter.stage("done")
        return saved

    def _check_new_style(self, files: Sequence[PhotoSource], name: str) -> str:
        """The cleaned name of a new style, refused (before any work) when it is not allowed or taken, or
        when there is no reference."""
        name = check_style_name(name)
        if name in self.library:
            raise LibraryError(f"a style named {name!r} already exists; choose another name or delete it")
        if not files:
            raise JojoganError("add at least one reference face")
        return name

    def _finetune(self, name: str, files, config: FinetuneConfig, aligned: bool, reporter: _Reporter):
        """Run the fine-tuning (one piece of model work) and draw the style's thumbnail.

        Returns:
            ``(the API's fine-tuning output, a thumbnail image)``.
        """
        reporter.stage("preparing")
        with self._model_lock:
            identity_net = None
            if config.identity_weight > 0:
                from jojogan.identity import DEFAULT_LOSS_NETWORK, load_identity_loss_network

                identity_net = load_identity_loss_network(DEFAULT_LOSS_NETWORK, None, self.pipe.device).embed
            run = self.pipe.finetune(
                list(files), config, inputs=self.config, aligned=aligned, identity_net=identity_net,
                callback=reporter.on_step, show_progress=False,
            )  # fmt: skip
            reporter.stage("saving")
            style = StyleFile(
                generator=run.generator, metadata=run.metadata, path=Path(f"{name}.safetensors")
            )
            _, styled = self.pipe.sample(style, 1, seed=0)
        return run, styled[0]

    def start_training(self, files: Sequence[PhotoSource], name: str, **settings) -> TrainingJob:
        """:meth:`train` in a background thread (same arguments, less ``on_progress`` and ``cancel``).

        Raises:
            LibraryError: the name is not allowed or taken (at once, before the thread starts).
            JojoganError: there is no reference.
        """
        self._check_new_style(files, name)
        return TrainingJob(self.train, files=list(files), name=name, **settings).start()

    # ------------------------------------------------------------------ styles
    def style_choices(self) -> list[tuple[str, str]]:
        """``(label, value)`` of every style that can be used: the library's, then the official JoJoGAN
        styles that are cached or can be downloaded (Hugging Face copies, when not offline)."""
        choices = [(style.name, style.name) for style in self.library.list()]
        for entry in official_styles():
            if check_cached(entry).usable:
                choices.append((f"{entry.name} (official)", OFFICIAL_PREFIX + entry.name))
            elif entry.hf_repo and not is_offline():
                size = format_size(entry.size or entry.approx_size)
                choices.append((f"{entry.name} (official, {size} download)", OFFICIAL_PREFIX + entry.name))
        return choices

    def style_path(self, choice: str) -> Path:
        """The style file of a choice from :meth:`style_choices` (an official one is downloaded on first
        use).

        Raises:
            JojoganError: no style was chosen, or it is missing and cannot be fetched.
        """
        if not choice:
            raise JojoganError("choose a style first (train one, or pick one from the list)")
        if choice.startswith(OFFICIAL_PREFIX):
            return resolve_weights(choice.removeprefix(OFFICIAL_PREFIX), download=True)
        return self.library.get(choice).path

    # ------------------------------------------------------------------ stylizing
    def face(self, photo: PhotoSource, aligned: bool = False) -> Face:
        """The aligned, inverted largest face of a photo (:meth:`faces`)."""
        return self.faces(photo, aligned)[0]

    def faces(self, photo: PhotoSource, aligned: bool = False, which: str = "largest") -> list[Face]:
        """The aligned, inverted faces of a photo, computed once per photo content and kept.

        The key is the photo's sha256 (its file's bytes, or its pixels) with the alignment and inversion
        settings, so the same picture uploaded again is not inverted again.

        Args:
            photo: a path or PIL image.
            aligned: the photo is already an aligned face crop (then it is the one face).
            which: ``"largest"`` (one face) or ``"all"`` (every face large enough to align, left to right;
                the smaller ones are counted in each face's ``aligned.num_faces``).
        """
        which = "largest" if aligned else which
        key = (_content_sha256(photo), aligned, which, self.config.inversion, self.config.inversion_steps)

        def prepare() -> list[Face]:
            config = replace(self.config, aligned=aligned, face=which)
            with self._model_lock:
                crops = self.pipe.align_all(photo, config)
                return [self.pipe.prepare(photo, config, crop=crop) for crop in crops]

        return self._faces.get(key, prepare)

    def stylize(
        self,
        photo: PhotoSource,
        style: str,
        alpha: AlphaSpec = 1.0,
        *,
        paste: bool = False,
        cleanup: str | None = None,
        identity: str | None = None,
        aligned: bool = False,
    ) -> StylizeResult:
        """Stylize a photo's face; after the first call for a photo, only the generators run.

        Args:
            photo: a path or PIL image.
            style: a choice from :meth:`style_choices`.
            alpha: 0 = the photo's face, 1 = fully stylized.
            paste: blend the result back into the photo.
            cleanup: ``"codeformer"`` or ``None``.
            identity: a face-recognition network to measure how much of the person survived, or ``None``.
            aligned: the photo is already an aligned face crop (then ``paste`` is not possible).

        Raises:
            JojoganError: no face, an unreadable photo, a missing style or weights file, ...
        """
        return self.stylize_faces(
            photo, style, alpha, paste=paste, cleanup=cleanup, identity=identity, aligned=aligned
        )[0]

    def stylize_faces(
        self,
        photo: PhotoSource,
        style: str,
        alpha: AlphaSpec = 1.0,
        *,
        which: str = "largest",
        paste: bool = False,
        cleanup: str | None = None,
        identity: str | None = None,
        aligned: bool = False,
    ) -> list[StylizeResult]:
        """:meth:`stylize` for the largest face (a list of one) or, with ``which="all"``, every face of a
        group photo: with ``paste`` each result's ``pasted`` is the photo with all of them pasted back."""
        if paste and aligned:
            raise JojoganError("paste-back needs a photo to paste into; an aligned crop has none")
        style_path = self.style_path(style)
        prepared = self.faces(photo, aligned, which)
        with self._model_lock:
            config = self.pipe.settings(
                self.config, alpha, paste=paste, cleanup=cleanup, identity=identity, aligned=aligned
            )
            styled = self.pipe.render_many(prepared, style_path, config=config)
            recognizer = self.pipe.recognizer_for(config)
            return finish_faces(
                prepared, styled, config, paste_into=photo if paste else None, recognizer=recognizer
            )

    @staticmethod
    def save_result(
        result: StylizeResult,
        folder: str | os.PathLike,
        stem: str = "result",
        picture: Image.Image | None = None,
    ) -> Path:
        """Write the result as a PNG carrying its metadata (:meth:`StylizeResult.png_metadata`), atomically,
        as ``folder/STEM_styled.png``: ``picture`` when given (e.g. every face side by side), else the pasted
        photo when there is one, else the face."""
        if picture is None:
            picture = result.pasted if result.pasted is not None else result.image
        return Path(
            save_image(picture, Path(folder) / f"{stem}{STYLED_SUFFIX}", pnginfo=result.png_metadata())
        )

    def slider_strip(
        self,
        photo: PhotoSource,
        style: str,
        steps: int = SLIDER_STEPS,
        *,
        tile: int = TILE,
        aligned: bool = False,
        gif_path: str | os.PathLike | None = None,
    ) -> tuple[Image.Image, Path | None]:
        """The face at ``steps`` α from 0 to 1, as a labelled strip, and as a GIF when ``gif_path`` is given.

        Returns:
            ``(strip, gif_path or None)``.
        """
        style_path = self.style_path(style)
        prepared = self.face(photo, aligned)
        with self._model_lock:
            frames = self.pipe.slider(prepared, style_path, steps)
        strip = labelled_strip([img for _, img in frames], [f"alpha {a:.2f}" for a, _ in frames], tile=tile)
        gif = None
        if gif_path is not None:
            gif = Path(save_gif([img.resize((tile, tile)) for _, img in frames], gif_path))
        return strip, gif

    def stylize_video(
        self,
        video_path: str | os.PathLike,
        style: str,
        folder: str | os.PathLike,
        *,
        alpha: float = 1.0,
        face: str = "largest",
        paste: bool = True,
        report: bool = True,
        on_progress: Callable[[VideoProgress], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[Path, dict]:
        """Stylize the faces of a video (sound and timing kept) into ``folder/STEM_styled.mp4``.

        Args:
            video_path: the uploaded video.
            style: a choice from :meth:`style_choices`.
            folder: where the output (and its report, ``.json`` beside it) is written.
            alpha: 0 = the original faces, 1 = fully stylized.
            face: "largest" (one face per frame) or "all" (needs ``paste``).
            paste: put the stylized faces back into the frames (else the output is the face itself).
            report: write the run's report beside the output (the ``flicker`` figures of the face and the
                seam are measured on every run and returned in the report either way).
            on_progress: receives a :class:`VideoProgress` at the start and after every chunk.
            cancel: set it to stop after the current chunk (:class:`VideoCancelled` is raised).

        Returns:
            ``(output path, the run's report)``.

        Raises:
            VideoCancelled: ``cancel`` was set; nothing is left in ``folder``.
            JojoganError: not a video, no face in any frame, a missing style, ...
        """
        from jojogan.video.io import probe
        from jojogan.video.store import store_path

        source = Path(video_path)
        try:
            total = probe(source, self.config.max_pixels).packets
        except JojoganError as error:  # the messages name the upload's temporary path: keep its name
            raise JojoganError(str(error).replace(str(source), source.name)) from error
        out = Path(folder) / f"{source.stem}{Path(STYLED_SUFFIX).stem}.mp4"
        follow = _VideoReporter(total, VIDEO_CHUNK, on_progress, cancel)
        style_path = self.style_path(style)
        try:
            with self._model_lock:
                result = self.pipe.stylize_video(
                    source, out, style_path, self.config, self._video_settings(report),
                    alpha=float(alpha), face=face, paste=paste, on_chunk=follow.on_chunk,
                )  # fmt: skip
        except VideoCancelled:
            shutil.rmtree(store_path(out), ignore_errors=True)
            raise
        follow.done(result.report.get("frames", total))
        return result.path, result.report

    def _video_settings(self, report: bool):
        from jojogan.video import VideoConfig

        video = self.video if self.video is not None else VideoConfig()
        return replace(video, chunk_frames=VIDEO_CHUNK, report=report)

    def samples(
        self, style: str, n: int = SAMPLES, *, seed: int = 0, truncation: float = TRUNCATION, tile: int = TILE
    ) -> Image.Image:
        """Random faces (top row) and the same faces in the style (bottom row), as ``jojogan sample``."""
        style_path = self.style_path(style)
        with self._model_lock:
            originals, styled = self.pipe.sample(style_path, n, truncation=truncation, seed=seed)
        return image_grid([originals, styled], tile=tile)


def _name(source: PhotoSource) -> str:
    return Path(source).name if isinstance(source, (str, os.PathLike)) else "image"


def _page_wording(error: FaceNotFoundError, name: str) -> str:
    """The face errors as the page says them: the command line's "pass --aligned" becomes the checkbox."""
    if isinstance(error, FaceTooSmallError) or error.reason is not None:
        return str(error)
    return f"No face was found in {name}; if it is already an aligned face crop, tick “{ALIGNED_LABEL}”."


def _content_sha256(photo: PhotoSource) -> str:
    if isinstance(photo, Image.Image):
        digest = hashlib.sha256(f"{photo.mode} {photo.size}".encode())
        digest.update(photo.tobytes())
        return digest.hexdigest()
    try:
        return file_sha256(photo)
    except OSError as error:
        raise JojoganError(f"cannot read {Path(photo).name}: {error.strerror or error}") from error
