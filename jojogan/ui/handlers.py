"""What the page's events call: :class:`PageHandlers`, one method per event, over a :class:`Studio`.

Every handler returns values for components of its own tab only, and reports a refusal or a failure as
one line in that tab's status text (never ``gr.Error``): an error attached to outputs of another tab would
cover that tab's controls with Gradio's error overlay. Each such line is also logged once on the server.
Results offered for download are written into the server's own folder (:class:`UiSession`).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

from jojogan.cleanup import CLEANERS
from jojogan.errors import JojoganError
from jojogan.identity import DEFAULT_METRIC_NETWORK
from jojogan.imaging import labelled_strip
from jojogan.ui.library import LibraryStyle
from jojogan.ui.session import SessionClosedError, UiSession
from jojogan.ui.studio import Studio, TrainingJob, VideoCancelled

__all__ = ["PageHandlers", "error_line", "flicker_line"]

log = logging.getLogger("jojogan")

POLL_S = 0.5
"""How often the page asks a training run for progress."""

STOP_WAIT_S = 60
"""How long a stopping server waits for a training run to end after cancelling it."""

EMPTY_LIBRARY = "The library is empty: train a style first."


def error_line(error: BaseException, where: str) -> str:
    """The exception as one line for the page (bold "Error:"), also logged once on the server."""
    if isinstance(error, (JojoganError, ValueError)):
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        log.warning("%s: %s", where, text)
    else:  # a bug: the traceback goes to the server's log
        log.error("unexpected error in the web UI (%s)", where, exc_info=error)
        text = f"unexpected {type(error).__name__}: {error} (details in the server's log)"
    return f"**Error:** {text}"


def paths(files) -> list[str]:
    """Uploaded files as paths (Gradio hands over paths, or objects with a ``name``)."""
    return [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files or []]


def library_cards(styles: list[LibraryStyle]) -> list[tuple[str, str]]:
    """(thumbnail path, caption) of every style that has a thumbnail."""
    cards = []
    for style in styles:
        info = style.info
        caption = f"{style.name} · {info.get('preset', '?')} · {info.get('iterations', '?')} steps"
        if style.thumbnail is not None:
            cards.append((str(style.thumbnail), caption))
    return cards


def flicker_line(report: dict) -> str:
    """The report's flicker figure as one line: the output's warping error over the input's, on the face and
    on the paste seam (1 = as steady as the input)."""
    figures = report.get("flicker")
    if not figures:
        return "Flicker is measured only when the faces are pasted back."
    parts = []
    for region in ("face", "seam"):
        ratio = (figures.get(region) or {}).get("ratio")
        parts.append(f"{region} {ratio:.2f}×" if ratio is not None else f"{region} not measured")
    return "Flicker against the input's (1 = as steady): " + ", ".join(parts)


def describe_style(style: LibraryStyle) -> str:
    """The Library tab's description of a style (Markdown)."""
    info = style.info
    loss = info.get("final_loss")
    lines = [
        f"**{style.name}**",
        f"- trained {info.get('created', '?')} from {', '.join(info.get('references', [])) or '?'}",
        f"- preset {info.get('preset', '?')}, {info.get('iterations', '?')} steps, identity weight "
        f"{info.get('identity_weight', 0)}, inversion {info.get('inversion', '?')}",
        f"- final loss {loss:.4f}" if isinstance(loss, (int, float)) else "- final loss unknown",
        f"- file: `{style.path}`",
    ]
    return "\n".join(lines)


