"""Command-line interface: a thin click layer over the Python API, one module per command group.

Adding a group is one line here, ``main.add_command(...)``; the shared options live in
:mod:`jojogan.cli._options`.
"""

from __future__ import annotations

import logging
import traceback

import click

from jojogan import __version__

# the command modules; the package namespace holds modules only, so no module shares a command's name
from jojogan.cli import align, batch, convert, env, finetune, stylize, ui, video
from jojogan.errors import JojoganError
from jojogan.identity.cli import identity
from jojogan.weights_cli import weights

__all__ = ["main"]


class _OneLineUsageError(click.ClickException):
    """A usage mistake as one ``Error: ...`` line naming the command's --help (exit 2, as click's)."""

    exit_code = 2

    def __init__(self, error: click.UsageError):
        where = error.ctx.command_path if error.ctx is not None else "jojogan"
        super().__init__(f"{error.format_message()} (see '{where} --help')")


class _Main(click.Group):
    """The command group with the CLI's last-resort error handler.

    The product's own errors become one ``Error: ...`` line (exit 1). Anything unexpected does too, with
    the exception's type and "rerun with -v for details"; the traceback is printed only with ``-v``.
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            raise _OneLineUsageError(error) from error
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except JojoganError as error:
            raise click.ClickException(str(error)) from error
        except Exception as error:
            if (ctx.obj or {}).get("verbose"):
                click.echo(traceback.format_exc(), err=True, nl=False)
                hint = ""
            else:
                hint = " (rerun with -v for details)"
            raise click.ClickException(f"unexpected {type(error).__name__}: {error}{hint}") from error


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jojogan")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="-v: jojogan's debug log and tracebacks of unexpected errors; -vv: every library's debug log too.",
)
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """One-shot face stylization with JoJoGAN on StyleGAN2."""
    ctx.ensure_object(dict)["verbose"] = verbose
    # jojogan's own INFO lines always show; -v adds its DEBUG lines (and tracebacks), -vv every library's
    logging.basicConfig(
        level=logging.DEBUG if verbose >= 2 else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("jojogan").setLevel(logging.DEBUG if verbose else logging.INFO)


main.add_command(env.env)
main.add_command(align.align)
main.add_command(align.invert)
main.add_command(finetune.finetune)
main.add_command(stylize.stylize)
main.add_command(stylize.slider)
main.add_command(stylize.sample)
main.add_command(batch.batch)
main.add_command(weights)
main.add_command(convert.convert)
main.add_command(identity)
main.add_command(ui.ui)
main.add_command(video.video)
