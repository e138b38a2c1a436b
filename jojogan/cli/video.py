"""``jojogan video``: stylize the faces of a video, its sound and timing kept."""

from __future__ import annotations

from pathlib import Path

import click

from jojogan.cli._options import (
    VIDEO_SETTINGS,
    check_alpha_length,
    check_inputs_exist,
    claim_outputs,
    codeformer_option,
    encoder_settings,
    force_option,
    model_options,
    output_file_option,
    pipeline,
    stylize_config,
    stylize_options,
    video_config,
    video_options,
)
from jojogan.cli.identity import identity_net_options
from jojogan.cli.stylize import style_option
from jojogan.video.io import CONTAINERS

__all__ = ["video"]


@click.command()
@click.argument("source", metavar="IN", type=click.Path(path_type=Path))
@style_option
@output_file_option(
    "The stylized video (.mp4, .mkv, .mov, .webm with --codec libvpx-vp9, ...).", tuple(CONTAINERS)
)
@stylize_options("alpha", "face")
@click.option(
    "--paste/--no-paste",
    "paste",
    default=True,
    show_default=True,
    help="Paste the stylized faces back into the frames; --no-paste writes the stylized face itself.",
)
@stylize_options("match_colour", "cleanup", "fidelity", "restore_input")
@identity_net_options(None)
@video_options("report", "flicker_every", "identity_frames", *VIDEO_SETTINGS, "batch_size")
@click.option("--restart", is_flag=True, help="Start over instead of resuming an interrupted run's chunks.")
@codeformer_option
@stylize_options("inversion", "distance", "inversion_steps", "max_pixels")
@encoder_settings
@model_options
@force_option
def video(source, style, output, force, restart, models, **settings):
    """Stylize every tracked face of a video; sound, timing and rotation are kept.

    Faces are tracked (detected, followed and smoothed over time, restarted at each cut); frames without
    a face pass through. The work is kept chunk by chunk beside OUT, so an interrupted run continues
    where it stopped when run again (--restart starts over). An existing OUT is replaced only with
    --force.

    \b
    Examples:
        jojogan video clip.mp4 --style mystyle.safetensors -o clip_styled.mp4
        jojogan video party.mov --style s.safetensors --face all --match-colour --report -o party.mp4
        jojogan video talk.mkv --style s.safetensors --latent shot --codec libx265 --crf 24 -o talk.mkv
        jojogan video clip.mp4 --style s.safetensors --identity-net dlib --alignment-workers 4 -o out.mp4

    Every run prints the flicker figure (the output's warping error over the input's, on the face and
    on the paste seam: 1.0 is as steady as the source); --identity-net adds each face track's identity
    (input face against stylized face on sampled frames, judged by the network's published rule).
    """
    from jojogan.video import video_settings

    config = stylize_config(settings)
    clip_settings = video_config(settings)
    check_inputs_exist(source, style, *models.files)
    report = output.with_name(output.name + ".json")
    outputs = [output] + ([report] if clip_settings.report else [])
    claim_outputs([source, style, *models.files], outputs, force)
    pipe = pipeline(models, config.distance)
    config = video_settings(pipe, config)
    check_alpha_length(config.alpha, pipe.load_style(style).generator)
    if config.cleaner_runs:
        pipe.cleaner(config.cleaner)  # a missing cleaner file fails before any frame
    result = pipe.stylize_video(
        source, output, style, config, clip_settings, resume=not restart, show_progress=True
    )
    facts = result.report
    click.echo(
        f"{source} -> {result.path} ({facts['frames']} frames, {facts['frames_with_faces']} with faces, "
        f"{facts['frames_per_second']} frames/s)"
    )
    if facts["corrupt_frames_skipped"]:
        click.echo(f"skipped {facts['corrupt_frames_skipped']} corrupt frame(s)", err=True)
    click.echo(_flicker_line(result.flicker, config.paste, clip_settings.flicker_every))
    if result.identity is not None:
        from jojogan.video.figures import identity_line

        click.echo(identity_line(result.identity))
    if result.report_path is not None:
        click.echo(f"report -> {result.report_path}")


def _flicker_line(figures: dict | None, paste: bool, every: int) -> str:
    """The flicker figure in one line, e.g. ``flicker vs the input (1.0 = as steady): face 1.21x, seam
    1.05x (1 frame pair in 4)``."""
    if not paste:
        return "flicker: not measured (--no-paste writes the faces alone, not the input's frames)"
    if every == 0 or figures is None:
        return "flicker: not measured (--flicker-every 0)"
    parts = [
        f"{region} {values['ratio']:.2f}x" if values["ratio"] is not None else f"{region} -"
        for region, values in figures.items()
    ]
    pairs = "every frame pair" if every == 1 else f"1 frame pair in {every}"
    return f"flicker vs the input (1.0 = as steady): {', '.join(parts)} ({pairs})"
