"""The weights manager against a real HTTP server on 127.0.0.1 (no internet).

A thread serves a temporary folder with HTTP Range support; ``JOJOGAN_WEIGHTS_MIRROR`` points the manager at
it. The files are a few hundred kB of seeded random bytes whose size and sha256 the tests compute and put in
a test registry; the real registry is only read, never weakened.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from jojogan import weights as manager
from jojogan.cli import main as cli_main
from jojogan.weights import WeightsEntry

SIZE = 300_000


class _Handler(BaseHTTPRequestHandler):
    """GET with optional ``Range: bytes=N-``; can drop the connection once after N bytes, or go slowly."""

    server: _Server

    def do_HEAD(self):  # noqa: N802 - http.server's naming
        """What the Hugging Face client asks first: commit, etag (the LFS sha256) and size."""
        name, path = self._target()
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("X-Repo-Commit", "0123456789abcdef" * 2 + "01234567")
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()

    def _target(self) -> tuple[str, Path]:
        # Hub URLs are <repo>/resolve/<revision>/<file>; the mirror's are /<file>.
        name = self.path.lstrip("/").split("/resolve/main/")[-1]
        return name, self.server.root / name

    def do_GET(self):  # noqa: N802 - http.server's naming
        name, path = self._target()
        if "/api/" in self.path:  # the hub client's side requests
            self.send_error(404)
            return
        self.server.requests.append((name, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        if name in self.server.endless:  # a mirror that streams without a length, on and on
            self.end_headers()
            self._stream_endlessly(name, body)
            return
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        drop = self.server.drop_after.pop(name, None)
        if drop is not None:
            self.wfile.write(body[:drop])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        for i in range(0, len(body), 65536):
            # counted before it is written: once the client has the last byte, the count is complete
            self.server.sent[name] = self.server.sent.get(name, 0) + len(body[i : i + 65536])
            self.wfile.write(body[i : i + 65536])
            if self.server.delay:
                time.sleep(self.server.delay)

    def _stream_endlessly(self, name: str, body: bytes) -> None:
        """The file, then the file again, ..., until the client hangs up (or 100 MB, a test's bound)."""
        self.close_connection = True
        try:
            while self.server.sent.get(name, 0) < 100_000_000:
                self.wfile.write(body)
                self.server.sent[name] = self.server.sent.get(name, 0) + len(body)
        except OSError:  # the client stopped reading: what a bounded download does
            pass

    def log_message(self, *args):  # keep the test output clean
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.requests: list[tuple[str, str | None]] = []
        self.drop_after: dict[str, int] = {}
        self.sent: dict[str, int] = {}
        self.endless: set[str] = set()
        self.delay = 0.0

    def gets(self, name: str) -> list[str | None]:
        """The Range header of every request for ``name``."""
        return [rng for n, rng in self.requests if n == name]


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    httpd = _Server(root)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _payload(seed: int, size: int = SIZE) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


@pytest.fixture
def env(tmp_path, server, monkeypatch):
    """A fresh cache, the mirror pointing at the local server, network switches cleared."""
    monkeypatch.setenv("JOJOGAN_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("JOJOGAN_WEIGHTS_MIRROR", f"http://127.0.0.1:{server.server_address[1]}/")
    monkeypatch.delenv("JOJOGAN_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path / "cache"


def _serve(server, monkeypatch, name="tiny", seed=0, *, sha256: str | None = "auto", size="auto", **extra):
    """Put a file on the server and a row for it in a test registry; returns (entry, bytes)."""
    data = _payload(seed)
    filename = f"{name}.bin"
    (server.root / filename).write_bytes(data)
    entry = WeightsEntry(
        name=name,
        filename=filename,
        description="test file",
        licence="test licence",
        size=len(data) if size == "auto" else size,
        sha256=hashlib.sha256(data).hexdigest() if sha256 == "auto" else sha256,
        **extra,
    )
    registry = dict(manager.REGISTRY)
    registry[name] = entry
    monkeypatch.setattr(manager, "REGISTRY", registry)
    return entry, data


def _run(*args):
    return CliRunner().invoke(cli_main, ["weights", *map(str, args)], catch_exceptions=False)


def _leftovers(cache: Path) -> list[str]:
    """Files in the cache other than bookkeeping (locks, records)."""
    if not cache.exists():
        return []
    # Locks, our records and the hub client's own bookkeeping hold no weights.
    skip = (".locks", ".meta", ".incomplete/hf/.cache")
    names = (str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())
    return sorted(name for name in names if not name.startswith(skip))


# ---------------------------------------------------------------------------------------- downloads
def test_download_checks_sha256_and_lands_in_the_cache(env, server, monkeypatch):
    entry, data = _serve(server, monkeypatch)
    path = manager.resolve_weights("tiny", download=True, progress=False)
    assert path == env / "tiny.bin" and path.read_bytes() == data
    assert _leftovers(env) == ["tiny.bin"]  # no partial, no temporary file
    assert manager.check_cached(entry).state == "verified"
    # Cached now: a name, a file name or the path all resolve without another request.
    assert manager.resolve_weights("tiny.bin", download=True) == path
    assert manager.resolve_weights(path) == path
    assert server.gets("tiny.bin") == [None]


def test_first_use_is_announced_on_one_log_line_with_a_progress_bar(env, server, monkeypatch, caplog, capsys):
    _serve(server, monkeypatch)
    with caplog.at_level("INFO", logger="jojogan.weights"):
        manager.resolve_weights("tiny", download=True, progress=True)
    announced = [r.getMessage() for r in caplog.records if r.name == "jojogan.weights"]
    mirror = manager.mirror_url()
    assert announced == [f"downloading tiny.bin (300.0 kB) from {mirror}/tiny.bin into {env / 'tiny.bin'}"]
    bar = capsys.readouterr().err
    assert "tiny.bin" in bar and "B/s" in bar and "293k/293k" in bar  # bytes, rate (KiB units)


def test_a_dropped_connection_resumes_with_range(env, server, monkeypatch):
    _entry, data = _serve(server, monkeypatch)
    server.drop_after["tiny.bin"] = 120_000
    path = manager.resolve_weights("tiny", download=True, progress=False)
    assert path.read_bytes() == data
    ranges = server.gets("tiny.bin")
    assert ranges[0] is None and len(ranges) == 2
    resumed_at = int(ranges[1].removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= 120_000  # continued from what had arrived, not from zero
    assert server.sent["tiny.bin"] == SIZE - resumed_at


def test_a_partial_file_from_a_killed_run_is_continued(env, server, monkeypatch):
    _entry, data = _serve(server, monkeypatch)
    partial = env / ".incomplete" / "tiny.bin.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[:100_000])
    assert manager.resolve_weights("tiny", download=True, progress=False).read_bytes() == data
    assert server.gets("tiny.bin") == ["bytes=100000-"]
    assert not partial.exists()


def test_a_wrong_sha256_is_refused_and_nothing_is_left(env, server, monkeypatch):
    wrong = "0" * 64
    _entry, data = _serve(server, monkeypatch, sha256=wrong)
    result = _run("download", "tiny", "--no-progress")
    assert result.exit_code == 1
    assert wrong in result.output and hashlib.sha256(data).hexdigest() in result.output
    assert "put it at" in result.output and str(env / "tiny.bin") in result.output
    assert _leftovers(env) == []


def test_a_wrong_size_is_refused(env, server, monkeypatch):
    _serve(server, monkeypatch, size=SIZE + 1, sha256=None)
    with pytest.raises(manager.WeightsDownloadError, match=f"{SIZE:,} bytes arrived.*{SIZE + 1:,}"):
        manager.resolve_weights("tiny", download=True, progress=False)
    assert _leftovers(env) == []


def test_a_stream_without_length_stops_at_the_registry_size(env, server, monkeypatch):
    """Issue 23: a mirror that sends no Content-Length and never stops is cut off at the registry's size,
    not after gigabytes; nothing of it stays in the cache."""
    _serve(server, monkeypatch)
    server.endless.add("tiny.bin")
    started = time.monotonic()
    with pytest.raises(
        manager.WeightsDownloadError, match=rf"sent more than {SIZE:,} bytes \(the registry's size\)"
    ):
        manager.resolve_weights("tiny", download=True, progress=False)
    assert time.monotonic() - started < 20
    assert server.sent["tiny.bin"] < 30 * SIZE  # what the sockets buffered at most, far from 100 MB
    assert _leftovers(env) == []


def test_a_row_of_unknown_size_stops_at_its_cap(env, server, monkeypatch):
    """vgg16/alexnet publish no size: their rows carry a cap, and a server announcing more is refused
    before a byte is read; without a length the stream is cut at the cap."""
    assert manager.byte_limit(manager.REGISTRY["vgg16"])[0] == manager.REGISTRY["vgg16"].max_size
    _serve(server, monkeypatch, size=None, sha256=None, max_size=SIZE // 2)
    with pytest.raises(manager.WeightsDownloadError, match=r"the cap for this file.*announced 300,000"):
        manager.resolve_weights("tiny", download=True, progress=False)
    server.endless.add("tiny.bin")
    with pytest.raises(manager.WeightsDownloadError, match=rf"sent more than {SIZE // 2:,} bytes"):
        manager.resolve_weights("tiny", download=True, progress=False)
    assert _leftovers(env) == []


def test_the_hub_client_is_stopped_at_the_registry_size(env, server, monkeypatch):
    from huggingface_hub import constants

    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", base)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", base + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.delenv("JOJOGAN_WEIGHTS_MIRROR")
    monkeypatch.setenv("HF_HOME", str(env.parent / "hf-home"))
    _serve(server, monkeypatch, name="hub", hf_repo="someone/repo", size=SIZE // 3, sha256=None)
    with pytest.raises(manager.WeightsDownloadError, match=rf"sent more than {SIZE // 3:,} bytes"):
        manager.resolve_weights("hub", download=True, progress=False)
    assert _leftovers(env) == []


@pytest.mark.parametrize("kind", ["file", "read-only"])
def test_a_weights_cache_that_cannot_take_files_is_one_line(env, server, monkeypatch, tmp_path, kind):
    import errno

    _serve(server, monkeypatch)
    home = tmp_path / "home"
    if kind == "file":
        home.write_text("not a folder")
    else:  # root writes anywhere: the kernel's answer for a read-only mount, where it is given
        home.mkdir()
        real = Path.mkdir

        def read_only(self, *args, **kwargs):
            if self.is_relative_to(home):
                raise OSError(errno.EROFS, "Read-only file system", str(self))
            return real(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", read_only)
    monkeypatch.setenv("JOJOGAN_HOME", str(home))
    result = _run("download", "tiny", "--no-progress")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    reason = "a file is in the way" if kind == "file" else "Read-only file system"
    assert f"the weights cache {home} cannot take files ({reason}" in lines[0] and "JOJOGAN_HOME" in lines[0]


def test_server_down_is_one_clear_line(env, server, monkeypatch):
    _serve(server, monkeypatch)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("JOJOGAN_WEIGHTS_MIRROR", f"http://127.0.0.1:{port}")
    result = _run("download", "tiny", "--no-progress")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(
        f"Error: tiny.bin is not in the weights cache {env} and could not be downloaded"
    )
    assert f"(tried http://127.0.0.1:{port}/tiny.bin: " in lines[0]
    assert f"fetch http://127.0.0.1:{port}/tiny.bin by hand and put it at {env / 'tiny.bin'}" in lines[0]
    assert _leftovers(env) == []


def test_a_truncated_cached_file_is_detected_and_replaced(env, server, monkeypatch):
    entry, data = _serve(server, monkeypatch)
    path = manager.resolve_weights("tiny", download=True, progress=False)
    with open(path, "r+b") as handle:
        handle.truncate(SIZE // 2)
    status = manager.check_cached(entry)
    assert status.state == "corrupt" and f"{SIZE // 2:,} bytes" in status.detail
    result = _run("verify")
    assert result.exit_code == 1 and "tiny: DAMAGED" in result.output
    with pytest.raises(manager.WeightsError, match="damaged .* not loaded"):
        manager.resolve_weights("tiny", download=False)
    assert manager.resolve_weights("tiny", download=True, progress=False).read_bytes() == data
    assert len(server.gets("tiny.bin")) == 2
    assert _run("verify", "tiny").exit_code == 0


def test_same_size_damage_is_caught_by_the_hash(env, server, monkeypatch):
    entry, _ = _serve(server, monkeypatch)
    path = manager.resolve_weights("tiny", download=True, progress=False)
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))
    status = manager.check_cached(entry)
    assert status.state == "corrupt" and entry.sha256 in status.detail


def test_an_unknown_sha256_is_pinned_at_first_download(env, server, monkeypatch):
    entry, data = _serve(server, monkeypatch, sha256=None, size=None)
    path = manager.resolve_weights("tiny", download=True, progress=False)
    status = manager.check_cached(entry)
    assert status.state == "unverified" and hashlib.sha256(data).hexdigest() in status.detail
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert manager.check_cached(entry).state == "corrupt"


def test_an_approximate_size_refuses_an_error_page_saved_under_the_name(env, server, monkeypatch):
    """Rows known only roughly (the styles) still refuse a file far off: here a 1 kB "virus scan" page."""
    entry, _ = _serve(server, monkeypatch, sha256=None, size=None)
    monkeypatch.setitem(manager.REGISTRY, "tiny", replace(entry, approx_size=SIZE + 1000))
    entry = manager.REGISTRY["tiny"]
    (server.root / "tiny.bin").write_bytes(b"<html>Google Drive can't scan this file for viruses</html>")
    with pytest.raises(manager.WeightsDownloadError, match=f"expected about {SIZE + 1000:,}"):
        manager.resolve_weights("tiny", download=True, progress=False)
    assert _leftovers(env) == []
    env.mkdir(exist_ok=True)
    (env / "tiny.bin").write_bytes(_payload(0, SIZE - 2000))  # placed by hand, 0.7% short: accepted
    assert manager.check_cached(entry).state == "unverified"
    (env / "tiny.bin").write_bytes(_payload(0, SIZE // 2))
    assert "expected about" in manager.check_cached(entry).detail


def test_two_concurrent_downloads_produce_one_file(env, server, monkeypatch):
    _entry, data = _serve(server, monkeypatch)
    server.delay = 0.02  # ~0.1 s per download, so the second caller arrives while the first is running
    barrier = threading.Barrier(2)
    results, errors = [], []

    def worker():
        barrier.wait()
        try:
            results.append(manager.resolve_weights("tiny", download=True, progress=False))
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and len(results) == 2 and results[0] == results[1]
    assert results[0].read_bytes() == data
    assert server.gets("tiny.bin") == [None]  # fetched once: the second waited on the lock
    assert _leftovers(env) == ["tiny.bin"]


# ---------------------------------------------------------------------------------------- offline
@pytest.mark.parametrize("switch", ["JOJOGAN_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_never_touches_the_network(env, server, monkeypatch, switch):
    _serve(server, monkeypatch)
    monkeypatch.setenv(switch, "1")
    with pytest.raises(manager.WeightsError) as caught:
        manager.resolve_weights("tiny", download=True)
    message = str(caught.value)
    assert "not in the weights cache" in message and "downloads are off" in message
    assert f"/tiny.bin by hand and put it at {env / 'tiny.bin'}" in message
    result = _run("download", "tiny")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert server.requests == []


def test_a_probe_without_download_does_not_fetch(env, server, monkeypatch):
    _serve(server, monkeypatch)
    with pytest.raises(manager.WeightsError, match="jojogan weights download tiny"):
        manager.resolve_weights(None, default="tiny")
    assert server.requests == []


# ---------------------------------------------------------------------------------------- sources
def test_hugging_face_rows_go_through_the_hub_client_and_are_verified(env, server, monkeypatch):
    """Without a mirror a Hugging Face row is fetched by the real hf_hub_download (pointed at the local
    server), staged, checked against the registry's sha256 and only then moved into the cache."""
    from huggingface_hub import constants

    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", base)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", base + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.delenv("JOJOGAN_WEIGHTS_MIRROR")
    monkeypatch.setenv("HF_HOME", str(env.parent / "hf-home"))
    entry, data = _serve(server, monkeypatch, name="hub", hf_repo="someone/repo")
    good = entry.sha256
    # First the registry disagrees with what the hub serves: refused, nothing kept.
    monkeypatch.setitem(manager.REGISTRY, "hub", replace(entry, sha256="f" * 64))
    with pytest.raises(manager.WeightsDownloadError) as caught:
        manager.resolve_weights("hub", download=True, progress=False)
    message = str(caught.value)
    assert f"{base}/someone/repo/resolve/main/hub.bin" not in message  # the real hub URL is what users fetch
    assert "https://huggingface.co/someone/repo/resolve/main/hub.bin" in message
    assert f"SHA256 of the download is {good}, the registry expects {'f' * 64}" in message
    assert _leftovers(env) == []
    monkeypatch.setitem(manager.REGISTRY, "hub", entry)
    assert manager.resolve_weights("hub", download=True, progress=False).read_bytes() == data
    assert _leftovers(env) == ["hub.bin"]
    assert server.gets("hub.bin") == [None, None]


def test_sources_prefer_the_hub_never_drive_and_the_mirror_replaces_all(monkeypatch):
    monkeypatch.delenv("JOJOGAN_WEIGHTS_MIRROR", raising=False)
    ffhq = manager.REGISTRY["ffhq"]
    assert [kind for kind, _ in manager._sources(ffhq)] == ["hf"]
    assert "drive.google.com" in manager._manual_hint(ffhq)
    codeformer = manager.REGISTRY["codeformer"]
    assert manager._sources(codeformer) == [
        ("url", "https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/codeformer.pth")
    ]
    monkeypatch.setenv("JOJOGAN_WEIGHTS_MIRROR", "https://mirror.example/w/")
    for row in manager.REGISTRY.values():
        assert manager._sources(row) == [("url", f"https://mirror.example/w/{row.filename}")]
    assert "drive.google.com" not in manager._manual_hint(ffhq)


# ---------------------------------------------------------------------------------------- registry + CLI
ISSUE_TABLE = {  # name: (file, size, sha256) as issue 9 states them
    "ffhq": (
        "stylegan2-ffhq-config-f.pt",
        381_462_551,
        "bae494ef77e32a9cd1792a81a3c167692a0e64f6bcd8b06592ff42917e2ed46e",
    ),
    "e4e": (
        "e4e_ffhq_encode.pt",
        1_201_649_680,
        "2ace1d9a8c05c10a399bcd500b8dda118f759ff1aac89dbdab7435f2136a0999",
    ),
    "codeformer": (
        "codeformer.pth",
        376_637_898,
        "1009e537e0c2a07d4cabce6355f53cb66767cd4b4297ec7a4a64ca4b8a5684b7",
    ),
    "arcface-ir-se50": (
        "model_ir_se50.pth",
        175_367_323,
        "a035c768259b98ab1ce0e646312f48b9e1e218197a0f80ac6765e88f8b6ddf28",
    ),
    "arcface-w600k-r50": (
        "w600k_r50.onnx",
        174_383_860,
        "4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43",
    ),
    "jojo_preserve_color": (
        "jojo_preserve_color.pt",
        None,
        "405cead5eb4693c81ebadb572a7bc95a723456b3661fe49befcdc7d8a549cf04",
    ),
    "art": ("art.pt", None, "653a1d290f23c5d2c42532d09fa83d9c07500abd9ce469e7f560263a7d9c8641"),
}
STYLES = [
    "arcane_caitlyn",
    "arcane_jinx",
    "arcane_multi",
    "disney",
    "jojo",
    "jojo_yasuho",
    "art",
    "sketch_multi",
]


def test_registry_matches_the_issue_table():
    for name, (filename, size, sha256) in ISSUE_TABLE.items():
        row = manager.REGISTRY[name]
        assert (row.filename, row.size, row.sha256) == (filename, size, sha256)
    for stem in STYLES + ["supergirl"]:
        assert manager.REGISTRY[stem].filename == f"{stem}.pt"
        assert manager.REGISTRY[stem].approx_size == 132_769_079
    unknown = [row.name for row in manager.REGISTRY.values() if row.sha256 is None]
    assert "jojo" in unknown and "ffhq" not in unknown
    for row in manager.REGISTRY.values():
        assert row.hf_repo or row.url or row.drive_id, row.name


def test_list_shows_every_row_with_licence_and_state(env, server, monkeypatch):
    _entry, _ = _serve(server, monkeypatch)
    manager.resolve_weights("tiny", download=True, progress=False)
    result = _run("list")
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.output.splitlines()[2:]}
    assert set(lines) == set(manager.REGISTRY)
    assert "381,462,551" in lines["ffhq"] and "Nvidia Source Code License-NC" in lines["ffhq"]
    assert "S-Lab License 1.0 (non-commercial)" in lines["codeformer"]
    assert "non-commercial research" in lines["arcface-w600k-r50"]
    assert "unverified" in lines["jojo"] and "unverified" not in lines["jojo_preserve_color"]
    assert re.search(r"tiny\.bin\s+300,000\s+yes\s+yes \(sha256\)", lines["tiny"])
    assert re.search(r"ffhq\s+stylegan2-ffhq-config-f\.pt\s+381,462,551\s+no\s", lines["ffhq"])


def test_markdown_table_for_the_readme_has_every_row():
    result = _run("list", "--markdown")
    assert result.exit_code == 0
    rows = result.output.strip().splitlines()
    assert rows[0].startswith("| name | file |") and len(rows) == 2 + len(manager.REGISTRY)
    ffhq = next(row for row in rows if row.startswith("| `ffhq` "))
    assert "381,462,551" in ffhq and manager.REGISTRY["ffhq"].sha256 in ffhq and "Nvidia Source Code" in ffhq
    jojo = next(row for row in rows if row.startswith("| `jojo` "))
    assert "unknown (unverified)" in jojo and "drive.google.com" in jojo
    vgg = next(row for row in rows if row.startswith("| `vgg16` "))
    assert "prefix `397923af`" in vgg


def test_path_and_unknown_names(env):
    result = _run("path", "ffhq")
    assert result.exit_code == 0 and result.output.splitlines()[0] == str(env / "stylegan2-ffhq-config-f.pt")
    result = _run("download", "nope")
    assert result.exit_code == 1 and "unknown weights 'nope'" in result.output and "ffhq" in result.output
    with pytest.raises(manager.CheckpointError, match="no registry name"):
        manager.resolve_weights(env / "missing.pt")


def test_generator_only_base_names_the_full_file(tmp_path):
    small = tmp_path / "stylegan2-ffhq-config-f.pt"
    small.write_bytes(os.urandom(1000))
    error = manager.generator_only_error(small, "fine-tuning")
    assert isinstance(error, manager.CheckpointError)
    message = str(error)
    assert "has no discriminator ('d'), which fine-tuning needs" in message
    assert "generator-only" in message and "381,462,551 bytes" in message and "--base ffhq" in message


def test_quickstart_offline_is_one_line_naming_the_official_file(tmp_path, monkeypatch):
    """What `jojogan finetune ref.png -o style.safetensors` meets offline on first use."""
    monkeypatch.setenv("JOJOGAN_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("JOJOGAN_OFFLINE", "1")
    monkeypatch.delenv("JOJOGAN_WEIGHTS_MIRROR", raising=False)
    with pytest.raises(manager.WeightsError) as caught:
        manager.resolve_weights(None, default="ffhq", download=True)
    message = str(caught.value)
    assert "\n" not in message
    assert "stylegan2-ffhq-config-f.pt" in message and "downloads are off" in message
    hub = "https://huggingface.co/akhaliq/jojogan-stylegan2-ffhq-config-f/resolve/main/stylegan2-ffhq-config-f.pt"
    assert (
        f"fetch {hub} (or https://drive.google.com/uc?id=1Yr7KuD959btpmcKGAUsbAk5rPjX2MytK) by hand"
        in message
    )
    assert f"put it at {tmp_path / 'cache' / 'stylegan2-ffhq-config-f.pt'}" in message
    assert not (tmp_path / "cache").exists()  # nothing written
