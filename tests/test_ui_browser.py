"""The web UI as a person uses it: `jojogan ui` in a subprocess, driven by Chromium through Playwright.

As on a desktop, the server's home folder (so its style library) and its working folder both lie outside
its system temp folder: they are made in a scratch folder outside the temp folder (beside the checkout, or
in the home folder) that the test removes, and the server gets a temp folder of its own (TMPDIR) that must
be empty again after it is stopped with SIGTERM. A tiny base checkpoint (the test factories); a real aligned
reference and a real photo from the shared test data. Every request the page makes to anything but
127.0.0.1 is blocked and recorded, and the test fails if there was one. Last, a short clip of a real face
(made by the test, with a tone) goes through the Video tab. With $JOJOGAN_UI_SHOTS set, a screenshot of
each step goes to that folder (they cost seconds, so an ordinary run takes none).

The server runs with one intra-op thread, as every process the tests start does (``OMP_NUM_THREADS=1``
from conftest's ``_one_thread``): its models are tiny, a second thread only spin-waits on a shared machine
(the server took ~30% more CPU-seconds with two), and no step of the flow depends on the thread count.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
from PIL import Image

from jojogan.ui.studio import ALIGNED_LABEL

from conftest import time_cap
from factories import reduced_photo, tiny_discriminator, tiny_generator

REPO = Path(__file__).resolve().parents[1]
SIZE = 128
TIME_CAP_S = 240
"""The whole test, server start included, is stopped after this long."""

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# Run in the page before its own scripts: Gradio's spinners, pulses and fades repaint the page for as long as
# a handler runs (the renderer and GPU process took ~2 of Chromium's ~10 CPU-seconds more with them on); no
# step of the test looks at motion.
_NO_ANIMATION = """
document.addEventListener("DOMContentLoaded", () => {
    const style = document.createElement("style");
    style.textContent = "*, *::before, *::after { animation: none !important; transition: none !important; }";
    document.head.appendChild(style);
});
"""


def _chromium() -> str:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("no Chromium browser (apt-get install -y chromium); the web UI's browser test needs one")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Loaded into the server process (through PYTHONPATH): every name lookup and connection it makes to anything
# but this machine is appended to the file named by JOJOGAN_TEST_OUTSIDE, which the test expects empty.
_WATCH_OUTSIDE = """
import os, socket

_LOCAL = {None, "", "127.0.0.1", "::1", "localhost", "0.0.0.0"}
_log = os.environ["JOJOGAN_TEST_OUTSIDE"]
with open(_log + ".on", "w") as handle:  # proof that the server runs watched
    handle.write(str(os.getpid()))


def _note(what):
    with open(_log, "a") as handle:
        handle.write(what + "\\n")


_getaddrinfo = socket.getaddrinfo


