"""The Gradio page of ``jojogan ui``: a thin layer over :class:`jojogan.ui.studio.Studio`.

Four tabs (Train, Stylize, Slider & samples, Library). Every piece of model work shares one queue slot
(``concurrency_id="model"``, limit 1), so a GPU never trains two styles at once; the page stays responsive
because Gradio runs the work off its event loop and training runs in a :class:`TrainingJob` thread the page
polls. Errors reach the page as one line (``gr.Error``).

Private by default: analytics and Gradio's version check are off (``GRADIO_ANALYTICS_ENABLED=False`` is set
before Gradio is imported), no share link, no run history, no server-side rendering, and the theme uses the
system's fonts, so the page loads nothing from outside the machine.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from jojogan.config import MASK_PRESETS, FinetuneConfig
from jojogan.errors import JojoganError
from jojogan.identity import DEFAULT_METRIC_NETWORK
from jojogan.ui.guard import launch_options
from jojogan.ui.library import LibraryStyle
from jojogan.ui.studio import ALIGNED_LABEL, Studio

__all__ = ["build_app", "launch", "require_gradio"]

log = logging.getLogger("jojogan")

TABS = ("Train a style", "Stylize", "Slider & samples", "Library")
"""The page's tabs, in order."""

POLL_S = 0.5
"""How often the page asks a training run for progress."""

CACHE_S = 3600
"""Gradio's copies of uploads and results older than this are deleted (checked as often)."""

TRAIN_PRESETS = MASK_PRESETS[:2]
"""The presets offered in the page ("default", "preserve-color"; the British spelling is an alias)."""

_CSS = """
.jj-header h1 { margin-bottom: 0; }
.jj-header p { margin-top: 4px; opacity: 0.8; }
.jj-notes p { margin: 2px 0; }
footer { display: none !important; }
"""

_SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]
_SYSTEM_MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]


def require_gradio():
    """Import Gradio with analytics off and return the module.

    Raises:
        JojoganError: Gradio is not installed; names the extra that installs it.
    """
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # also turns off Gradio's version check
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        import gradio
    except ImportError as error:
        raise JojoganError(
            'the web UI needs Gradio: pip install "jojogan[ui]" (or -e ".[ui]" in a checkout)'
        ) from error
    return gradio


def _theme(gr):
    return gr.themes.Soft(primary_hue="orange", font=_SYSTEM_FONTS, font_mono=_SYSTEM_MONO)


def _page_error(gr, error: BaseException | str):
    """The exception (or a sentence) as the page's one-line error; the server's terminal gets one line
    for it, a traceback only for an unexpected error (Gradio prints none: ``print_exception=False``)."""
    if isinstance(error, (str, JojoganError, ValueError)):
        line = str(error).splitlines()[0] if str(error) else type(error).__name__
        log.info("page error: %s", line)
        return gr.Error(line, print_exception=False)
    log.error("unexpected error in the web UI", exc_info=error)  # the traceback goes to the server's log
    return gr.Error(
        f"unexpected {type(error).__name__}: {error} (details in the server's log)", print_exception=False
    )


def _paths(files) -> list[str]:
    """Uploaded files as paths (Gradio hands over paths, or objects with a ``name``)."""
    return [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files or []]


def _library_cards(styles: list[LibraryStyle]) -> list[tuple[str, str]]:
    cards = []
    for style in styles:
        info = style.info
        caption = f"{style.name} · {info.get('preset', '?')} · {info.get('iterations', '?')} steps"
        if style.thumbnail is not None:
            cards.append((str(style.thumbnail), caption))
    return cards


def _describe_style(style: LibraryStyle) -> str:
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


def _shown_path(path: Path) -> str:
    """``path`` as the page shows it: under the user's home folder as ``~/...``."""
    home = Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


