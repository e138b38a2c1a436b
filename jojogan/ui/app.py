"""The Gradio page of ``jojogan ui``: a thin layer over :class:`jojogan.ui.studio.Studio`.

Five tabs (Train, Stylize, Slider & samples, Library, Video), each built by its own function; the events
call a :class:`jojogan.ui.handlers.PageHandlers`. Every piece of model work shares one queue slot
(``concurrency_id="model"``, limit 1), so a GPU never trains two styles at once; the page stays responsive
because Gradio runs the work off its event loop and training runs in a :class:`TrainingJob` thread the page
polls. A refusal or an error is one line in the status text of the tab where the user acted.

Works wherever it is started: the style library's files (thumbnails, style files) are served through
Gradio's ``allowed_paths``, and uploads and results live in the server's own temporary folder
(:class:`jojogan.ui.session.UiSession`), removed when the server stops (Ctrl+C, SIGTERM, SIGHUP).

Private by default: analytics and Gradio's version check are off (``GRADIO_ANALYTICS_ENABLED=False`` is set
before Gradio is imported), no share link, no run history, no server-side rendering, and the theme uses the
system's fonts, so the page loads nothing from outside the machine.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from pathlib import Path
from types import SimpleNamespace

from jojogan.config import MASK_PRESETS, FinetuneConfig
from jojogan.errors import JojoganError
from jojogan.ui.guard import launch_options
from jojogan.ui.handlers import STOP_WAIT_S, PageHandlers
from jojogan.ui.session import UiSession, serve_until_stopped
from jojogan.ui.studio import ALIGNED_LABEL, Studio

__all__ = ["build_app", "launch", "require_gradio"]

log = logging.getLogger("jojogan")

TABS = ("Train a style", "Stylize", "Slider & samples", "Library", "Video")
"""The page's tabs, in order."""

CACHE_S = 3600
"""Gradio's copies of uploads and results older than this are deleted (checked as often)."""

TRAIN_PRESETS = MASK_PRESETS[:2]
"""The presets offered in the page ("default", "preserve-color"; the British spelling is an alias)."""

MODEL_QUEUE = {"concurrency_id": "model", "concurrency_limit": 1}
"""Every event that runs a model waits for this one slot."""

_CSS = """
.jj-header h1 { margin-bottom: 0; }
.jj-header p { margin-top: 4px; opacity: 0.8; }
.jj-notes p { margin: 2px 0; }
footer { display: none !important; }
"""

_SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]
_SYSTEM_MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]


def require_gradio(load: bool = True):
    """Import Gradio with analytics off and return the module (with ``load=False``, only check that it is
    installed, without importing it: ``None`` is returned).

    Raises:
        JojoganError: Gradio is not installed; names the extra that installs it.
    """
    missing = JojoganError('the web UI needs Gradio: pip install "jojogan[ui]" (or -e ".[ui]" in a checkout)')
    if not load:
        if importlib.util.find_spec("gradio") is None:
            raise missing
        return None
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # also turns off Gradio's version check
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        import gradio
    except ImportError as error:
        raise missing from error
    return gradio


def _theme(gr):
    return gr.themes.Soft(primary_hue="orange", font=_SYSTEM_FONTS, font_mono=_SYSTEM_MONO)


def _shown_path(path: Path) -> str:
    """``path`` as the page shows it: under the user's home folder as ``~/...``."""
    home = Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


# no "share" buttons: they post to Hugging Face; a grid of fixed-size tiles, not one stretched image
_VIEWER = {"buttons": ["download", "fullscreen"]}
_GALLERY = {**_VIEWER, "columns": 4, "fit_columns": False, "object_fit": "contain", "interactive": False}


def _header(gr, studio: Studio) -> None:
    gr.Markdown(
        "# jojogan studio\n"
        f"One-shot face stylization, on this machine ({studio.pipe.device}, {studio.pipe.size} px "
        f"generator, {studio.config.inversion} inversion). "
        f"Styles are kept in `{_shown_path(studio.library.root)}`.",
        elem_classes="jj-header",
    )


