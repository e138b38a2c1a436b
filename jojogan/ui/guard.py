"""The web UI's front door: only the address it serves, only its own page, bounded uploads.

Listening on 127.0.0.1 does not stop a web page the user visits elsewhere: a page can point a name it
controls at 127.0.0.1 (DNS rebinding) and then talk to the UI as if it were its own site, or post a form
to it from its own origin. :class:`Guard` is an ASGI middleware placed in front of everything the Gradio
app serves, and refuses:

* a request whose ``Host`` is not an address this server is reached at (``127.0.0.1:PORT``,
  ``localhost:PORT``, ``[::1]:PORT``; with ``--host 0.0.0.0`` also any IP address and this machine's name,
  which a rebinding page cannot send) — 403;
* a request whose ``Origin`` is another site (or ``null``), so no foreign origin is ever reflected in
  ``Access-Control-Allow-Origin``; a request that changes something (POST, PUT, PATCH, DELETE) from a
  browser must come from the page itself (``Origin``, else ``Referer``, else ``Sec-Fetch-Site``) — 403;
* a body larger than the upload limit — 413, whether announced by ``Content-Length`` or not;
* an uploaded image larger than ``--max-pixels`` (read from its header; the stored file is deleted) — 413.

Each refusal is one log line, no traceback. :func:`launch_options` is the one call ``launch`` makes:
Gradio's own byte limit and a lifespan hook that puts the guard in front of the app before the server
accepts its first connection.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["DEFAULT_UPLOAD_BYTES", "Guard", "Served", "launch_options"]

log = logging.getLogger("jojogan.ui")

DEFAULT_UPLOAD_BYTES = 200 * 1024 * 1024
"""The largest upload (and request body) the UI accepts: a 64-megapixel photo as an uncompressed 8-bit
RGB file is 192 MiB, so every photo ``--max-pixels`` allows fits."""

_UPLOAD_PATH = "/gradio_api/upload"
_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")

Scope = dict
Message = dict
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _is_ip(name: str) -> bool:
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(name.strip("[]"))
        return True
    return False


@dataclass(frozen=True)
class Served:
    """The address the UI serves: the ``--host`` it listens on and its port.

    Attributes:
        host: ``127.0.0.1``, ``0.0.0.0``, an address or a name.
        port: the port.
    """

    host: str
    port: int

    @property
    def everywhere(self) -> bool:
        """Listening on every interface (``0.0.0.0``/``::``): reached by any of the machine's addresses."""
        return self.host in ("0.0.0.0", "::", "[::]")

    def names(self) -> set[str]:
        """The host names (lower case, IPv6 in brackets) a request may name in ``Host`` or ``Origin``."""
        names = set(_LOOPBACK_NAMES)
        host = self.host.lower()
        names.add(f"[{host}]" if ":" in host and not host.startswith("[") else host)
        if self.everywhere or not _is_ip(host):
            with contextlib.suppress(OSError):
                names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        return names

    def allows_host(self, value: str) -> bool:
        """Whether a ``Host`` header (``name:port``) is this server."""
        name, port = _split_host(value)
        if port != self.port:
            return False
        return name in self.names() or (self.everywhere and _is_ip(name))

    def allows_origin(self, origin: str) -> bool:
        """Whether an ``Origin`` (or a ``Referer``'s origin) is this server's own page."""
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False
        return self.allows_host(parts.netloc)


