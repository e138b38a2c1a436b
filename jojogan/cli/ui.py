"""``jojogan ui``: the local web UI (train, stylize, slider and samples, style library)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from jojogan.cli._options import encoder_settings, model_options, pipeline, stylize_config, stylize_options

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; 127.0.0.1 keeps the UI private to this machine.",
)
@click.option("--port", default=7860, show_default=True, type=click.IntRange(1, 65535), help="Port.")
@stylize_options("inversion", "inversion_steps")
@encoder_settings
@click.option(
    "--library",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Style library folder (default: $JOJOGAN_HOME/styles).",
)
@stylize_options("max_pixels")
@model_options
def ui(host, port, library, models, **settings):
    """Serve the web UI on this machine (open the address it prints): train styles, stylize photos, browse
    the library.

    Nothing leaves the machine: no share link, no analytics, no fonts or scripts from the internet. Stop it
    with Ctrl+C (or SIGTERM): uploads and results live in a temporary folder of its own, removed then.

    \b
    Examples:
        jojogan ui
        jojogan ui --port 8000 --device cuda
        jojogan ui --base stylegan2-ffhq-config-f.pt --inversion optimize
    """
    from jojogan.fileio import check_folder_writable
    from jojogan.op.memory import missing_worker_env
    from jojogan.ui import Studio, StyleLibrary
    from jojogan.ui.app import launch, require_gradio
    from jojogan.ui.session import UiSession, exit_on_stop_signals

    config = stylize_config(settings)  # the page's defaults: how photos become codes, the upload limit
    require_gradio(load=False)  # before the models load: a missing extra or a taken port is one line at once
    _check_port(host, port)
    library = StyleLibrary(library)
    check_folder_writable(library.root)  # a JOJOGAN_HOME that is a file or read-only: one line, now
    # the server's temporary folder first: Gradio and PyTorch read where their caches go when imported
    session = UiSession.create()
    session.use_for_caches()
    exit_on_stop_signals()  # a SIGTERM while the models load still removes the folder
    if host not in _LOOPBACK:
        click.echo(f"warning: listening on {host}: other machines can reach this UI", err=True)
    pipe = pipeline(models)
    missing = missing_worker_env(os.environ) if pipe.device.type == "cpu" else {}
    if missing:  # the page's work runs on worker threads: see jojogan.op.memory
        settings = " ".join(f"{key}={value}" for key, value in missing.items())
        click.echo(f"note: on a CPU, start it as '{settings} jojogan ui ...' to run faster", err=True)
    studio = Studio(pipe, library, config=config)  # uploads above --max-pixels are refused
    launch(studio, host=host, port=port, session=session)


def _check_port(host: str, port: int) -> None:
    """Refuse a port that cannot be listened on before any model loads (Gradio's own message is long)."""
    import errno
    import socket

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as error:
        reason = "it is in use" if error.errno == errno.EADDRINUSE else str(error)
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {reason} (another jojogan ui?); choose another --port"
        ) from error
