"""Command-line interface: a thin click layer over the Python API."""

from __future__ import annotations

import functools
import json
import logging
import platform
import sys

import click

from jojogan import __version__
from jojogan.stylegan2.errors import JojoganError

log = logging.getLogger("jojogan")


def _user_errors(command):
    """Turn the product's own errors into clean CLI messages (exit code 1, no traceback)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except JojoganError as error:
            raise click.ClickException(str(error)) from error

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jojogan")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """One-shot face stylization with JoJoGAN on StyleGAN2."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("jojogan").setLevel(level if verbose else logging.INFO)


def environment_report() -> dict[str, str]:
    """Versions, devices and the active op implementation, as shown by ``jojogan env``."""
    import numpy
    import torch

    from jojogan.op import ops_report

    report = {
        "jojogan": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda available": str(torch.cuda.is_available()),
        "cuda (torch build)": str(torch.version.cuda),
        "mps available": str(
            getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
        ),
        "cpu threads": str(torch.get_num_threads()),
    }
    if torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name(0)
    for name in ("dlib", "safetensors", "PIL"):
        try:
            module = __import__(name)
            report[name] = getattr(module, "__version__", getattr(module, "DLIB_VERSION", "installed"))
        except ImportError:
            report[name] = "not installed"
    report.update(ops_report())
    return report


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def env(as_json: bool) -> None:
    """Show versions, devices and which op implementation is active and why."""
    report = environment_report()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    width = max(len(k) for k in report)
    for key, value in report.items():
        click.echo(f"{key:<{width}}  {value}")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="jojogan")
