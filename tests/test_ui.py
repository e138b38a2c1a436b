"""The web UI's façade (Studio), its style library and the page's structure, on a tiny checkpoint (no browser;
tests/test_ui_browser.py drives the real page)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from jojogan.api import JoJoGAN
from jojogan.cli import main as cli
from jojogan.errors import JojoganError
from jojogan.imaging import to_pil
from jojogan.style_file import load_style
from jojogan.ui import LibraryError, Studio, StyleLibrary, TrainingCancelled
from jojogan.ui.library import THUMBNAIL_PX, check_style_name
from jojogan.ui.session import UiSession, serve_until_stopped
from jojogan.ui.studio import ALIGNED_LABEL, OFFICIAL_PREFIX
from jojogan.weights import official_styles

from factories import group_photo, reduced_image, tiny_discriminator, tiny_generator

SIZE = 128


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny official-layout checkpoint, two 'aligned' faces made by its generator, and a text file."""
    root = tmp_path_factory.mktemp("ui")
    gen, disc = tiny_generator(SIZE, seed=3), tiny_discriminator(SIZE, seed=4)
    torch.save(
        {"g_ema": gen.state_dict(), "d": disc.state_dict(), "latent_avg": gen.mean_latent(64).reshape(-1)},
        root / "base.pt",
    )
    with torch.no_grad():
        images = gen(torch.randn(2, gen.style_dim, generator=torch.Generator().manual_seed(5)))
    for i, image in enumerate(images):
        to_pil(image).save(root / f"face{i}.png")
    (root / "notes.txt").write_text("not a picture")
    return root


@pytest.fixture(scope="module")
def studio(workdir):
    pipe = JoJoGAN.from_pretrained(base=workdir / "base.pt", device="cpu")
    return Studio(pipe, StyleLibrary(workdir / "library"), inversion="optimize", inversion_steps=3)


@pytest.fixture(scope="module")
def trained(studio, workdir):
    """One style trained for 3 steps with a preview every step; returns (library style, progress reports)."""
    reports = []
    style = studio.train(
        [workdir / "face0.png"],
        "tiny",
        iterations=3,
        aligned=True,
        preview_every=1,
        on_progress=reports.append,
    )
    return style, reports


def test_reference_crops_explain_each_file(studio, workdir):
    gray = workdir / "gray.png"
    Image.new("RGB", (160, 120), (128, 128, 128)).save(gray)
    ok, text = studio.reference_crops([workdir / "face0.png", workdir / "notes.txt"], aligned=True)
    assert ok.ok and ok.image.size == (SIZE, SIZE) and "aligned crop" in ok.message
    assert not text.ok and text.image is None and "notes.txt is not an image file" in text.message
    (no_face,) = studio.reference_crops([gray])
    assert not no_face.ok and "No face was found in gray.png" in no_face.message
    assert ALIGNED_LABEL in no_face.message  # the page's checkbox, not the command line's --aligned


def _half_size_iu(shared) -> Image.Image:
    """IU's photo at half its width and height: a quarter of the pixels for dlib's detector, and her face
    (269 px) is still larger than the 128 px crops."""
    return reduced_image(shared("images", "jojogan", "test_input", "iu.jpeg"), 2)


