"""Command-line interface: a thin click layer over the Python API, one module per command group.

Adding a group is one line here, ``main.add_command(...)``; the shared options live in
:mod:`jojogan.cli._options`.
"""

from __future__ import annotations

import logging

import click

from jojogan import __version__
from jojogan.cli.align import align, invert
from jojogan.cli.env import env
from jojogan.cli.finetune import finetune
from jojogan.cli.stylize import sample, slider, stylize

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jojogan")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """One-shot face stylization with JoJoGAN on StyleGAN2."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("jojogan").setLevel(level if verbose else logging.INFO)


main.add_command(env)
main.add_command(align)
main.add_command(invert)
main.add_command(finetune)
main.add_command(stylize)
main.add_command(slider)
main.add_command(sample)
