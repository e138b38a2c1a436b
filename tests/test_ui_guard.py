"""Issue 23: the web UI answers only its own address and its own page, and bounds uploads.

A real Gradio server on a free 127.0.0.1 port in this process, asked with the headers a DNS-rebinding page
or a cross-site form sends. The command itself (``jojogan ui`` in a subprocess) is asked the same by
``test_ui_browser``, on the server it drives a browser through.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import socket

import pytest
import torch
from batch_helpers import bomb_png
from PIL import Image

from jojogan.imaging import to_pil
from jojogan.ui.guard import Served

from conftest import time_cap
from factories import tiny_discriminator, tiny_generator

# found, not imported: Gradio's import takes seconds, spent only where a test here runs (not at collection)
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gradio") is None,
    reason="the web UI needs the ui extra: pip install 'jojogan[ui]'",
)
requests = pytest.importorskip("requests")

SIZE = 64
LIMIT = 200_000  # bytes: the upload limit the in-process server is started with
MAX_PIXELS = 1_000_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("guard")
    gen, disc = tiny_generator(SIZE, seed=3), tiny_discriminator(SIZE, seed=4)
    state = {"g_ema": gen.state_dict(), "d": disc.state_dict(), "latent_avg": gen.mean_latent(64).reshape(-1)}
    torch.save(state, root / "base.pt")
    with torch.no_grad():
        to_pil(gen(torch.randn(1, gen.style_dim))[0]).save(root / "face.png")
    return root


@pytest.fixture(scope="module")
def server(base, tmp_path_factory):
    """The page served by ``jojogan.ui.app.launch`` (as ``jojogan ui`` serves it), with a small upload limit
    and --max-pixels."""
    import functools

    import jojogan.ui.app
    from jojogan.api import JoJoGAN
    from jojogan.ui import Studio, StyleLibrary
    from jojogan.ui.guard import launch_options
    from jojogan.ui.session import UiSession

    pipe = JoJoGAN.from_pretrained(base=base / "base.pt", device="cpu")
    library = StyleLibrary(base / "library")
    studio = Studio(pipe, library, inversion="optimize", inversion_steps=3, max_pixels=MAX_PIXELS)
    session = UiSession(tmp_path_factory.mktemp("session"))
    port = free_port()
    small = functools.partial(launch_options, max_upload=LIMIT)
    with time_cap(120, "starting the UI"), pytest.MonkeyPatch.context() as patch:
        patch.setattr(jojogan.ui.app, "launch_options", small)
        app = jojogan.ui.app.launch(studio, "127.0.0.1", port, block=False, session=session)
    yield f"http://127.0.0.1:{port}", port, app
    app.close()
    session.remove()


def get(url, path="/", **headers):
    return requests.get(url + path, headers=headers, timeout=30)


def upload(url, data: bytes, name="photo.png", **headers):
    files = {"files": (name, data, "application/octet-stream")}
    return requests.post(url + "/gradio_api/upload", files=files, headers=headers, timeout=30)


def test_the_page_answers_its_own_address(server):
    url, port, _ = server
    assert get(url).status_code == 200
    assert get(url, Host=f"localhost:{port}").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "evil.example:{port}"},
        {"Host": "evil.example:{port}", "Origin": "http://evil.example:{port}"},
        {"Host": "127.0.0.1:1"},
        {"Origin": "http://evil.example:{port}"},
        {"Origin": "null"},
        {"Origin": "http://localhost:8000"},  # another local app on another port
    ],
    ids=[
        "rebound-host",
        "rebound-host-and-origin",
        "other-port",
        "foreign-origin",
        "null-origin",
        "other-port-origin",
    ],
)
def test_a_foreign_host_or_origin_is_refused_and_never_reflected(server, headers, caplog):
    url, port, _ = server
    headers = {key: value.format(port=port) for key, value in headers.items()}
    with caplog.at_level(logging.WARNING, logger="jojogan.ui"):
        for path in ("/", "/config", "/gradio_api/info"):
            response = get(url, path, **headers)
            assert response.status_code == 403, (path, response.status_code)
            assert "access-control-allow-origin" not in {k.lower() for k in response.headers}
            assert response.text.startswith("refused: ")
    refused = [r for r in caplog.records if r.getMessage().startswith("refused GET")]
    assert len(refused) == 3 and not any(r.exc_info for r in refused)  # one line each, no traceback


def test_a_cross_site_form_post_stores_nothing(server):
    url, port, _ = server
    photo = io.BytesIO()
    Image.new("RGB", (8, 8)).save(photo, format="PNG")
    for headers in (
        {"Origin": "http://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Referer": "http://evil.example/page.html"},
    ):
        assert upload(url, photo.getvalue(), **headers).status_code == 403, headers
    for path in ("/gradio_api/queue/join", "/gradio_api/run/predict"):
        response = requests.post(url + path, json={}, headers={"Origin": "http://evil.example"}, timeout=30)
        assert response.status_code == 403, path
    same = upload(url, photo.getvalue(), Origin=f"http://127.0.0.1:{port}")
    assert same.status_code == 200, same.text
    (stored,) = same.json()
    assert os.path.isfile(stored)


def test_uploads_are_bounded_in_bytes_and_pixels(server):
    url, port, _ = server
    own = {"Origin": f"http://127.0.0.1:{port}"}
    big = upload(url, os.urandom(LIMIT + (2 << 20)), name="big.bin", **own)
    assert big.status_code == 413, big.status_code

    def chunks():  # no Content-Length: the body streams on past the limit
        for _ in range(40):
            yield os.urandom(100_000)

    streamed = requests.post(
        url + "/gradio_api/upload", data=chunks(), timeout=30,
        headers={**own, "Content-Type": "multipart/form-data; boundary=x"},
    )  # fmt: skip
    assert streamed.status_code in (400, 413), streamed.status_code
    bomb = upload(url, bomb_png(5000, 5000), name="bomb.png", **own)  # 25 MP in a few bytes
    assert bomb.status_code == 413 and "above --max-pixels 1,000,000" in bomb.text
    small = io.BytesIO()
    Image.new("RGB", (900, 900)).save(small, format="PNG")
    assert upload(url, small.getvalue(), **own).status_code == 200


def test_served_names_for_every_interface():
    everywhere = Served("0.0.0.0", 7860)
    assert everywhere.allows_host("192.168.1.20:7860") and everywhere.allows_host("[fe80::1]:7860")
    assert not everywhere.allows_host("evil.example:7860") and not everywhere.allows_host("192.168.1.20:80")
    local = Served("127.0.0.1", 80)
    assert local.allows_host("localhost") and local.allows_origin("http://127.0.0.1")
    assert not local.allows_host("10.0.0.1:80") and not local.allows_origin("file://")
