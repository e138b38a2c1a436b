"""``jojogan stylize``, ``slider`` and ``sample``: use a style file."""

from __future__ import annotations

from pathlib import Path

import click

from jojogan.cleanup.restore import DEFAULT_FIDELITY
from jojogan.cli._options import (
    SEED,
    FiniteFloat,
    OutputFile,
    alpha_option,
    face_option,
    inversion_options,
    model_options,
    output_file_option,
    pipeline,
)
from jojogan.config import CLEANUPS
from jojogan.errors import JojoganError
from jojogan.identity.cli import identity_net_options

no_identity_option = click.option(
    "--no-identity", is_flag=True, help="Do not measure how much of the person survived the style."
)

style_option = click.option(
    "--style",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Style file: ours (.safetensors) or an official JoJoGAN .pt.",
)


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@style_option
@output_file_option("Image file for one input; a folder for several.", folder_ok=True)
@alpha_option("Style strength in [0, 1], or one comma-separated value per style layer.")
@face_option("largest, or an index from the left", allow_all=False)
@click.option(
    "--paste", is_flag=True, help="Blend the stylized face back into the photo (feathered landmark mask)."
)
@click.option("--match-colour", is_flag=True, help="With --paste: take the photo's colour and lighting.")
@click.option(
    "--cleanup",
    type=click.Choice(["none", *CLEANUPS]),
    default="none",
    show_default=True,
    help="Clean the stylized face up (CodeFormer).",
)
@click.option(
    "--fidelity",
    type=FiniteFloat(0, 1),
    default=DEFAULT_FIDELITY,
    show_default=True,
    help="CodeFormer's w: 0 restores most, 1 keeps most of its input.",
)
@click.option("--restore-input", is_flag=True, help="CodeFormer on the input face before inversion.")
@click.option(
    "--codeformer",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="codeformer.pth (default: the weights cache, downloaded on first use).",
)
@identity_net_options()
@no_identity_option
@inversion_options
@model_options
def stylize(
    inputs,
    style,
    output,
    alpha,
    face,
    paste,
    match_colour,
    cleanup,
    fidelity,
    restore_input,
    codeformer,
    identity_net,
    identity_weights,
    no_identity,
    max_pixels,
    aligned,
    inversion,
    inversion_steps,
    **models,
):
    """Stylize photos with a fine-tuned style.

    \b
    Examples:
        jojogan stylize photo.jpg --style mystyle.safetensors --alpha 0.7 -o out.png
        jojogan stylize *.jpg --style arcane_caitlyn.pt --paste -o styled/
        jojogan stylize blurry.jpg --style s.safetensors --restore-input --cleanup codeformer -o out.png
    """
    from jojogan.imaging import save_image

    several = len(inputs) > 1
    if several and output.suffix:
        raise click.UsageError("with several inputs --output is a folder (no file suffix)")
    pipe = pipeline(max_pixels=max_pixels, **models)
    pipe.codeformer_path = codeformer
    pipe.load_style(style)
    cleanup = None if cleanup == "none" else cleanup
    if cleanup or restore_input:
        pipe.codeformer()  # load (or download) before any photo is processed: a missing file fails fast
        stages = (["restoring the input"] if restore_input else []) + (["cleaning up"] if cleanup else [])
        click.echo(f"CodeFormer: {' and '.join(stages)} (fidelity {fidelity:g})", err=True)
    recognizer = None if no_identity else pipe.recognizer(identity_net, identity_weights)
    failures = 0
    for path in inputs:
        try:
            result = pipe.stylize(
                path,
                style,
                alpha,
                inversion=inversion,
                inversion_steps=inversion_steps,
                aligned=aligned,
                face=face,
                paste=paste,
                identity=recognizer,
                cleanup=cleanup,
                fidelity=fidelity,
                restore_input=restore_input,
                match_colour=match_colour,
            )
        except JojoganError as error:
            if not several:
                raise
            click.echo(f"error: {error}", err=True)
            failures += 1
            continue
        target = output / f"{Path(path).stem}_styled.png" if several else output
        save_image(result.pasted if paste else result.image, target, pnginfo=result.png_metadata())
        kept = "" if result.identity is None else f" (identity {result.identity:.3f}, {result.identity_net})"
        click.echo(f"{path} -> {target}{kept}")
    if failures:
        raise click.ClickException(f"{failures} of {len(inputs)} inputs failed")


