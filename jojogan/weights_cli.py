"""``jojogan weights``: list, download, verify and locate the registry's files (a thin layer over
:mod:`jojogan.weights`).

Registered on the main command group with ``main.add_command(weights)``.
"""

from __future__ import annotations

import functools

import click

from jojogan import weights as manager
from jojogan.stylegan2.errors import JojoganError


def _user_errors(command):
    """The manager's errors become one ``Error: ...`` line and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except JojoganError as error:
            raise click.ClickException(str(error)) from error

    return wrapper


def _entries(names: tuple[str, ...]) -> list[manager.WeightsEntry]:
    if not names or "all" in names:
        return list(manager.REGISTRY.values())
    return [manager.get_entry(name) for name in names]


_CACHED = {"missing": "no", "verified": "yes", "unverified": "yes", "corrupt": "DAMAGED"}


def _verification(status: manager.CacheStatus) -> str:
    if status.state == "corrupt":
        return "no: " + status.detail
    if status.entry.sha256_prefix is not None:
        return "yes (sha256 prefix)" if status.state == "verified" else "-"
    if status.entry.sha256 is None:
        return "unverified (no published sha256)"
    return "yes (sha256)" if status.state == "verified" else "-"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def weights() -> None:
    """Download, verify and locate the pretrained weights (cache: $JOJOGAN_HOME or ~/.cache/jojogan).

    \b
    Environment:
      JOJOGAN_HOME            the cache folder
      JOJOGAN_OFFLINE=1       never touch the network (HF_HUB_OFFLINE=1 too)
      JOJOGAN_WEIGHTS_MIRROR  fetch every file from <base-url>/<file name> instead
    """


def _source(entry: manager.WeightsEntry) -> str:
    """Where the file comes from, for the README table."""
    if entry.hf_repo:
        return f"Hugging Face [{entry.hf_repo}](https://huggingface.co/{entry.hf_repo})"
    if entry.url:
        return f"<{entry.url}>"
    return f"by hand: [Google Drive]({entry.drive_url}) (the authors' link)"


def _size(entry: manager.WeightsEntry) -> str:
    if entry.size is not None:
        return f"{entry.size:,}"
    return f"~{entry.approx_size:,}" if entry.approx_size is not None else "unknown"


def _markdown_table() -> str:
    lines = ["| name | file | size (bytes) | sha256 | source | licence |", "|---|---|---|---|---|---|"]
    for entry in manager.REGISTRY.values():
        size = _size(entry)
        if entry.sha256:
            digest = f"`{entry.sha256}`"
        elif entry.sha256_prefix:
            digest = f"prefix `{entry.sha256_prefix}`"
        else:
            digest = "unknown (unverified)"
        cells = (f"`{entry.name}`", f"`{entry.filename}`", size, digest, _source(entry), entry.licence)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@weights.command("list")
@click.option("--markdown", is_flag=True, help="Print the registry as the README's Markdown table instead.")
def list_command(markdown: bool) -> None:
    """Show every registry file: size, licence, whether it is cached and verified.

    \b
    Examples:
      jojogan weights list
      jojogan weights list --markdown
    """
    if markdown:
        click.echo(_markdown_table())
        return
    click.echo(f"cache: {manager.cache_dir()}")
    rows = [("name", "file", "size", "cached", "verified", "licence")]
    for entry in manager.REGISTRY.values():
        status = manager.check_cached(entry)
        size = _size(entry)
        rows.append(
            (entry.name, entry.filename, size, _CACHED[status.state], _verification(status), entry.licence)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        # The licence goes last and unpadded: it is the long column.
        click.echo("  ".join(row[i].ljust(widths[i]) for i in range(5)) + "  " + row[5])


@weights.command("download")
@click.argument("names", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Download again even when a good copy is cached.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar.")
@_user_errors
def download_command(names: tuple[str, ...], force: bool, progress: bool) -> None:
    """Download NAMES (registry names or file names, or `all`) into the cache, verified.

    \b
    Examples:
      jojogan weights download ffhq e4e
      JOJOGAN_WEIGHTS_MIRROR=https://mirror.example/jojogan jojogan weights download all
    """
    failures = []
    entries = _entries(names)
    for entry in entries:
        try:
            if force:
                path = manager.download(entry, progress=progress, force=True)
            else:
                path = manager.ensure(entry, download_missing=True, progress=progress)
        except manager.WeightsError as error:
            if len(entries) == 1:
                raise
            failures.append(entry.name)
            click.echo(f"Error: {error}", err=True)
            continue
        click.echo(f"{entry.name}: {path}")
    if failures:
        raise click.ClickException(
            f"{len(failures)} of {len(entries)} downloads failed: {', '.join(failures)}"
        )


@weights.command("verify")
@click.argument("names", nargs=-1)
@_user_errors
def verify_command(names: tuple[str, ...]) -> None:
    """Re-hash cached files (all of them without NAMES); exit 1 when one is damaged.

    \b
    Example:
      jojogan weights verify ffhq
    """
    damaged = []
    for entry in _entries(names):
        status = manager.check_cached(entry, rehash=True)
        if status.state == "missing":
            if names:
                click.echo(f"{entry.name}: not cached ({status.path})")
            continue
        if status.state == "corrupt":
            damaged.append(entry.name)
            click.echo(
                f"{entry.name}: DAMAGED, {status.detail}; `jojogan weights download {entry.name}` replaces it"
            )
        else:
            click.echo(f"{entry.name}: ok, {_verification(status)} {status.detail}".rstrip())
    if damaged:
        raise click.ClickException(f"damaged in the cache: {', '.join(damaged)}")


@weights.command("path")
@click.argument("name")
@_user_errors
def path_command(name: str) -> None:
    """Print where NAME lives in the cache (where to put a file fetched by hand).

    \b
    Example:
      jojogan weights path ffhq
    """
    entry = manager.get_entry(name)
    status = manager.check_cached(entry)
    click.echo(str(status.path))
    if not status.usable:
        click.echo(
            f"({entry.filename} is {'damaged' if status.state == 'corrupt' else 'not cached yet'})", err=True
        )