def _train_tab(gr) -> SimpleNamespace:
    """The Train tab's components."""
    with gr.Row():
        with gr.Column(scale=2):
            references = gr.File(
                label="Reference faces (one face each)", file_count="multiple", elem_id="jj-references"
            )
            aligned = gr.Checkbox(label=ALIGNED_LABEL, value=False)
            name = gr.Textbox(label="Style name", placeholder="e.g. my_sketch")
            preset = gr.Radio(list(TRAIN_PRESETS), value=TRAIN_PRESETS[0], label="Preset")
            iterations = gr.Slider(1, 1000, value=FinetuneConfig().iterations, step=1, label="Iterations")
            identity_weight = gr.Slider(
                0, 5, value=0, step=0.1, label="Identity weight (keeps the person recognisable; 0 = off)"
            )
            with gr.Row():
                train = gr.Button("Train", variant="primary")
                cancel = gr.Button("Cancel", variant="stop")
        with gr.Column(scale=3):
            crops = gr.Gallery(label="Crops used for training", height=220, **_GALLERY)
            notes = gr.Markdown(elem_classes="jj-notes")
            status = gr.Markdown(
                "Add reference faces, name the style, then Train.", elem_id="jj-train-status"
            )
            previews = gr.Gallery(label="Previews while training", height=260, **_GALLERY)
    saved = gr.State(None)  # the name of the style a run saved, for the other tabs' views
    return SimpleNamespace(
        references=references, aligned=aligned, name=name, preset=preset, iterations=iterations,
        identity_weight=identity_weight, train=train, cancel=cancel, crops=crops, notes=notes, status=status,
        previews=previews, saved=saved,
    )  # fmt: skip


def _stylize_tab(gr, studio: Studio) -> SimpleNamespace:
    """The Stylize tab's components."""
    with gr.Row():
        with gr.Column(scale=2):
            photo = gr.Image(
                label="Photo", type="filepath", sources=["upload", "webcam"], height=320, elem_id="jj-photo"
            )
            style = gr.Dropdown(label="Style", choices=studio.style_choices(), elem_id="jj-style")
            alpha = gr.Slider(0, 1, value=1, step=0.05, label="Strength α (0 = photo, 1 = style)")
            with gr.Row():
                paste = gr.Checkbox(label="Paste back into the photo", value=False)
                cleanup = gr.Checkbox(label="Clean up (CodeFormer)", value=False)
                identity = gr.Checkbox(label="Measure identity", value=False)
            with gr.Row():
                faces = gr.Radio(
                    ["largest", "all"], value="largest", label="Faces (all: every face of a group photo)",
                    elem_id="jj-faces",
                )  # fmt: skip
                aligned = gr.Checkbox(label="Photo is an aligned face crop", value=False)
        with gr.Column(scale=3):
            result = gr.Image(
                label="Result", type="pil", format="png", height=420, elem_classes="jj-result", **_VIEWER
            )
            info = gr.Markdown(elem_id="jj-stylize-status")
            download = gr.DownloadButton("Download PNG", variant="primary")
    return SimpleNamespace(
        photo=photo, style=style, alpha=alpha, paste=paste, cleanup=cleanup, identity=identity,
        aligned=aligned, faces=faces, result=result, info=info, download=download,
    )  # fmt: skip


def _slider_tab(gr) -> SimpleNamespace:
    """The Slider & samples tab's components."""
    gr.Markdown("Uses the photo and style chosen in the Stylize tab.")
    status = gr.Markdown(elem_id="jj-slider-status")
    with gr.Row():
        with gr.Column():
            steps = gr.Slider(2, 11, value=5, step=1, label="α steps")
            strip_button = gr.Button("Make the α strip", variant="primary")
            strip_image = gr.Image(
                label="α strip", type="pil", format="png", elem_classes="jj-strip", **_VIEWER
            )
            strip_gif = gr.File(label="Animated GIF")
        with gr.Column():
            count = gr.Slider(1, 8, value=4, step=1, label="Faces")
            seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
            samples_button = gr.Button("Draw random samples", variant="primary")
            samples_image = gr.Image(
                label="Random faces (top) in the style (bottom)", type="pil", format="png",
                elem_classes="jj-samples", **_VIEWER,
            )  # fmt: skip
    return SimpleNamespace(
        status=status, steps=steps, strip_button=strip_button, strip_image=strip_image, strip_gif=strip_gif,
        count=count, seed=seed, samples_button=samples_button, samples_image=samples_image,
    )  # fmt: skip


def _library_tab(gr, handlers: PageHandlers) -> SimpleNamespace:
    """The Library tab's components, filled with the library as it is now."""
    cards, names, chosen, detail, file = handlers.library_state()
    with gr.Row():
        with gr.Column(scale=3):
            gallery = gr.Gallery(value=cards, label="Styles", height=420, **_GALLERY)
        with gr.Column(scale=2):
            choice = gr.Dropdown(label="Style", choices=names, value=chosen)
            detail = gr.Markdown(detail)
            file = gr.DownloadButton("Download style file", value=file)
            with gr.Row():
                refresh = gr.Button("Refresh")
                delete = gr.Button("Delete", variant="stop")
            status = gr.Markdown(elem_id="jj-library-status")
    return SimpleNamespace(
        gallery=gallery, choice=choice, detail=detail, file=file, refresh=refresh, delete=delete,
        status=status, views=[gallery, choice, detail, file],
    )  # fmt: skip