class PageHandlers:
    """The page's event handlers over one studio and one server folder.

    Args:
        gr: the Gradio module (for ``gr.update`` and ``gr.skip``).
        studio: what the page drives.
        session: the server's folder, where downloads are written.
    """

    def __init__(self, gr, studio: Studio, session: UiSession):
        self.gr = gr
        self.studio = studio
        self.session = session
        self.job: TrainingJob | None = None
        self.download: Path | None = None
        self.video_cancel: threading.Event | None = None  # set by the Video tab's Cancel
        self.video_output: Path | None = None

    # ------------------------------------------------------------------ views of the library
    def style_dropdown(self, value=None):
        """The Stylize tab's style chooser as it is now, ``value`` chosen when it exists."""
        choices = self.studio.style_choices()
        values = [v for _, v in choices]
        chosen = value if value in values else (values[0] if values else None)
        return self.gr.update(choices=choices, value=chosen)

    def library_state(self, selected=None):
        """(cards, names, chosen name, its description, its file) of the library as it is now."""
        styles = self.studio.library.list()
        names = [s.name for s in styles]
        chosen = selected if selected in names else (names[0] if names else None)
        picked = next((s for s in styles if s.name == chosen), None)
        detail = describe_style(picked) if picked else EMPTY_LIBRARY
        return library_cards(styles), names, chosen, detail, str(picked.path) if picked else None

    def library_views(self, selected=None):
        """Values of the Library tab's gallery, chooser, description and file button."""
        cards, names, chosen, detail, file = self.library_state(selected)
        return cards, self.gr.update(choices=names, value=chosen), detail, file

    def library_detail(self, name):
        """The description and file of the chosen style."""
        return self.library_state(name)[3:]

    # ------------------------------------------------------------------ Train tab
    def show_crops(self, files, aligned):
        """The crops the references give, with a sentence per file."""
        try:
            crops = self.studio.reference_crops(paths(files), aligned=aligned)
        except Exception as error:  # noqa: BLE001 - shown in the tab, not as an overlay
            return [], error_line(error, "reference crops")
        gallery = [(c.image, c.name) for c in crops if c.ok]
        notes = "\n\n".join(c.message if c.ok else f"**Cannot use this file.** {c.message}" for c in crops)
        return gallery, notes

    def train(self, files, aligned, name, preset, iterations, identity_weight, progress):
        """Start a run and report it; yields (status, previews, name of the saved style or ``None``)."""
        skip = self.gr.skip()
        if not paths(files):
            yield "**Error:** add at least one reference face", skip, None
            return
        try:
            job = self.studio.start_training(
                paths(files), name, preset=preset, iterations=int(iterations),
                identity_weight=float(identity_weight), aligned=aligned,
            )  # fmt: skip
        except Exception as error:  # noqa: BLE001 - a refused name is a line in this tab
            yield error_line(error, "training"), skip, None
            return
        self.job = job
        try:
            yield from self._follow(job, progress)
        finally:
            # The page went away (Gradio closes the generator): stop the run and keep the model queue's slot
            # until it has stopped, so that no second run can start beside it.
            if not job.done:
                job.cancel()
                job.wait()
            self.job = None
        yield self._outcome(job)

    def _follow(self, job: TrainingJob, progress):
        shown = None  # the previews on the page: sent again only when there is a new one (each is a PNG)
        while not job.done:
            snapshot = job.progress
            if snapshot.stage == "training":
                progress((snapshot.step, snapshot.total), desc=snapshot.describe(), unit="steps")
            previews = [(img, f"step {s}") for s, img in snapshot.previews]
            yield snapshot.describe(), self.gr.skip() if len(previews) == shown else previews, None
            shown = len(previews)
            time.sleep(POLL_S)

    def _outcome(self, job: TrainingJob):
        snapshot = job.progress
        previews = [(img, f"step {s}") for s, img in snapshot.previews]
        if snapshot.stage == "cancelled":
            return f"Cancelled after step {snapshot.step}; nothing was saved.", previews, None
        if job.error is not None:
            return error_line(job.error, "training"), previews, None
        saved = job.result
        return f"Saved **{saved.name}** to the library · {snapshot.describe()}", previews, saved.name

    def after_training(self, saved_name):
        """The Stylize tab's chooser and the Library tab once a style was saved (else unchanged)."""
        if not saved_name:
            return (self.gr.skip(),) * 5
        return self.style_dropdown(saved_name), *self.library_views(saved_name)

    def cancel(self):
        job = self.job
        if job is None:
            return "Nothing is training."
        job.cancel()
        return "Cancelling after the current step…"

    def stop(self) -> None:
        """The server is stopping: cancel a training run and wait (bounded) until it has ended, so that the
        library gets no half-saved style."""
        if self.video_cancel is not None:
            self.video_cancel.set()
        job = self.job
        if job is not None and not job.done:
            job.cancel()
            job.wait(STOP_WAIT_S)

    # ------------------------------------------------------------------ Stylize tab
    def stylize(self, photo, style, alpha, paste, cleanup, identity, aligned, faces="largest"):
        """(picture, info line, file to download) for the Stylize tab; ``faces``: "largest" or "all".

        The picture is the downloadable PNG's path: the page shows that file, so the picture is encoded once
        (handed over as an image, Gradio would encode it again for the page)."""
        if not photo:
            return None, "Upload a photo (or take one with the webcam) to start.", None
        if not style:
            return None, "Choose a style: train one in the first tab, or pick an official one.", None
        try:
            results = self.studio.stylize_faces(
                photo, style, float(alpha), which=faces, paste=paste, aligned=aligned,
                cleanup=next(iter(CLEANERS)) if cleanup else None,
                identity=DEFAULT_METRIC_NETWORK if identity else None,
            )  # fmt: skip
            picture = _stylized_picture(results, paste)
            saved = self.session.write(
                lambda folder: self.studio.save_result(results[0], folder, Path(photo).stem, picture)
            )
        except SessionClosedError:
            return None, "The server is stopping.", None
        except Exception as error:  # noqa: BLE001 - shown in this tab's info line
            return None, error_line(error, "stylize"), None
        if self.download is not None:  # Gradio serves its own copy of the one it was handed
            shutil.rmtree(self.download.parent, ignore_errors=True)
        self.download = saved
        text = " · ".join([f"α = {float(alpha):.2f}", *_faces_lines(results, faces == "all")])
        return str(saved), f"{text} · {picture.width} × {picture.height} px", str(saved)

    # ------------------------------------------------------------------ Slider & samples tab
    def strip(self, photo, style, steps, aligned):
        """(α strip, its GIF, status line) for the Slider & samples tab."""
        if not photo:
            return None, None, "**Error:** upload a photo in the Stylize tab first"
        try:
            image, gif = None, None

            def save(folder: Path) -> Path:
                nonlocal image, gif
                image, gif = self.studio.slider_strip(
                    photo, style, int(steps), aligned=aligned, gif_path=folder / "slider.gif"
                )
                return gif

            self.session.write(save)
        except SessionClosedError:
            return None, None, "The server is stopping."
        except Exception as error:  # noqa: BLE001 - shown in this tab's status line
            return None, None, error_line(error, "α strip")
        return image, str(gif), f"α strip of {int(steps)} steps"

    def samples(self, style, count, seed):
        """(grid of random faces and their stylizations, status line)."""
        try:
            grid = self.studio.samples(style, int(count), seed=int(seed))
        except Exception as error:  # noqa: BLE001 - shown in this tab's status line
            return None, error_line(error, "samples")
        return grid, f"{int(count)} random faces, seed {int(seed)}"

    # ------------------------------------------------------------------ Video tab
    def video(self, upload, style, alpha, face, paste, progress):
        """Stylize an uploaded video; yields (status line, result video, flicker line) while it runs."""
        upload = (paths([upload]) or [None])[0]
        if not upload:
            yield "Upload a video to start.", None, ""
            return
        if not style:
            yield "Choose a style: train one in the first tab, or pick an official one.", None, ""
            return
        cancel = threading.Event()
        self.video_cancel = cancel
        run = {"progress": None}

        def work() -> None:
            def save(folder: Path) -> Path:
                run["output"], run["report"] = self.studio.stylize_video(
                    upload, style, folder, alpha=float(alpha), face=face, paste=bool(paste),
                    on_progress=lambda snapshot: run.update(progress=snapshot), cancel=cancel,
                )  # fmt: skip
                return run["output"]

            try:
                self.session.write(save)
            except BaseException as error:  # noqa: BLE001 - handed to the page as one line
                run["error"] = error

        thread = threading.Thread(target=work, name="jojogan-video", daemon=True)
        thread.start()
        try:
            while thread.is_alive():
                snapshot = run["progress"]
                if snapshot is not None and progress is not None and snapshot.stage != "tracking faces":
                    progress((snapshot.frames, snapshot.total), desc=snapshot.stage, unit="frames")
                yield (snapshot.describe() if snapshot else "starting…"), self.gr.skip(), self.gr.skip()
                thread.join(POLL_S)
        finally:
            cancel.set()  # the page went away: stop after the current chunk, keep the model slot until then
            thread.join()
        yield self._video_outcome(run)

    def _video_outcome(self, run: dict):
        error = run.get("error")
        if isinstance(error, VideoCancelled):
            return "Cancelled; nothing was written.", None, ""
        if isinstance(error, SessionClosedError):
            return "The server is stopping.", None, ""
        if error is not None:
            return error_line(error, "video"), None, ""
        if self.video_output is not None:  # Gradio serves its own copy of the one it was handed
            shutil.rmtree(self.video_output.parent, ignore_errors=True)
        self.video_output = run["output"]
        return run["progress"].describe(), str(run["output"]), flicker_line(run["report"])

    def cancel_video(self):
        cancel = self.video_cancel
        if cancel is None or cancel.is_set():
            return "Nothing is running."
        cancel.set()
        return "Cancelling after the current chunk of frames…"

    # ------------------------------------------------------------------ Library tab
    def delete(self, name):
        """Delete the chosen style: the Library tab's views and its status line."""
        if not name:
            return *(self.gr.skip(),) * 4, "**Error:** choose a style to delete"
        try:
            self.studio.library.delete(name)
        except Exception as error:  # noqa: BLE001 - shown in this tab's status line
            return *(self.gr.skip(),) * 4, error_line(error, "delete")
        return *self.library_views(), f"Deleted **{name}**."

    def refresh(self, selected):
        """The Library tab as the folder is now."""
        return *self.library_views(selected), ""


STRIP_TILE = 512
"""Largest tile of the Stylize tab's side-by-side faces (every face, not pasted back), in px."""


def _stylized_picture(results: list, paste: bool):
    """What the Stylize tab shows: the photo with every face pasted back, the one face, or the faces side by
    side (every face, not pasted)."""
    if paste:
        return results[0].pasted
    if len(results) == 1:
        return results[0].image
    tile = min(results[0].image.width, STRIP_TILE)
    return labelled_strip(
        [r.image for r in results], [f"face {r.face.aligned.face_index}" for r in results], tile
    )


def _faces_lines(results: list, every: bool) -> list[str]:
    """The info line's parts about the faces: how many (every face), and each one's identity figure."""
    parts = []
    if every:
        small = results[0].face.aligned.num_faces - len(results)
        parts.append(f"{len(results)} face{'s' if len(results) != 1 else ''}")
        if small > 0:
            parts.append(f"{small} more too small to align, left as they are")
    for result in results:
        if result.identity is not None:
            label = f"face {result.face.aligned.face_index} " if len(results) > 1 else ""
            parts.append(f"{label}identity: {result.identity.line()}")
    return parts