def getaddrinfo(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if name not in _LOCAL:
        _note(f"lookup {name}")
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = getaddrinfo


class _Socket(socket.socket):
    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOCAL:
            _note(f"connect {address[0]}")
        return super().connect(address)

    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOCAL:
            _note(f"connect {address[0]}")
        return super().connect_ex(address)


socket.socket = _Socket
"""


@contextlib.contextmanager
def _desktop_folders():
    """(home, working folder) in a scratch folder outside the system temp folder, removed afterwards."""
    temp = Path(tempfile.gettempdir()).resolve()
    for parent in (REPO.parent, Path.home()):
        parent = parent.resolve()
        if not parent.is_relative_to(temp) and os.access(parent, os.W_OK):
            break
    else:
        pytest.skip("no writable folder outside the system temp folder for the UI's home and working folder")
    scratch = Path(tempfile.mkdtemp(prefix="scratch-ui-", dir=parent))
    try:
        (scratch / "home").mkdir()
        (scratch / "work").mkdir()
        yield scratch / "home", scratch / "work"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _wait_until_served(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90
    while True:
        if server.poll() is not None:
            pytest.fail(f"jojogan ui exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail("jojogan ui did not answer within 90 s")
        time.sleep(0.5)


@contextlib.contextmanager
def _server(tmp_path: Path, home: Path, cwd: Path, systemp: Path):
    """`jojogan ui` on a free 127.0.0.1 port with a tiny base, started in ``cwd`` with ``home`` as its home
    folder and ``systemp`` as its temp folder; yields its URL and process."""
    gen, disc = tiny_generator(SIZE, seed=3), tiny_discriminator(SIZE, seed=4)
    base = tmp_path / "base.pt"
    torch.save(
        {"g_ema": gen.state_dict(), "d": disc.state_dict(), "latent_avg": gen.mean_latent(64)[0]}, base
    )
    port = _free_port()
    watch = tmp_path / "watch"
    watch.mkdir()
    (watch / "sitecustomize.py").write_text(_WATCH_OUTSIDE)
    (tmp_path / "outside.txt").write_text("")
    env = {
        **os.environ,
        # the default library under the home folder, so the page (and docs/ui.png) shows the path a user
        # sees: ~/.cache/jojogan/styles
        "HOME": str(home),
        "JOJOGAN_HOME": str(home / ".cache" / "jojogan"),
        "TMPDIR": str(systemp),
        "JOJOGAN_OFFLINE": "1",
        "JOJOGAN_TEST_OUTSIDE": str(tmp_path / "outside.txt"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(watch), os.environ.get("PYTHONPATH")])),
    }
    env.pop("GRADIO_TEMP_DIR", None)
    command = [
        sys.executable, "-m", "jojogan", "ui", "--host", "127.0.0.1", "--port", str(port),
        "--base", str(base), "--device", "cpu", "--inversion", "optimize", "--inversion-steps", "3",
    ]  # fmt: skip
    log = tmp_path / "server.log"
    with open(log, "w") as handle:
        server = subprocess.Popen(command, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_served(url, server, log)
        yield url, server
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)


class Shots:
    """Screenshots of the steps into ``folder``; none when it is not given."""

    def __init__(self, folder: str | None):
        self.folder = Path(folder) if folder else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, page, name: str, settle_ms: int = 0) -> None:
        if self.folder is None:
            return
        if settle_ms:
            page.wait_for_timeout(settle_ms)
        page.screenshot(path=self.folder / name)


def _image_bytes(page, locator) -> bytes:
    """The bytes of the picture an <img> shows (fetched from the server, as the page did)."""
    src = locator.get_attribute("src")
    if src.startswith("data:"):
        import base64

        return base64.b64decode(src.split(",", 1)[1])
    response = page.request.get(src if src.startswith("http") else page.url.rstrip("/") + "/" + src)
    assert response.ok
    return response.body()


def _set_slider(page, label: str, value: float) -> None:
    box = page.get_by_label(f"number input for {label}")
    box.fill(str(value))
    box.press("Enter")


def _train(page, expect, reference: Path, library: Path, shots: Shots) -> None:
    """Train a style from a real aligned reference; a taken name and a cancelled run stay in the Train tab."""
    page.get_by_label(ALIGNED_LABEL).check()
    page.locator("#jj-references input[type=file]").set_input_files(str(reference))
    expect(page.get_by_text("sketch.png: used as an aligned crop")).to_be_visible()
    page.get_by_label("Style name").fill("sketch")
    _set_slider(page, "Iterations", 4)
    page.get_by_role("button", name="Train", exact=True).click()
    expect(page.get_by_text("to the library")).to_be_visible()
    shots(page, "2-trained.png")

    # a taken name is one line in the Train tab's status, nowhere else
    page.get_by_role("button", name="Train", exact=True).click()
    status = page.locator("#jj-train-status")
    expect(status).to_contain_text("Error: a style named 'sketch' already exists")
    shots(page, "2a-refused.png")
    page.get_by_label("Style name").fill("long")
    _set_slider(page, "Iterations", 1000)
    page.get_by_role("button", name="Train", exact=True).click()
    expect(page.get_by_text(re.compile(r"step \d+/1000")).first).to_be_visible()
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_text(re.compile(r"Cancelled after step \d+; nothing was saved"))).to_be_visible()
    assert not list(library.glob("long*"))
    shots(page, "2b-cancelled.png")


def _library(page, expect, shots: Shots) -> None:
    """The style is in the library, its thumbnail served from the home folder (outside temp and cwd)."""
    page.get_by_role("tab", name="Library").click()
    expect(page.get_by_text("sketch · default · 4 steps").first).to_be_visible()
    thumbnail = page.locator("img[alt='sketch · default · 4 steps']").first
    expect(thumbnail).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle())
    assert thumbnail.evaluate("img => img.naturalWidth") == 256
    shots(page, "3-library.png")


def _stylize(page, expect, photo: Path, shots: Shots) -> None:
    """Stylize a real photo: the style chooser works after the refused training, α moves the picture,
    paste-back gives the whole photo, the identity verdict is shown, the download carries the metadata."""
    photo_size = Image.open(photo).size
    page.get_by_role("tab", name="Stylize").click()
    page.locator("#jj-style input").click()  # fails if an error overlay covered the chooser
    page.get_by_role("option", name="sketch", exact=True).click()
    page.locator("#jj-photo input[type=file]").set_input_files(str(photo))
    expect(page.get_by_text("α = 1.00")).to_be_visible()
    result = page.locator(".jj-result img")
    at_1 = _image_bytes(page, result)
    shots(page, "4-stylized.png")
    _set_slider(page, "Strength α (0 = photo, 1 = style)", 0.5)
    expect(page.get_by_text("α = 0.50")).to_be_visible()
    at_half = _image_bytes(page, result)
    _set_slider(page, "Strength α (0 = photo, 1 = style)", 0)
    expect(page.get_by_text("α = 0.00")).to_be_visible()
    at_0 = _image_bytes(page, result)
    assert len({at_0, at_half, at_1}) == 3  # every move of the slider changed the picture
    images = [Image.open(io.BytesIO(b)).convert("RGB") for b in (at_0, at_1)]
    assert images[0].size == images[1].size == (SIZE, SIZE)
    assert images[0].tobytes() != images[1].tobytes()
    shots(page, "5-alpha-0.png")

    page.get_by_label("Paste back into the photo").check()
    expect(page.get_by_text(f"{photo_size[0]} × {photo_size[1]} px")).to_be_visible()
    assert Image.open(io.BytesIO(_image_bytes(page, result))).size == photo_size
    page.get_by_label("Measure identity").check()  # a tiny random base paints no person: dlib says so
    verdict = re.compile(r"identity: not the same person \(dlib: distance \d\.\d{3} ≥ 0\.6\)")
    expect(page.locator("#jj-stylize-status")).to_contain_text(verdict)
    shots(page, "6-pasted.png")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download PNG").click()
    saved = Image.open(download.value.path())
    assert saved.format == "PNG" and saved.size == photo_size
    assert float(saved.text["jojogan:alpha"]) == 0.0
    identity = json.loads(saved.text["jojogan:identity"])
    assert identity["network"] == "dlib" and identity["same_person"] is False and identity["threshold"] == 0.6


def _slider_and_samples(page, expect, shots: Shots) -> None:
    """The α strip and random samples, from the Stylize tab's photo and style."""
    page.get_by_role("tab", name="Slider & samples").click()
    page.get_by_role("button", name="Make the α strip").click()
    expect(page.locator(".jj-strip img")).to_be_visible()
    strip = Image.open(io.BytesIO(_image_bytes(page, page.locator(".jj-strip img"))))
    assert strip.size == (5 * 256 + 4 * 4, 256 + 24)  # five α tiles with their captions
    page.get_by_role("button", name="Draw random samples").click()
    expect(page.locator(".jj-samples img")).to_be_visible()
    grid = Image.open(io.BytesIO(_image_bytes(page, page.locator(".jj-samples img"))))
    assert grid.size == (4 * 256 + 3 * 4, 2 * 256 + 4)  # four faces, and the same faces in the style
    shots(page, "7-slider-samples.png", settle_ms=500)  # Gradio fades a fresh output in


def _face_clip(path: Path, count: int = 8) -> Path:
    """A short clip of a real face panning slowly, with a tone (big enough for the default face size)."""
    from fractions import Fraction

    from video_clips import affine, face_photo, render, write_video

    face = face_photo("iu.jpeg", height=256)
    centre = (face.shape[1] / 2, face.shape[0] * 0.5)
    frames = [
        render(face, affine(0.0, 1.0, (2.0 * i, 0.0), centre, (256, 256)), (256, 256)) for i in range(count)
    ]
    return write_video(
        path, frames, [3600 * i for i in range(count)], Fraction(1, 90000), audio_seconds=count / 25
    )


def _video(page, expect, clip: Path, shots: Shots) -> None:
    """The Video tab: upload a clip, choose the style, Start; the result plays with its sound, every frame
    kept, and the flicker line is shown."""
    import av

    page.get_by_role("tab", name="Video").click()
    page.locator("#jj-video-upload input[type=file]").set_input_files(str(clip))
    page.locator("#jj-video-style input").click()
    page.get_by_role("option", name="sketch", exact=True).click()
    page.locator("#jj-video-start").click()
    status = page.locator("#jj-video-status")
    expect(status).to_contain_text("done · frame 8/8")
    expect(page.locator("#jj-video-flicker")).to_contain_text(re.compile(r"face \d+\.\d\d×, seam"))
    video = page.locator("#jj-video-result video")
    expect(video).to_be_visible()
    src = video.get_attribute("src")
    response = page.request.get(src if src.startswith("http") else page.url.rstrip("/") + "/" + src)
    assert response.ok
    with av.open(io.BytesIO(response.body())) as container:
        assert len(container.streams.audio) == 1
        assert sum(1 for _ in container.decode(video=0)) == 8
    shots(page, "9-video.png")


def _refuses_rebinding(url: str) -> None:
    """The guard of the command itself (issue 23): a forged Host and a foreign Origin get 403 (each one line
    in the server's terminal, and no traceback: looked at when it stops)."""
    from test_ui_guard import get, upload

    url = url.rstrip("/")
    assert get(url, Host=f"evil.example:{urlparse(url).port}").status_code == 403
    assert upload(url, b"x", Origin="http://evil.example").status_code == 403


def _stop_and_look(server: subprocess.Popen, systemp: Path, home: Path, cwd: Path, log: Path) -> None:
    """SIGTERM: the server stops cleanly and no upload or result is left outside the library; its terminal
    shows the two refused requests, one line each, and no traceback."""
    assert [p.name for p in systemp.iterdir() if p.name.startswith("jojogan-ui-")]  # it was in use
    server.send_signal(signal.SIGTERM)
    assert server.wait(60) == 0, log.read_text()[-2000:]
    terminal = log.read_text()
    assert "jojogan ui: stopped; its temporary files are removed" in terminal
    assert terminal.count("refused ") == 2 and "Traceback" not in terminal, terminal[-2000:]
    assert list(systemp.iterdir()) == []  # no jojogan-ui-*, no Gradio cache
    assert list(cwd.iterdir()) == []
    library = home / ".cache" / "jojogan" / "styles"
    assert sorted(p.name for p in library.iterdir()) == ["sketch.json", "sketch.png", "sketch.safetensors"]
    detector = home / ".cache" / "jojogan" / "dlib"  # dlib's face detector in its binary form: no user data
    kept = [p for p in home.rglob("*") if p.is_file() and not p.is_relative_to(library)]
    assert [p for p in kept if not p.is_relative_to(detector)] == []


def test_the_web_ui_in_a_real_browser(tmp_path, shared):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright (the test extra)")
    reference = shared("images", "jojogan", "style_images_aligned", "sketch.png")
    # IU's photo at half its sides (450 x 540 px): a quarter of the pixels for the server's face detection
    # (the server took 15.2 CPU-seconds with the full-size photo, 14.4 with this), and her face (269 px) is
    # still far larger than the 128 px crop
    photo = reduced_photo(shared("images", "jojogan", "test_input", "iu.jpeg"), 2, tmp_path / "iu.jpeg")
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("not a picture")
    shots = Shots(os.environ.get("JOJOGAN_UI_SHOTS"))
    systemp = tmp_path / "systemp"
    systemp.mkdir()
    outside: list[str] = []

    def only_local(route):
        host = urlparse(route.request.url).hostname
        if route.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    started = time.monotonic()
    cap = time_cap(TIME_CAP_S, "the browser test")
    with cap, _desktop_folders() as (home, cwd), _server(tmp_path, home, cwd, systemp) as (url, server):
        _refuses_rebinding(url)  # before the browser is looked for: this part needs none
        chromium = _chromium()
        with sync_api.sync_playwright() as play:
            browser = play.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            context.route("**/*", only_local)
            context.add_init_script(_NO_ANIMATION)
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.goto(url)
            expect = sync_api.expect
            expect.set_options(timeout=60_000)
            expect(page.get_by_text("jojogan studio").first).to_be_visible()
            html = page.request.get(url).text()
            assert not re.findall(r"""(?:src|href)\s*=\s*["']https?://(?!127\.0\.0\.1)""", html)
            expect(page.get_by_role("button", name="Train", exact=True)).to_be_visible()  # the page loaded
            expect(page.get_by_text("Loading...")).to_have_count(0)  # and its outputs have first values
            shots(page, "1-start.png")
            _train(page, expect, reference, home / ".cache" / "jojogan" / "styles", shots)
            _library(page, expect, shots)
            _stylize(page, expect, photo, shots)
            _slider_and_samples(page, expect, shots)
            # a file that is no image: a message in the page, and the server keeps serving
            page.get_by_role("tab", name="Train a style").click()
            page.locator("#jj-references input[type=file]").set_input_files(str(not_an_image))
            expect(page.get_by_text("notes.txt is not an image file that can be read")).to_be_visible()
            shots(page, "8-not-an-image.png")
            assert server.poll() is None and page.request.get(url).ok
            _video(page, expect, _face_clip(tmp_path / "clip.mp4"), shots)
            browser.close()
        _stop_and_look(server, systemp, home, cwd, tmp_path / "server.log")
    print(f"browser test: {time.monotonic() - started:.1f} s")
    assert outside == [], f"the page reached outside 127.0.0.1: {outside}"
    assert (tmp_path / "outside.txt.on").is_file()  # the server ran with the watch loaded
    server_outside = (tmp_path / "outside.txt").read_text().split()
    assert server_outside == [], f"the server reached outside this machine: {server_outside}"
