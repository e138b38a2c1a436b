"""``jojogan batch``: stylize a whole photo library, resumably, locally or on Ray Data."""

from __future__ import annotations

from pathlib import Path

import click

from jojogan.batch import ENGINES
from jojogan.batch.manifest import MANIFEST_NAME
from jojogan.cli._options import (
    FINISHING,
    VIDEO_SETTINGS,
    check_inputs_exist,
    codeformer_option,
    force_option,
    identity_options,
    inversion_options,
    model_options,
    stylize_config,
    stylize_options,
    video_config,
    video_options,
)


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--style",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Style file: ours (.safetensors) or an official JoJoGAN .pt.",
)
@click.option(
    "-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder."
)
@stylize_options("alpha", "face", *FINISHING)
@codeformer_option
@identity_options
@click.option(
    "--engine", type=click.Choice(ENGINES), default="local", show_default=True, help="Where to run."
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Stylize actors (ray)."
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Faces stylized together on the device [default: photos 1 on the CPU, 16 on CUDA; a video's "
    "faces by device, as `jojogan video`]; above 1, outputs equal single-photo ones within float "
    "tolerance, not byte for byte.",
)
@click.option("--address", default=None, help="Ray cluster address (default $RAY_ADDRESS, else a local Ray).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--retry-errors", is_flag=True, help="Retry inputs that failed in an earlier run.")
@video_options(*VIDEO_SETTINGS)
@inversion_options
@model_options
@force_option
def batch(
    inputs, style, output, engine, workers, batch_size, address, no_progress, retry_errors, models, force,
    **options,
):  # fmt: skip
    """Stylize many photos into OUTPUT, with OUTPUT/manifest.jsonl listing every input.

    INPUTS are folders (searched recursively), globs, .txt/.csv files listing paths, or photos, local or as
    URIs of any filesystem pyarrow reads (file://, s3://, gs://, ...: the ray extra brings pyarrow). A bad
    photo is an error line in the manifest, not the end of the batch. Rerunning the same command skips
    photos already done with the same content and settings. Outputs are those of `jojogan stylize`.
    Videos among the inputs are stylized as `jojogan video` does, with the video options below; an
    interrupted batch resumes a half-done video from its last finished chunk, and --engine ray splits
    each video's chunks over its workers.
    An output never replaces an input, and nothing in OUTPUT is taken as a photo; a rerun that would
    replace earlier outputs (other settings, changed photos) says so and stops unless --force.

    \b
    Examples:
        jojogan batch album/ --style mystyle.safetensors --alpha 0.7 -o styled/
        jojogan batch 'shots/**/*.jpg' --style s.safetensors --paste --face all -o out/
        jojogan batch list.csv --style s.safetensors --engine ray --workers 4 -o out/
        jojogan batch s3://bucket/photos/ --style s.safetensors -o out/
    """
    from jojogan.batch import BatchSettings, stylize_many

    # a FIFO or /dev/zero is refused here, before the settings' fingerprint would read it
    check_inputs_exist(style, *models.files, options.get("identity_weights"))
    video = video_config(options, batch_size=batch_size)  # --batch-size batches a video's faces too
    settings = BatchSettings(style=style, config=stylize_config(options), models=models, video=video)
    report = stylize_many(
        inputs, settings, output, engine=engine, workers=workers, batch_size=batch_size, address=address,
        progress=not no_progress, retry_errors=retry_errors, force=force,
    )  # fmt: skip
    for row in report.rows:
        if row["status"] == "error" and not row.get("skipped"):
            error = row["error"]  # most lines name the photo already
            shown = error if error.startswith(row["input"]) else f"{row['input']}: {error}"
            click.echo(f"error: {shown}", err=True)
    for line in report.unlisted:
        click.echo(f"error: {line}", err=True)
    click.echo(f"{report.summary()}; manifest {Path(output) / MANIFEST_NAME}")
    if report.unlisted or any(row["status"] == "error" for row in report.rows):
        raise click.exceptions.Exit(1)