def _video_tab(gr, studio: Studio) -> SimpleNamespace:
    """The Video tab's components."""
    with gr.Row():
        with gr.Column(scale=2):
            upload = gr.File(label="Video", file_types=["video"], elem_id="jj-video-upload")
            style = gr.Dropdown(label="Style", choices=studio.style_choices(), elem_id="jj-video-style")
            alpha = gr.Slider(0, 1, value=1, step=0.05, label="Strength α (0 = video, 1 = style)")
            with gr.Row():
                face = gr.Radio(["largest", "all"], value="largest", label="Faces")
                paste = gr.Checkbox(label="Paste back into the frames", value=True)
            with gr.Row():
                start = gr.Button("Start", variant="primary", elem_id="jj-video-start")
                cancel = gr.Button("Cancel", variant="stop")
        with gr.Column(scale=3):
            status = gr.Markdown("Upload a video, choose a style, then Start.", elem_id="jj-video-status")
            result = gr.Video(label="Result (with its sound)", interactive=False, elem_id="jj-video-result")
            flicker = gr.Markdown(elem_id="jj-video-flicker")
    return SimpleNamespace(
        upload=upload, style=style, alpha=alpha, face=face, paste=paste, start=start, cancel=cancel,
        status=status, result=result, flicker=flicker,
    )  # fmt: skip


def _wire_video(gr, h: PageHandlers, tab: SimpleNamespace) -> None:
    # Gradio hands its progress tracker to the parameter whose default is gr.Progress()
    def run(upload, style, alpha, face, paste, progress=gr.Progress()):  # noqa: B008
        yield from h.video(upload, style, alpha, face, paste, progress)

    inputs = [tab.upload, tab.style, tab.alpha, tab.face, tab.paste]
    tab.start.click(run, inputs, [tab.status, tab.result, tab.flicker], **MODEL_QUEUE)
    tab.cancel.click(h.cancel_video, None, tab.status, concurrency_limit=None, concurrency_id="cancel")


def _wire_train(gr, h: PageHandlers, train: SimpleNamespace, styles: list, library: SimpleNamespace) -> None:
    """Train-tab events; the other tabs' views are refreshed by a separate, quick event once a style is
    saved, so that a long or refused run never covers them."""

    # Gradio hands its progress tracker to the parameter whose default is gr.Progress()
    def run(files, aligned, name, preset, iterations, identity_weight, progress=gr.Progress()):  # noqa: B008
        yield from h.train(files, aligned, name, preset, iterations, identity_weight, progress)

    crops = [train.crops, train.notes]
    train.references.change(h.show_crops, [train.references, train.aligned], crops, **MODEL_QUEUE)
    train.aligned.change(h.show_crops, [train.references, train.aligned], crops, **MODEL_QUEUE)
    inputs = [
        train.references,
        train.aligned,
        train.name,
        train.preset,
        train.iterations,
        train.identity_weight,
    ]
    started = train.train.click(run, inputs, [train.status, train.previews, train.saved], **MODEL_QUEUE)
    started.then(h.after_training, train.saved, [styles[0], *library.views], show_progress="hidden")
    for style in styles[1:]:  # the other style choosers keep their choice
        started.then(h.style_dropdown, style, style, show_progress="hidden")
    train.cancel.click(h.cancel, None, train.status, concurrency_limit=None, concurrency_id="cancel")


def _wire_stylize(h: PageHandlers, tab: SimpleNamespace) -> None:
    inputs = [tab.photo, tab.style, tab.alpha, tab.paste, tab.cleanup, tab.identity, tab.aligned, tab.faces]
    outputs = [tab.result, tab.info, tab.download]
    for trigger in (tab.photo, tab.style, tab.alpha, tab.paste, tab.cleanup, tab.identity, tab.faces):
        trigger.change(h.stylize, inputs, outputs, trigger_mode="always_last", **MODEL_QUEUE)


def _wire_slider(h: PageHandlers, tab: SimpleNamespace, stylize: SimpleNamespace) -> None:
    tab.strip_button.click(
        h.strip,
        [stylize.photo, stylize.style, tab.steps, stylize.aligned],
        [tab.strip_image, tab.strip_gif, tab.status],
        **MODEL_QUEUE,
    )
    tab.samples_button.click(
        h.samples, [stylize.style, tab.count, tab.seed], [tab.samples_image, tab.status], **MODEL_QUEUE
    )


