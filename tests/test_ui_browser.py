"""The web UI as a person uses it: `jojogan ui` in a subprocess, driven by Chromium through Playwright.

A tiny base checkpoint (the test factories) and a temporary JOJOGAN_HOME; a real aligned reference and a
real photo from the shared test data. Every request the page makes to anything but 127.0.0.1 is blocked
and recorded, and the test fails if there was one. Screenshots of each step go to $JOJOGAN_UI_SHOTS (or
the test's temporary folder).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
from PIL import Image

from jojogan.ui.studio import ALIGNED_LABEL

from conftest import time_cap
from factories import tiny_discriminator, tiny_generator

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
def _server(tmp_path: Path):
    """`jojogan ui` on a free 127.0.0.1 port with a tiny base; yields its URL."""
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
        # the default library under a home folder of the test's own, so the page (and docs/ui.png) shows
        # the path a user sees: ~/.cache/jojogan/styles
        "HOME": str(tmp_path),
        "JOJOGAN_HOME": str(tmp_path / ".cache" / "jojogan"),
        "JOJOGAN_OFFLINE": "1",
        "JOJOGAN_TEST_OUTSIDE": str(tmp_path / "outside.txt"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(watch), os.environ.get("PYTHONPATH")])),
    }
    command = [
        sys.executable, "-m", "jojogan", "ui", "--host", "127.0.0.1", "--port", str(port),
        "--base", str(base), "--device", "cpu", "--inversion", "optimize", "--inversion-steps", "3",
    ]  # fmt: skip
    with open(tmp_path / "server.log", "w") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                pytest.fail(f"jojogan ui exited: {(tmp_path / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("jojogan ui did not answer within 90 s")
            time.sleep(0.5)
        yield url, server
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


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


def test_the_web_ui_in_a_real_browser(tmp_path, shared):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright (the test extra)")
    reference = shared("images", "jojogan", "style_images_aligned", "sketch.png")
    photo = shared("images", "jojogan", "test_input", "iu.jpeg")
    photo_size = Image.open(photo).size
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("not a picture")
    chromium = _chromium()
    shots = Path(os.environ.get("JOJOGAN_UI_SHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
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
    with cap, _server(tmp_path) as (url, server), sync_api.sync_playwright() as play:
        browser = play.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        context.route("**/*", only_local)
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(url)
        expect = sync_api.expect
        expect.set_options(timeout=60_000)
        expect(page.get_by_text("jojogan studio").first).to_be_visible()
        html = page.request.get(url).text()
        assert not re.findall(r"""(?:src|href)\s*=\s*["']https?://(?!127\.0\.0\.1)""", html)
        expect(page.get_by_role("button", name="Train", exact=True)).to_be_visible()  # the page has loaded
        expect(page.get_by_text("Loading...")).to_have_count(0)  # and its outputs have their first values
        page.screenshot(path=shots / "1-start.png")

        # 1. train a style from a real aligned reference, a few iterations
        page.get_by_label(ALIGNED_LABEL).check()
        page.locator("#jj-references input[type=file]").set_input_files(str(reference))
        expect(page.get_by_text("sketch.png: used as an aligned crop")).to_be_visible()
        page.get_by_label("Style name").fill("sketch")
        _set_slider(page, "Iterations", 4)
        page.get_by_role("button", name="Train", exact=True).click()
        expect(page.get_by_text("to the library")).to_be_visible()
        page.screenshot(path=shots / "2-trained.png")

        # a taken name is one readable error in the page; a long run can be cancelled while it trains
        page.get_by_role("button", name="Train", exact=True).click()
        expect(page.get_by_text("a style named 'sketch' already exists").first).to_be_visible()
        page.get_by_label("Style name").fill("long")
        _set_slider(page, "Iterations", 1000)
        page.get_by_role("button", name="Train", exact=True).click()
        expect(page.get_by_text(re.compile(r"step \d+/1000")).first).to_be_visible()
        page.get_by_role("button", name="Cancel").click()
        expect(page.get_by_text(re.compile(r"Cancelled after step \d+; nothing was saved"))).to_be_visible()
        assert not list((tmp_path / ".cache" / "jojogan" / "styles").glob("long*"))
        page.screenshot(path=shots / "2b-cancelled.png")

        # 2. the style is in the library
        page.get_by_role("tab", name="Library").click()
        expect(page.get_by_text("sketch · default · 4 steps").first).to_be_visible()
        page.screenshot(path=shots / "3-library.png")

        # 3. stylize a real photo; the new style is already chosen
        page.get_by_role("tab", name="Stylize").click()
        page.locator("#jj-photo input[type=file]").set_input_files(str(photo))
        info = page.get_by_text("α = 1.00")
        expect(info).to_be_visible()
        result = page.locator(".jj-result img")
        at_1 = _image_bytes(page, result)
        page.screenshot(path=shots / "4-stylized.png")
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
        page.screenshot(path=shots / "5-alpha-0.png")

        # 4. paste-back: the result is the whole photo
        page.get_by_label("Paste back into the photo").check()
        expect(page.get_by_text(f"{photo_size[0]} × {photo_size[1]} px")).to_be_visible()
        pasted = Image.open(io.BytesIO(_image_bytes(page, result)))
        assert pasted.size == photo_size
        page.screenshot(path=shots / "6-pasted.png")

        # 5. download: a PNG of the photo's size carrying the result's metadata
        with page.expect_download() as download:
            page.get_by_role("button", name="Download PNG").click()
        saved = Image.open(download.value.path())
        assert saved.format == "PNG" and saved.size == photo_size
        assert float(saved.text["jojogan:alpha"]) == 0.0

        # 6. the α strip and random samples, from the Stylize tab's photo and style
        page.get_by_role("tab", name="Slider & samples").click()
        page.get_by_role("button", name="Make the α strip").click()
        expect(page.locator(".jj-strip img")).to_be_visible()
        strip = Image.open(io.BytesIO(_image_bytes(page, page.locator(".jj-strip img"))))
        assert strip.size == (5 * 256 + 4 * 4, 256 + 24)  # five α tiles with their captions
        page.get_by_role("button", name="Draw random samples").click()
        expect(page.locator(".jj-samples img")).to_be_visible()
        grid = Image.open(io.BytesIO(_image_bytes(page, page.locator(".jj-samples img"))))
        assert grid.size == (4 * 256 + 3 * 4, 2 * 256 + 4)  # four faces, and the same faces in the style
        page.wait_for_timeout(500)  # Gradio fades a fresh output in; the screenshot waits for it
        page.screenshot(path=shots / "7-slider-samples.png")

        # 7. a file that is no image: a message in the page, and the server keeps serving
        page.get_by_role("tab", name="Train a style").click()
        page.locator("#jj-references input[type=file]").set_input_files(str(not_an_image))
        expect(page.get_by_text("notes.txt is not an image file that can be read")).to_be_visible()
        page.screenshot(path=shots / "8-not-an-image.png")
        assert server.poll() is None and page.request.get(url).ok
        browser.close()
    elapsed = time.monotonic() - started
    print(f"browser test: {elapsed:.1f} s")
    assert outside == [], f"the page reached outside 127.0.0.1: {outside}"
    assert (tmp_path / "outside.txt.on").is_file()  # the server ran with the watch loaded
    server_outside = (tmp_path / "outside.txt").read_text().split()
    assert server_outside == [], f"the server reached outside this machine: {server_outside}"