@click.command()
@click.argument("input_image", metavar="INPUT", type=click.Path(path_type=Path))
@style_option
@click.option("--steps", default=5, show_default=True, type=click.IntRange(min=2), help="Number of α values.")
@output_file_option("Labelled strip (PNG).")
@click.option("--gif", type=OutputFile((".gif",)), default=None, help="Also an animated GIF.")
@click.option("--tile", default=256, show_default=True, type=click.IntRange(min=32), help="Tile size in px.")
@identity_net_options()
@no_identity_option
@inversion_options
@model_options
def slider(
    input_image,
    style,
    steps,
    output,
    gif,
    tile,
    identity_net,
    identity_weights,
    no_identity,
    max_pixels,
    aligned,
    inversion,
    inversion_steps,
    **models,
):
    """The alpha slider: one face from original (α = 0) to fully stylized (α = 1).

    Beside the strip go the identity curve identity(α) as OUTPUT.identity.json and a plot of it,
    OUTPUT.identity.png (unless --no-identity).

    \b
    Example:
        jojogan slider photo.jpg --style mystyle.safetensors --steps 6 -o strip.png --gif slider.gif
    """
    from jojogan.fileio import atomic_output
    from jojogan.identity.metric import plot_identity_curve
    from jojogan.imaging import labelled_strip, save_gif, save_image

    pipe = pipeline(max_pixels=max_pixels, **models)
    pipe.load_style(style)
    recognizer = None if no_identity else pipe.recognizer(identity_net, identity_weights)
    face = pipe.prepare(input_image, inversion, aligned=aligned, steps=inversion_steps)
    frames = pipe.slider(face, style, steps)
    strip = labelled_strip([img for _, img in frames], [f"alpha {a:.2f}" for a, _ in frames], tile=tile)
    click.echo(f"strip -> {save_image(strip, output)}")
    if recognizer is not None:
        curve = pipe.identity_curve(face, frames, recognizer)
        curve_json = output.with_name(output.name + ".identity.json")
        with atomic_output(curve_json) as tmp:
            Path(tmp).write_text(curve.to_json() + "\n")
        plot = save_image(plot_identity_curve(curve), output.with_name(output.name + ".identity.png"))
        values = ", ".join(f"{a:.2f}: {v:.3f}" for a, v in zip(curve.alphas, curve.similarities, strict=True))
        click.echo(f"identity ({curve.network}) {values} -> {curve_json}, {plot}")
    if gif is not None:
        resized = [img.resize((tile, tile)) for _, img in frames]
        click.echo(f"gif -> {save_gif(resized, gif)}")


@click.command()
@style_option
@click.option(
    "-n", "count", default=4, show_default=True, type=click.IntRange(min=1), help="Number of faces."
)
@click.option("--truncation", default=0.7, show_default=True, type=FiniteFloat(0, 1))
@click.option("--seed", default=0, show_default=True, type=SEED)
@alpha_option("Style strength (see stylize).")
@click.option("--tile", default=256, show_default=True, type=click.IntRange(min=32))
@output_file_option("Grid image.")
@model_options
def sample(style, count, truncation, seed, alpha, tile, output, **models):
    """Random faces (top row) and the same faces in the style (bottom row).

    \b
    Example:
        jojogan sample --style mystyle.safetensors -n 6 --seed 3 -o grid.png
    """
    from jojogan.imaging import image_grid, save_image

    pipe = pipeline(max_pixels=None, **models)
    originals, styled = pipe.sample(style, count, truncation=truncation, seed=seed, alpha=alpha)
    click.echo(f"grid -> {save_image(image_grid([originals, styled], tile=tile), output)}")