def test_several_faces_are_named_and_the_largest_is_used(studio, shared, tmp_path):
    photo = _half_size_iu(shared)  # and a copy at half that size: two faces of 269 and 134 px
    small = photo.resize((photo.width // 2, photo.height // 2))
    pair = Image.new("RGB", (photo.width + small.width, photo.height), "white")
    pair.paste(photo, (0, 0))
    pair.paste(small, (photo.width, 0))
    pair.save(tmp_path / "two.png")
    (crop,) = studio.reference_crops([tmp_path / "two.png"])
    assert crop.ok and "2 faces found; the largest one is used" in crop.message


def test_training_reports_progress_and_fills_the_library(studio, trained):
    style, reports = trained
    stages = [r.stage for r in reports]
    assert stages[0] == "preparing" and stages[-1] == "done" and "saving" in stages
    steps = [r.step for r in reports if r.stage == "training"]
    assert steps == [1, 2, 3]
    at_end = [r for r in reports if r.stage == "training"][-1]
    assert at_end.eta_s == 0 and at_end.loss > 0 and len(at_end.previews) == 3
    assert [s for s, _ in at_end.previews] == [1, 2, 3]
    assert at_end.previews[0][1].size == (SIZE, SIZE)
    assert "step 3/3 · loss" in at_end.describe()
    # the library holds the style file, its thumbnail and its record
    assert style.name == "tiny" and studio.library.list()[0].name == "tiny"
    assert Image.open(style.thumbnail).size == (THUMBNAIL_PX, THUMBNAIL_PX)
    assert json.loads(style.path.with_suffix(".json").read_text())["iterations"] == 3
    loaded = load_style(style.path)
    assert loaded.metadata["iterations"] == 3 and len(loaded.metadata["losses"]) == 3
    assert ("tiny", "tiny") in studio.style_choices()


def test_a_taken_or_bad_name_is_refused_before_any_work(studio, trained, workdir, monkeypatch):
    monkeypatch.setattr(studio.pipe, "finetune", lambda *a, **k: pytest.fail("trained anyway"))
    with pytest.raises(LibraryError, match="already exists"):
        studio.train([workdir / "face0.png"], "tiny", iterations=1, aligned=True)
    with pytest.raises(LibraryError, match="not allowed"):
        studio.train([workdir / "face0.png"], "../escape", iterations=1, aligned=True)


def test_cancel_stops_training_and_saves_nothing(studio, workdir):
    job = studio.start_training([workdir / "face1.png"], "cancelled", iterations=200, aligned=True)
    while job.progress.step < 1 and not job.done:
        job.wait(0.05)
    job.cancel()
    assert job.wait(60)
    assert isinstance(job.error, TrainingCancelled) and job.progress.stage == "cancelled"
    assert job.progress.step < 200 and job.result is None
    assert "cancelled" not in studio.library
    assert not list(studio.library.root.glob("cancelled*"))


def test_stylize_caches_the_inversion_and_alpha_changes_the_face(studio, trained, workdir, monkeypatch):
    calls = []
    invert = studio.pipe.invert
    monkeypatch.setattr(studio.pipe, "invert", lambda *a, **k: calls.append(1) or invert(*a, **k))
    photo = workdir / "face1.png"
    styled = studio.stylize(photo, "tiny", 1.0, aligned=True)
    original = studio.stylize(photo, "tiny", 0.0, aligned=True)
    half = studio.stylize(photo, "tiny", 0.5, aligned=True)
    assert len(calls) == 1  # one inversion for the photo; moving α only runs the generators
    a0, a1, ah = (np.asarray(r.image, dtype=int) for r in (original, styled, half))
    assert np.abs(a0 - a1).mean() > 1 and not np.array_equal(ah, a0) and not np.array_equal(ah, a1)
    with pytest.raises(JojoganError, match="paste-back needs a photo"):
        studio.stylize(photo, "tiny", 1.0, aligned=True, paste=True)
    with pytest.raises(JojoganError, match="choose a style"):
        studio.stylize(photo, "", 1.0, aligned=True)


def test_save_result_is_a_png_with_the_results_metadata(studio, trained, workdir, tmp_path):
    result = studio.stylize(workdir / "face1.png", "tiny", 0.75, aligned=True)
    path = studio.save_result(result, tmp_path, "face1")
    assert path.name == "face1_styled.png"
    saved = Image.open(path)
    assert saved.format == "PNG" and saved.size == (SIZE, SIZE)
    assert saved.text["jojogan:alpha"] == "0.75"
    assert np.array_equal(np.asarray(saved.convert("RGB")), np.asarray(result.image))


def test_a_real_photo_pasted_back_with_its_identity_score(studio, trained, shared, tmp_path):
    photo = tmp_path / "iu.png"
    _half_size_iu(shared).save(photo)
    result = studio.stylize(photo, "tiny", 0.5, paste=True, identity="dlib")
    assert result.pasted.size == Image.open(photo).size and result.image.size == (SIZE, SIZE)
    # a tiny random generator paints noise, not the person: dlib's published rule says so
    assert result.identity.network == "dlib" and result.identity.metric == "euclidean"
    assert result.identity.similarity >= 0.6 and not result.identity.same_person
    saved = Image.open(studio.save_result(result, tmp_path, "iu"))
    assert saved.size == result.pasted.size  # the download is the pasted photo, not the face alone
    assert json.loads(saved.text["jojogan:identity"]) == result.identity.to_dict()
    assert saved.text["jojogan:alpha"] == "0.5"


def test_slider_strip_gif_and_samples(studio, trained, workdir, tmp_path):
    strip, gif = studio.slider_strip(
        workdir / "face1.png", "tiny", 3, tile=32, aligned=True, gif_path=tmp_path / "s.gif"
    )
    assert strip.size == (3 * 32 + 2 * 4, 32 + 24) and Image.open(gif).n_frames == 4  # 3 forward, 1 back
    grid = studio.samples("tiny", 2, seed=1, tile=32)
    assert grid.size == (2 * 32 + 4, 2 * 32 + 4)


def test_library_round_trip(tmp_path):
    library = StyleLibrary(tmp_path / "lib")
    assert library.list() == []
    written = []

    def save(path):
        written.append(path)
        path.write_bytes(b"weights")

    entry = library.add("sketch-1", save, Image.new("RGB", (64, 64), "red"), {"iterations": 7})
    assert written == [tmp_path / "lib" / "sketch-1.safetensors"]
    assert entry.info == {"iterations": 7, "name": "sketch-1"}
    assert Image.open(entry.thumbnail).getpixel((0, 0)) == (255, 0, 0)
    assert [s.name for s in library.list()] == ["sketch-1"] and "sketch-1" in library
    with pytest.raises(LibraryError, match="already exists"):
        library.add("sketch-1", save, Image.new("RGB", (8, 8)), {})
    for bad in ("", " ", "a/b", ".hidden", "x" * 65, "has space", "a:b"):
        with pytest.raises(LibraryError):
            check_style_name(bad)
    (tmp_path / "lib" / "stray.json").write_text("{}")  # no style file beside it: not listed
    library.delete("sketch-1")
    assert library.list() == [] and not list((tmp_path / "lib").glob("sketch-1*"))
    with pytest.raises(LibraryError, match="no style named"):
        library.get("sketch-1")


def test_official_styles_from_the_registry_offline_only_cached_ones(studio, tmp_path, monkeypatch):
    names = [entry.name for entry in official_styles()]
    assert "jojo" in names and "arcane_caitlyn_preserve_color" in names and "ffhq" not in names
    assert all(entry.filename.endswith(".pt") for entry in official_styles())
    monkeypatch.setenv("JOJOGAN_HOME", str(tmp_path))  # empty cache, and offline (conftest)
    assert not [v for _, v in studio.style_choices() if v.startswith(OFFICIAL_PREFIX)]
    with pytest.raises(JojoganError, match="not in the weights cache"):
        studio.style_path(OFFICIAL_PREFIX + "jojo")
    monkeypatch.delenv("JOJOGAN_OFFLINE")  # online: the Hugging Face copies can be fetched on first use
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    offered = dict((v, label) for label, v in studio.style_choices())
    assert (
        offered[OFFICIAL_PREFIX + "jojo_preserve_color"]
        == "jojo_preserve_color (official, 132.8 MB download)"
    )
    assert OFFICIAL_PREFIX + "jojo" not in offered  # only a Google Drive link: never fetched automatically


def _tab_of(block):
    """The tab a component sits in (``None`` outside the tabs)."""
    import gradio as gr

    while block is not None and not isinstance(block, gr.Tab):
        block = block.parent
    return block.label if block is not None else None


def test_the_page_has_five_tabs_one_model_queue_and_no_event_across_tabs(studio, tmp_path):
    pytest.importorskip("gradio", reason="the page needs the ui extra (gradio)")
    import gradio as gr

    from jojogan.ui.app import TABS, build_app

    session = UiSession(tmp_path)
    app = build_app(studio, session)
    tabs = [block.label for block in app.blocks.values() if isinstance(block, gr.Tab)]
    assert tabs == list(TABS) == ["Train a style", "Stylize", "Slider & samples", "Library", "Video"]
    model_work = [dep for dep in app.fns.values() if dep.concurrency_id == "model"]
    assert len(model_work) >= 10 and all(dep.concurrency_limit == 1 for dep in model_work)
    for dep in model_work:  # its progress and its errors stay on the tab where the user acted
        triggers = {_tab_of(app.blocks[block_id]) for block_id, _ in dep.targets}
        outputs = {_tab_of(block) for block in dep.outputs if not isinstance(block, gr.State)}
        assert len(triggers | outputs) == 1, (dep.name, triggers, outputs)
    refreshes = [dep for dep in app.fns.values() if dep.trigger_after is not None]
    assert {dep.name for dep in refreshes} == {"after_training", "style_dropdown"}
    assert all(dep.show_progress == "hidden" for dep in refreshes)  # quick view updates: no overlay


@pytest.fixture
def handlers(studio, tmp_path):
    pytest.importorskip("gradio", reason="the page needs the ui extra (gradio)")
    import gradio as gr

    from jojogan.ui.handlers import PageHandlers

    session = UiSession(tmp_path / "session")
    yield PageHandlers(gr, studio, session)
    session.remove()


def test_a_refused_training_is_a_line_in_its_own_tab(handlers, trained, workdir, caplog):
    caplog.set_level("WARNING", logger="jojogan")
    args = ([str(workdir / "face0.png")], True, "tiny", "default", 1, 0)
    (status, previews, saved), *rest = list(handlers.train(*args, progress=None))
    assert not rest and saved is None
    assert status == "**Error:** a style named 'tiny' already exists; choose another name or delete it"
    assert handlers.after_training(saved) == (handlers.gr.skip(),) * 5  # the other tabs stay as they are
    assert [r.getMessage() for r in caplog.records] == [
        "training: a style named 'tiny' already exists; choose another name or delete it"
    ]
    (status, _, _), *rest = list(handlers.train([], True, "new", "default", 1, 0, progress=None))
    assert status == "**Error:** add at least one reference face"


def test_handler_errors_are_lines_in_their_tab(handlers, trained, workdir):
    photo = str(workdir / "face1.png")
    picture, info, download = handlers.stylize(photo, "gone", 1.0, False, False, False, True)
    assert picture is None and download is None
    assert info.startswith("**Error:** there is no style named 'gone'")
    image, gif, status = handlers.strip(photo, "gone", 3, True)
    assert image is None and status.startswith("**Error:** there is no style named 'gone'")
    *views, status = handlers.delete("gone")
    assert status.startswith("**Error:** there is no style named 'gone'")
    grid, status = handlers.samples("tiny", 1, 0)
    assert grid.size[0] > 0 and status == "1 random faces, seed 0"


def test_every_face_of_a_group_photo_from_the_stylize_tab(handlers, trained, shared, tmp_path):
    # 480 px high: the faces (206 and 192 px) are still larger than the 128 px crops
    group = group_photo(shared("images", "jojogan", "test_input"), tmp_path / "group.png", height=480)
    photo = np.asarray(Image.open(group).convert("RGB"), dtype=int)
    shown, info, download = handlers.stylize(str(group), "tiny", 1.0, True, False, True, False, "all")
    assert shown == download  # the page shows the file it offers
    picture = Image.open(download)
    assert picture.size == Image.open(group).size
    assert info.startswith("α = 1.00 · 2 faces · face 0 identity: ") and " · face 1 identity: " in info
    faces = handlers.studio.faces(str(group), which="all")  # kept from the call above
    assert [face.aligned.face_index for face in faces] == [0, 1]
    for face in faces:  # both faces were pasted back, the corner of the photo was not touched
        left, top = face.aligned.landmarks.min(0).astype(int)
        right, bottom = face.aligned.landmarks.max(0).astype(int)
        assert (
            np.abs(np.asarray(picture, int)[top:bottom, left:right] - photo[top:bottom, left:right]).mean()
            > 5
        )
    assert np.array_equal(np.asarray(picture, int)[:5, :5], photo[:5, :5])
    side_by_side, info, _ = handlers.stylize(str(group), "tiny", 1.0, False, False, False, False, "all")
    assert Image.open(side_by_side).size == (2 * SIZE + 4, SIZE + 24)
    assert info.startswith("α = 1.00 · 2 faces ·")
    one, info, _ = handlers.stylize(str(group), "tiny", 1.0, False, False, False, False, "largest")
    assert Image.open(one).size == (SIZE, SIZE) and "faces" not in info


def test_results_go_into_the_server_folder_and_none_once_it_is_removed(handlers, trained, workdir):
    photo = str(workdir / "face1.png")
    picture, info, download = handlers.stylize(photo, "tiny", 1.0, False, False, True, True)
    assert Path(download).is_relative_to(handlers.session.results_dir) and Path(download).is_file()
    assert re.search(r"identity: (not the )?same person \(dlib: distance \d\.\d+ [<≥] 0\.6\)", info)
    _, _, second = handlers.stylize(photo, "tiny", 0.5, False, False, False, True)
    assert not Path(download).exists() and Path(second).is_file()  # the previous download is gone
    handlers.session.remove()
    assert not handlers.session.root.exists()
    assert handlers.stylize(photo, "tiny", 1.0, False, False, False, True) == (
        None,
        "The server is stopping.",
        None,
    )
    assert not handlers.session.root.exists()


def test_a_stop_signal_closes_the_app_and_removes_the_folder(tmp_path):
    """SIGTERM and Ctrl+C (SIGINT) end serve_until_stopped; the folder goes, the handlers are restored."""

    class App:
        is_running = True

        def close(self, verbose=True):
            self.is_running = False

    stopped = []
    gradio_env, torch_env = os.environ.get("GRADIO_TEMP_DIR"), os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    for sig in (signal.SIGTERM, signal.SIGINT):
        session = UiSession(tmp_path / str(sig))
        session.use_for_caches()
        (session.gradio_dir / "upload.png").write_bytes(b"photo")
        before = signal.getsignal(sig)
        stopped.clear()
        timer = threading.Timer(0.3, os.kill, (os.getpid(), sig))
        timer.start()
        assert serve_until_stopped(App(), session, before_close=lambda: stopped.append(1)) == sig
        timer.join()
        assert stopped == [1] and not session.root.exists()
        assert signal.getsignal(sig) is before
        assert os.environ.get("GRADIO_TEMP_DIR") == gradio_env  # as it was before
        assert os.environ.get("TORCHINDUCTOR_CACHE_DIR") == torch_env


def test_ui_command_without_gradio_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio now raises ImportError
    result = CliRunner().invoke(cli, ["ui", "--port", "7999"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        'Error: the web UI needs Gradio: pip install "jojogan[ui]" (or -e ".[ui]" in a checkout)'
    )


def test_ui_command_refuses_a_taken_port_in_one_line(workdir):
    pytest.importorskip("gradio", reason="the command needs the ui extra (gradio)")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["ui", "--port", str(port), "--base", str(workdir / "base.pt")])
    assert result.exit_code == 1
    assert (
        result.output == f"Error: cannot listen on 127.0.0.1:{port}: it is in use (another jojogan ui?); "
        "choose another --port\n"
    )


def test_stopping_lets_running_events_finish_before_the_folder_goes(handlers):
    """An event still running at SIGTERM writes its result first; then the folder is removed with it."""
    from jojogan.ui.app import settle

    class Queue:
        active = 1

        def get_active_worker_count(self):
            return self.active

    class App:
        _queue = Queue()
        is_running = True

        def close(self, verbose=True):
            self.is_running = False

    app, session = App(), handlers.session

    def running_event():  # Gradio caching a stylized picture while the server is told to stop
        time.sleep(0.6)
        session.gradio_dir.mkdir(parents=True, exist_ok=True)  # as Gradio makes its cache folders
        (session.gradio_dir / "result.png").write_bytes(b"a stylized photo")
        app._queue.active = 0

    worker = threading.Thread(target=running_event)
    worker.start()
    threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM)).start()
    assert serve_until_stopped(app, session, before_close=lambda: settle(app, handlers, 10)) == signal.SIGTERM
    worker.join()
    assert not session.root.exists()


