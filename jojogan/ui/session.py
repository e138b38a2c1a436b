"""The web UI server's own temporary folder, and its removal however the server stops.

Everything the page leaves on disk outside the style library lives in one folder per server,
``<system temp>/jojogan-ui-XXXX``: Gradio's copies of uploads and results (``gradio/``, handed to Gradio as
``GRADIO_TEMP_DIR`` before Gradio is imported, since some of its modules read it then), the files offered
for download (``results/``) and PyTorch's compiler cache folder (``torch/``, ``TORCHINDUCTOR_CACHE_DIR``,
which importing torch's compiler stack creates empty in the temp folder otherwise: a ``torch.optim``
optimiser or a model built on the meta device imports it; jojogan's own Adam does not).
:func:`serve_until_stopped` removes it when the server stops: Ctrl+C (SIGINT), SIGTERM (a service manager,
``docker stop``, ``kill``) or SIGHUP (the terminal closed); before the server runs (while the models load)
:func:`exit_on_stop_signals` turns those signals into a normal exit, and an ``atexit`` hook removes the
folder then. Only SIGKILL can leave it behind.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["SESSION_PREFIX", "SessionClosedError", "UiSession", "exit_on_stop_signals", "serve_until_stopped"]

log = logging.getLogger("jojogan")

SESSION_PREFIX = "jojogan-ui-"
"""Name prefix of a server's folder in the system temp folder."""

STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
"""The signals that stop the server cleanly (SIGHUP does not exist on Windows)."""


class SessionClosedError(RuntimeError):
    """The server is stopping: nothing may be written into its folder any more."""


class UiSession:
    """One server's temporary folder.

    Args:
        root: the folder (made by :meth:`create`); it holds ``gradio/`` and ``results/``.
    """

    def __init__(self, root: Path):
        self.root = root
        self.gradio_dir = root / "gradio"
        self.results_dir = root / "results"
        for folder in (self.gradio_dir, self.results_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._closed = False
        self._set_env: dict[str, str | None] = {}  # variables set here, with the values they had

    @classmethod
    def create(cls) -> UiSession:
        """A new folder in the system temp folder, its removal registered with ``atexit``."""
        session = cls(Path(tempfile.mkdtemp(prefix=SESSION_PREFIX)))
        atexit.register(session.remove)
        return session

    def use_for_caches(self) -> None:
        """Point Gradio's upload and result cache (``GRADIO_TEMP_DIR``) and, unless the user chose one,
        PyTorch's compiler cache (``TORCHINDUCTOR_CACHE_DIR``) into this folder. Call it before Gradio is
        imported and before the first optimiser is made."""
        wanted = {"GRADIO_TEMP_DIR": self.root / "gradio"}
        if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
            wanted["TORCHINDUCTOR_CACHE_DIR"] = self.root / "torch"
        for name, folder in wanted.items():
            self._set_env[name] = os.environ.get(name)
            os.environ[name] = str(folder)

    def write(self, save: Callable[[Path], Path]) -> Path:
        """Run ``save(folder)`` with a new folder under ``results/``, unless the server is stopping.

        Returns:
            What ``save`` returns (the file it wrote).

        Raises:
            SessionClosedError: the folder is being removed; nothing was written.
        """
        with self._lock:
            if self._closed:
                raise SessionClosedError("the server is stopping")
            return save(Path(tempfile.mkdtemp(dir=self.results_dir)))

    def remove(self) -> None:
        """Delete the folder; :meth:`write` refuses afterwards. Each call deletes it again (the ``atexit``
        call catches anything Gradio wrote in the last moments)."""
        with self._lock:
            self._closed = True
            shutil.rmtree(self.root, ignore_errors=True)
            for name, value in self._set_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            self._set_env.clear()


def exit_on_stop_signals() -> None:
    """Until :func:`serve_until_stopped` takes over, SIGTERM and SIGHUP end the process as a normal exit
    (``SystemExit``), so that ``atexit`` hooks run (their default action skips them). Main thread only."""

    def leave(signum, frame):
        sys.exit(128 + signum)

    for sig in STOP_SIGNALS:
        if sig != signal.SIGINT:  # Ctrl+C already raises KeyboardInterrupt
            signal.signal(sig, leave)


def serve_until_stopped(app, session: UiSession, before_close: Callable[[], None] = lambda: None) -> int:
    """Block until Ctrl+C, SIGTERM or SIGHUP (or until the app stops), then run ``before_close`` (e.g.
    cancel a training run and let running events finish, so that none writes after the folder is gone),
    close the app and remove the session's folder.

    Returns:
        The signal number that stopped the server, or 0 when the app stopped by itself.
    """
    stopped = threading.Event()
    received: list[int] = []

    def on_signal(signum, frame):
        received.append(signum)
        stopped.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        while not stopped.wait(0.2) and app.is_running:
            pass
    finally:
        try:
            before_close()
            app.close(verbose=False)
        finally:
            session.remove()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return received[0] if received else 0