def _wire_library(h: PageHandlers, tab: SimpleNamespace, styles: list) -> None:
    tab.choice.change(h.library_detail, tab.choice, [tab.detail, tab.file])
    for button, handler in ((tab.delete, h.delete), (tab.refresh, h.refresh)):
        done = button.click(handler, tab.choice, [*tab.views, tab.status])
        for style in styles:
            done.then(h.style_dropdown, style, style, show_progress="hidden")


def build_app(studio: Studio, session: UiSession, handlers: PageHandlers | None = None):
    """The page: a ``gr.Blocks`` over ``studio`` (call :func:`launch` to serve it).

    Args:
        studio: what the page drives.
        session: the server's folder; Gradio's cache must already point into it
            (:meth:`UiSession.use_for_caches`, before Gradio is imported) for uploads to land there.
        handlers: the event handlers (``None``: made here over ``studio`` and ``session``).

    Raises:
        JojoganError: Gradio is not installed.
    """
    gr = require_gradio()
    handlers = handlers if handlers is not None else PageHandlers(gr, studio, session)
    with gr.Blocks(title="jojogan studio", analytics_enabled=False, delete_cache=(CACHE_S, CACHE_S)) as app:
        _header(gr, studio)
        with gr.Tabs():
            with gr.Tab(TABS[0]):
                train = _train_tab(gr)
            with gr.Tab(TABS[1]):
                stylize = _stylize_tab(gr, studio)
            with gr.Tab(TABS[2]):
                slider = _slider_tab(gr)
            with gr.Tab(TABS[3]):
                library = _library_tab(gr, handlers)
            with gr.Tab(TABS[4]):
                video = _video_tab(gr, studio)
        styles = [stylize.style, video.style]
        _wire_train(gr, handlers, train, styles, library)
        _wire_stylize(handlers, stylize)
        _wire_slider(handlers, slider, stylize)
        _wire_library(handlers, library, styles)
        _wire_video(gr, handlers, video)
    app.queue(default_concurrency_limit=1)
    return app


def settle(app, handlers: PageHandlers, timeout_s: float = STOP_WAIT_S) -> bool:
    """Before the server closes: cancel a training run and wait (bounded) until no event is running, so
    that no result is written into the server's folder after it is removed.

    Returns:
        Whether the queue became idle within ``timeout_s``.
    """
    handlers.stop()
    queue = getattr(app, "_queue", None)
    deadline = time.monotonic() + timeout_s
    while queue is not None and queue.get_active_worker_count() > 0:
        if time.monotonic() > deadline:
            log.warning("stopping with work still running after %.0f s", timeout_s)
            return False
        time.sleep(0.1)
    return True


def launch(
    studio: Studio,
    host: str = "127.0.0.1",
    port: int = 7860,
    *,
    block: bool = True,
    session: UiSession | None = None,
):
    """Serve the page on ``host:port`` (no share link, no analytics, nothing fetched from outside).

    With ``block``, serve until Ctrl+C, SIGTERM or SIGHUP, then stop a training run and remove the server's
    temporary folder (uploads, results, Gradio's cache).

    Args:
        studio: what the page drives.
        host: address to listen on; 127.0.0.1 keeps it private to this machine.
        port: the port.
        block: keep serving until stopped (``False`` returns once the server runs; the folder is then
            removed at exit).
        session: the server's folder, already used for the caches (``None``: made here; Gradio must then
            not have been imported yet for all of its cache to land in it).
    """
    if session is None:
        session = UiSession.create()
        session.use_for_caches()
    gr = require_gradio()
    handlers = PageHandlers(gr, studio, session)
    app = build_app(studio, session, handlers)
    app.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        ssr_mode=False,
        mcp_server=False,
        run_history=False,
        footer_links=[],
        prevent_thread_lock=True,
        theme=_theme(gr),
        css=_CSS,
        quiet=True,  # Gradio's own lines tell developers how to make a share link
        allowed_paths=[str(studio.library.root.resolve())],  # thumbnails and style files, wherever home is
        **launch_options(host, port, studio.config.max_pixels),  # only this address, bounded uploads
    )
    print(f"jojogan ui: open {app.local_url} in a browser (Ctrl+C stops it)", flush=True)
    if block:
        serve_until_stopped(app, session, before_close=lambda: settle(app, handlers))
        print("jojogan ui: stopped; its temporary files are removed", flush=True)
    return app