# ------------------------------------------------------------------ the Video tab's studio call


@pytest.fixture(scope="module")
def video_studio(tmp_path_factory):
    """A studio over the tiny video pipeline (the linear stand-in encoder), its style in the library, and
    a short clip of a moving face, a cat and black frames, with a tone."""
    pytest.importorskip("av")
    pytest.importorskip("cv2")
    from video_clips import LINEAR, encoder_row, story_clip, tiny_video_pipe

    from jojogan.video import VideoConfig
    from jojogan.video.track import TrackConfig

    folder = tmp_path_factory.mktemp("video-ui")
    with encoder_row():
        pipe, style = tiny_video_pipe(folder)
        studio = Studio(pipe, StyleLibrary(folder / "library"), inversion=LINEAR)
        studio.video = VideoConfig(batch_size=4, track=TrackConfig(min_face_size=32))
        studio.library.add(
            "tiny-video", lambda path: path.write_bytes(style.read_bytes()), Image.new("RGB", (8, 8)), {}
        )
        yield studio, story_clip(folder / "clip.mp4", moving=6), folder


def test_a_video_is_stylized_with_its_sound_and_the_flicker_figure(video_studio, tmp_path):
    import av

    studio, clip, _ = video_studio
    reports = []
    path, report = studio.stylize_video(
        clip.path, "tiny-video", tmp_path, alpha=0.8, face="largest", on_progress=reports.append
    )
    assert path.parent == tmp_path and path.name == "clip_styled.mp4"
    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
        assert len(container.streams.audio) == 1
    assert frames == len(clip.pts) == report["frames"]
    for region in ("face", "seam"):
        assert report["flicker"][region]["ratio"] > 0
    assert [r.stage for r in reports][0] == "tracking faces" and reports[-1].stage == "done"
    assert "rendering" in {r.stage for r in reports}
    assert reports[-1].frames == reports[-1].total == frames
    assert reports[-1].describe().startswith(f"done · frame {frames}/{frames}")