def _split_host(value: str) -> tuple[str, int | None]:
    """``"Name:8080"`` → ``("name", 8080)``; ``"[::1]:80"`` → ``("[::1]", 80)``; no port → 80."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value.partition("]")
        name, port = name + "]", rest.removeprefix(":")
    else:
        name, _, port = value.partition(":")
    if not port:
        return name, 80
    return (name, int(port)) if port.isdigit() else (name, None)


class _TooLarge(Exception):
    """The request body passed the limit."""


class Guard:
    """ASGI middleware in front of the whole UI (see the module docstring).

    Args:
        app: the application it guards.
        served: the address the UI serves.
        max_body: the largest request body in bytes.
        max_pixels: the largest uploaded image (width × height), ``None`` for no check.
    """

    def __init__(
        self, app, served: Served, max_body: int = DEFAULT_UPLOAD_BYTES, max_pixels: int | None = None
    ):
        self.app, self.served, self.max_body, self.max_pixels = app, served, max_body, max_pixels

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        refusal = self.refusal(scope, headers)
        if refusal is not None:
            await self._refuse(scope, send, *refusal)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            await self._refuse(scope, send, 413, f"a body of {int(length):,} bytes, above {self.max_body:,}")
            return
        await self._bounded(scope, receive, send)

    def refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        """``(status, reason)`` when the request must be refused, else ``None``."""
        host = headers.get("host", "")
        if not self.served.allows_host(host):
            return 403, f"Host {host!r} is not this server ({self.served.host}:{self.served.port})"
        origin = headers.get("origin")
        if origin is not None and not self.served.allows_origin(origin):
            return 403, f"a request from another site (Origin {origin!r})"
        method = scope.get("method", "GET")
        if method in _CHANGING and origin is None:
            referer = headers.get("referer")
            if referer is not None and not self.served.allows_origin(referer):
                return 403, f"a {method} from another page (Referer {referer[:80]!r})"
            if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
                return 403, f"a {method} from another site (Sec-Fetch-Site {headers['sec-fetch-site']!r})"
        return None

    async def _refuse(self, scope: Scope, send: Send, status: int, reason: str) -> None:
        log.warning("refused %s %s: %s", scope.get("method", "WEBSOCKET"), scope.get("path", ""), reason)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = f"refused: {reason}\n".encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", b"%d" % len(body)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _bounded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, counting its body (a body without a length is cut at the limit) and, for an
        upload, checking the stored images' pixels before the answer goes out."""
        received = 0
        started = False

        async def counting() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body:
                raise _TooLarge
            return message

        upload = scope.get("path", "").rstrip("/") == _UPLOAD_PATH and self.max_pixels is not None
        held: list[Message] = []

        async def sending(message: Message) -> None:
            nonlocal started
            started = True
            if not upload:
                await send(message)
                return
            held.append(message)  # an upload's answer is the list of stored files: small, held to check
            if message["type"] == "http.response.body" and not message.get("more_body"):
                await self._release_upload(scope, send, held)

        try:
            await self.app(scope, counting, sending)
        except _TooLarge:
            if not started:
                await self._refuse(scope, send, 413, f"a body of more than {self.max_body:,} bytes")
            else:
                log.warning(
                    "refused %s %s: a body of more than %d bytes",
                    scope["method"],
                    scope["path"],
                    self.max_body,
                )

    async def _release_upload(self, scope: Scope, send: Send, held: list[Message]) -> None:
        """Send an upload's answer, unless a stored image has more pixels than allowed (then it is deleted
        and the answer is 413)."""
        body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
        too_large = _oversized(body, self.max_pixels)
        if too_large is None:
            for message in held:
                await send(message)
            return
        await self._refuse(scope, send, 413, too_large)


def _oversized(body: bytes, max_pixels: int | None) -> str | None:
    """Why one of the files an upload stored is too large an image (it is deleted), else ``None``."""
    from PIL import Image

    try:
        paths = json.loads(body)
    except ValueError:
        return None
    if not isinstance(paths, list) or max_pixels is None:
        return None
    for item in paths:
        path = Path(item) if isinstance(item, str) else None
        if path is None or not path.is_file():
            continue
        try:
            with Image.open(path) as image:  # the header only
                width, height = image.size
        except Exception:  # noqa: BLE001 - not an image (or a bomb Pillow refuses): the page says so later
            continue
        if width * height > max_pixels:
            for stored in (Path(p) for p in paths if isinstance(p, str)):
                stored.unlink(missing_ok=True)
            return f"an image of {width} × {height} px, above --max-pixels {max_pixels:,}"
    return None


def launch_options(
    host: str, port: int, max_pixels: int | None, max_upload: int = DEFAULT_UPLOAD_BYTES
) -> dict:
    """Keyword arguments for ``Blocks.launch`` that guard the server (Gradio's byte limit on uploads, and
    the :class:`Guard` put in front of the whole app when the server starts, before its first request)."""
    served = Served(host, port)

    @contextlib.asynccontextmanager
    async def guarded(app):
        stack = app.middleware_stack or app.build_middleware_stack()
        app.middleware_stack = Guard(stack, served, max_upload + (1 << 20), max_pixels)
        yield

    return {"max_file_size": max_upload, "app_kwargs": {"lifespan": guarded}}