def build_app(studio: Studio):
    """The page: a ``gr.Blocks`` over ``studio`` (call :func:`launch` to serve it).

    Raises:
        JojoganError: Gradio is not installed.
    """
    gr = require_gradio()
    outputs_dir = Path(tempfile.mkdtemp(prefix="jojogan-ui-"))
    atexit.register(shutil.rmtree, outputs_dir, ignore_errors=True)
    current: dict = {"job": None, "download": None}
    model = {"concurrency_id": "model", "concurrency_limit": 1}

    def style_dropdown(value=None):
        choices = studio.style_choices()
        values = [v for _, v in choices]
        return gr.update(choices=choices, value=value if value in values else (values[0] if values else None))

    def library_state(selected=None):
        """(cards, names, chosen name, its description, its file) of the library as it is now."""
        styles = studio.library.list()
        names = [s.name for s in styles]
        chosen = selected if selected in names else (names[0] if names else None)
        picked = next((s for s in styles if s.name == chosen), None)
        detail = _describe_style(picked) if picked else "The library is empty: train a style first."
        return _library_cards(styles), names, chosen, detail, str(picked.path) if picked else None

    def library_views(selected=None):
        cards, names, chosen, detail, file = library_state(selected)
        return cards, gr.update(choices=names, value=chosen), detail, file

    # ------------------------------------------------------------------ handlers
    def show_crops(files, aligned):
        crops = studio.reference_crops(_paths(files), aligned=aligned)
        gallery = [(c.image, c.name) for c in crops if c.ok]
        notes = "\n\n".join(c.message if c.ok else f"**Cannot use this file.** {c.message}" for c in crops)
        return gallery, notes

    # Gradio hands its progress tracker to the parameter whose default is gr.Progress()
    def train(files, aligned, name, preset, iterations, identity_weight, progress=gr.Progress()):  # noqa: B008
        paths = _paths(files)
        if not paths:
            raise _page_error(gr, "add at least one reference face")
        try:
            job = studio.start_training(
                paths, name, preset=preset, iterations=int(iterations),
                identity_weight=float(identity_weight), aligned=aligned,
            )  # fmt: skip
        except Exception as error:
            raise _page_error(gr, error) from error
        current["job"] = job
        try:
            while not job.done:
                snapshot = job.progress
                if snapshot.stage == "training":
                    progress((snapshot.step, snapshot.total), desc=snapshot.describe(), unit="steps")
                yield (
                    snapshot.describe(),
                    [(img, f"step {s}") for s, img in snapshot.previews],
                    *([gr.skip()] * 5),
                )
                time.sleep(POLL_S)
        finally:
            # The page went away (Gradio closes the generator): stop the run and keep the model queue's slot
            # until it has stopped, so that no second run can start beside it.
            if not job.done:
                job.cancel()
                job.wait()
            current["job"] = None
        snapshot = job.progress
        previews = [(img, f"step {s}") for s, img in snapshot.previews]
        if snapshot.stage == "cancelled":
            yield f"Cancelled after step {snapshot.step}; nothing was saved.", previews, *([gr.skip()] * 5)
            return
        if job.error is not None:
            raise _page_error(gr, job.error)
        saved = job.result
        yield (
            f"Saved **{saved.name}** to the library · {snapshot.describe()}",
            previews,
            style_dropdown(saved.name),
            *library_views(saved.name),
        )

    def cancel():
        job = current["job"]
        if job is None:
            return "Nothing is training."
        job.cancel()
        return "Cancelling after the current step…"

    def stylize(photo, style, alpha, paste, cleanup, identity, aligned):
        if not photo:
            return None, "Upload a photo (or take one with the webcam) to start.", None
        if not style:
            return None, "Choose a style: train one in the first tab, or pick an official one.", None
        try:
            result = studio.stylize(
                photo, style, float(alpha), paste=paste, cleanup="codeformer" if cleanup else None,
                identity=DEFAULT_METRIC_NETWORK if identity else None, aligned=aligned,
            )  # fmt: skip
            folder = Path(tempfile.mkdtemp(dir=outputs_dir))
            saved = studio.save_result(result, folder, Path(photo).stem)
        except Exception as error:
            raise _page_error(gr, error) from error
        if current["download"] is not None:  # Gradio serves its own copy of the one it was handed
            shutil.rmtree(current["download"], ignore_errors=True)
        current["download"] = folder
        picture = result.pasted if result.pasted is not None else result.image
        text = f"α = {float(alpha):.2f}"
        if result.identity is not None:
            text += f" · identity kept {result.identity:.3f} ({result.identity_net})"
        text += f" · {picture.width} × {picture.height} px"
        return picture, text, str(saved)

    def strip(photo, style, steps, aligned):
        if not photo:
            raise _page_error(gr, "upload a photo in the Stylize tab first")
        try:
            gif = Path(tempfile.mkdtemp(dir=outputs_dir)) / "slider.gif"
            image, gif_path = studio.slider_strip(photo, style, int(steps), aligned=aligned, gif_path=gif)
        except Exception as error:
            raise _page_error(gr, error) from error
        return image, str(gif_path)

    def samples(style, count, seed):
        try:
            return studio.samples(style, int(count), seed=int(seed))
        except Exception as error:
            raise _page_error(gr, error) from error

    def delete(name):
        if not name:
            raise _page_error(gr, "choose a style to delete")
        try:
            studio.library.delete(name)
        except Exception as error:
            raise _page_error(gr, error) from error
        return (*library_views(), style_dropdown())

    def refresh(selected):
        return (*library_views(selected), style_dropdown())

    # ------------------------------------------------------------------ layout
    default_iterations = FinetuneConfig().iterations
    # no "share" buttons: they post to Hugging Face; a grid of fixed-size tiles, not one stretched image
    viewer = {"buttons": ["download", "fullscreen"]}
    gallery = {**viewer, "columns": 4, "fit_columns": False, "object_fit": "contain", "interactive": False}
    with gr.Blocks(title="jojogan studio", analytics_enabled=False, delete_cache=(CACHE_S, CACHE_S)) as app:
        gr.Markdown(
            "# jojogan studio\n"
            f"One-shot face stylization, on this machine ({studio.pipe.device}, {studio.pipe.size} px "
            f"generator, {studio.inversion} inversion). "
            f"Styles are kept in `{_shown_path(studio.library.root)}`.",
            elem_classes="jj-header",
        )
        with gr.Tabs():
            with gr.Tab(TABS[0]):
                with gr.Row():
                    with gr.Column(scale=2):
                        references = gr.File(
                            label="Reference faces (one face each)",
                            file_count="multiple",
                            elem_id="jj-references",
                        )
                        aligned_refs = gr.Checkbox(label=ALIGNED_LABEL, value=False)
                        style_name = gr.Textbox(label="Style name", placeholder="e.g. my_sketch")
                        preset = gr.Radio(list(TRAIN_PRESETS), value=TRAIN_PRESETS[0], label="Preset")
                        iterations = gr.Slider(1, 1000, value=default_iterations, step=1, label="Iterations")
                        identity_weight = gr.Slider(
                            0, 5, value=0, step=0.1,
                            label="Identity weight (keeps the person recognisable; 0 = off)",
                        )  # fmt: skip
                        with gr.Row():
                            train_button = gr.Button("Train", variant="primary")
                            cancel_button = gr.Button("Cancel", variant="stop")
                    with gr.Column(scale=3):
                        crops = gr.Gallery(label="Crops used for training", height=220, **gallery)
                        crop_notes = gr.Markdown(elem_classes="jj-notes")
                        train_status = gr.Markdown("Add reference faces, name the style, then Train.")
                        previews = gr.Gallery(label="Previews while training", height=260, **gallery)
            with gr.Tab(TABS[1]):
                with gr.Row():
                    with gr.Column(scale=2):
                        photo = gr.Image(
                            label="Photo",
                            type="filepath",
                            sources=["upload", "webcam"],
                            height=320,
                            elem_id="jj-photo",
                        )
                        style = gr.Dropdown(label="Style", choices=studio.style_choices())
                        alpha = gr.Slider(0, 1, value=1, step=0.05, label="Strength α (0 = photo, 1 = style)")
                        with gr.Row():
                            paste = gr.Checkbox(label="Paste back into the photo", value=False)
                            cleanup = gr.Checkbox(label="Clean up (CodeFormer)", value=False)
                            identity = gr.Checkbox(label="Measure identity", value=False)
                        photo_aligned = gr.Checkbox(label="Photo is an aligned face crop", value=False)
                    with gr.Column(scale=3):
                        result = gr.Image(
                            label="Result",
                            type="pil",
                            format="png",
                            height=420,
                            elem_classes="jj-result",
                            **viewer,
                        )
                        result_info = gr.Markdown()
                        download = gr.DownloadButton("Download PNG", variant="primary")
            with gr.Tab(TABS[2]):
                gr.Markdown("Uses the photo and style chosen in the Stylize tab.")
                with gr.Row():
                    with gr.Column():
                        steps = gr.Slider(2, 11, value=5, step=1, label="α steps")
                        strip_button = gr.Button("Make the α strip", variant="primary")
                        strip_image = gr.Image(
                            label="α strip", type="pil", format="png", elem_classes="jj-strip", **viewer
                        )
                        strip_gif = gr.File(label="Animated GIF")
                    with gr.Column():
                        count = gr.Slider(1, 8, value=4, step=1, label="Faces")
                        seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                        samples_button = gr.Button("Draw random samples", variant="primary")
                        samples_image = gr.Image(
                            label="Random faces (top) in the style (bottom)", type="pil", format="png",
                            elem_classes="jj-samples", **viewer,
                        )  # fmt: skip
            with gr.Tab(TABS[3]):
                cards0, names0, chosen0, detail0, file0 = library_state()
                with gr.Row():
                    with gr.Column(scale=3):
                        library_gallery = gr.Gallery(value=cards0, label="Styles", height=420, **gallery)
                    with gr.Column(scale=2):
                        library_choice = gr.Dropdown(label="Style", choices=names0, value=chosen0)
                        library_detail = gr.Markdown(detail0)
                        library_file = gr.DownloadButton("Download style file", value=file0)
                        with gr.Row():
                            refresh_button = gr.Button("Refresh")
                            delete_button = gr.Button("Delete", variant="stop")

        # ------------------------------------------------------------------ events
        library_outputs = [library_gallery, library_choice, library_detail, library_file]
        references.change(show_crops, [references, aligned_refs], [crops, crop_notes], **model)
        aligned_refs.change(show_crops, [references, aligned_refs], [crops, crop_notes], **model)
        train_button.click(
            train,
            [references, aligned_refs, style_name, preset, iterations, identity_weight],
            [train_status, previews, style, *library_outputs],
            **model,
        )
        cancel_button.click(cancel, None, train_status, concurrency_limit=None, concurrency_id="cancel")
        stylize_inputs = [photo, style, alpha, paste, cleanup, identity, photo_aligned]
        stylize_outputs = [result, result_info, download]
        for trigger in (photo.change, style.change, paste.change, cleanup.change, identity.change):
            trigger(stylize, stylize_inputs, stylize_outputs, trigger_mode="always_last", **model)
        alpha.change(stylize, stylize_inputs, stylize_outputs, trigger_mode="always_last", **model)
        strip_button.click(strip, [photo, style, steps, photo_aligned], [strip_image, strip_gif], **model)
        samples_button.click(samples, [style, count, seed], samples_image, **model)
        library_choice.change(
            lambda name: library_state(name)[3:], library_choice, [library_detail, library_file]
        )
        delete_button.click(delete, library_choice, [*library_outputs, style])
        refresh_button.click(refresh, library_choice, [*library_outputs, style])
    app.queue(default_concurrency_limit=1)
    return app


def launch(studio: Studio, host: str = "127.0.0.1", port: int = 7860, *, block: bool = True):
    """Serve the page on ``host:port`` (no share link, no analytics, nothing fetched from outside).

    Args:
        studio: what the page drives.
        host: address to listen on; 127.0.0.1 keeps it private to this machine.
        port: the port.
        block: keep serving until interrupted (``False`` returns once the server runs).
    """
    gr = require_gradio()
    app = build_app(studio)
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
        **launch_options(host, port, studio.pipe.max_pixels),  # only this address, bounded uploads
    )
    print(f"jojogan ui: open {app.local_url} in a browser (Ctrl+C stops it)", flush=True)
    if block:
        app.block_thread()
    return app