def test_a_cancelled_video_leaves_nothing(video_studio, tmp_path):
    studio, clip, _ = video_studio
    stop = threading.Event()
    stop.set()
    with pytest.raises(JojoganError, match="cancelled"):
        studio.stylize_video(clip.path, "tiny-video", tmp_path, cancel=stop)
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_a_video_is_one_line(video_studio, tmp_path):
    studio, _, folder = video_studio
    upload = tmp_path / "upload-1234" / "notes.txt"
    upload.parent.mkdir()
    upload.write_text("not a video")
    with pytest.raises(JojoganError) as caught:
        studio.stylize_video(upload, "tiny-video", tmp_path)
    message = str(caught.value)
    assert "\n" not in message and "notes.txt" in message and str(upload.parent) not in message


def test_the_video_tab_shows_the_result_the_flicker_line_and_errors_as_lines(video_studio, tmp_path):
    import gradio as gr

    from jojogan.ui.handlers import PageHandlers

    studio, clip, _ = video_studio
    session = UiSession(tmp_path / "session")
    handlers = PageHandlers(gr, studio, session)
    *running, (status, video, flicker) = list(
        handlers.video(str(clip.path), "tiny-video", 1, "all", True, None)
    )
    assert running and all(r[1] == gr.skip() for r in running)
    assert Path(video).is_file() and Path(video).is_relative_to(session.results_dir)
    assert status.startswith("done · frame ") and re.fullmatch(
        r"Flicker against the input's \(1 = as steady\): face \d+\.\d\d×, seam \d+\.\d\d×", flicker
    )
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video")
    *_, (status, video, flicker) = list(handlers.video(str(notes), "tiny-video", 1, "largest", True, None))
    assert video is None and status.startswith("**Error:** ") and "\n" not in status and "notes.txt" in status
    *_, (status, _, _) = list(handlers.video(str(clip.path), "tiny-video", 1, "all", False, None))
    assert status == "**Error:** face 'all' needs paste: without it each output frame shows one stylized face"
    assert handlers.cancel_video() == "Nothing is running."
    session.remove()
