"""``jojogan stylize``, ``slider`` and ``sample``: use a style file."""

from __future__ import annotations

from pathlib import Path

import click

from jojogan.cli._options import (
    SEED,
    FiniteFloat,
    OutputFile,
    alpha_option,
    base_options,
    check_alpha_length,
    check_inputs_exist,
    claim_outputs,
    face_option,
    finishing_options,
    force_option,
    inversion_options,
    model_options,
    no_identity_option,
    output_file_option,
    pipeline,
    unique_stems,
)
from jojogan.config import STYLED_SUFFIX
from jojogan.errors import JojoganError
from jojogan.identity.cli import identity_net_options
from jojogan.limits import check_sample, check_slider

style_option = click.option(
    "--style",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Style file: ours (.safetensors) or an official JoJoGAN .pt.",
)


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@style_option
@output_file_option("Image file for one input; a folder (no suffix) for one or several.", folder_ok=True)
@alpha_option("Style strength in [0, 1], or one comma-separated value per style layer.")
@face_option("largest, or an index from the left", allow_all=False)
@finishing_options
@identity_net_options()
@no_identity_option
@inversion_options
@model_options
@force_option
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
    force,
    **models,
):
    """Stylize photos with a fine-tuned style.

    When OUTPUT is a folder (no suffix; required with several inputs) each result is NAME_styled.png;
    inputs with the same file name get _2, _3, ... in the order given.
    An output never replaces an input; an existing output is replaced only with --force.

    \b
    Examples:
        jojogan stylize photo.jpg --style mystyle.safetensors --alpha 0.7 -o out.png
        jojogan stylize *.jpg --style arcane_caitlyn.pt --paste -o styled/
        jojogan stylize blurry.jpg --style s.safetensors --restore-input --cleanup codeformer -o out.png
    """
    from jojogan.imaging import save_image

    if len(inputs) > 1 and output.suffix:
        raise click.UsageError("with several inputs --output is a folder (no file suffix)")
    several = not output.suffix  # a folder: one NAME_styled.png per input
    if paste and aligned:
        raise click.UsageError("--paste needs the photo's alignment; it cannot be used with --aligned")
    if match_colour and not paste:
        raise click.UsageError("--match-colour applies to --paste; add --paste")
    check_inputs_exist(*inputs, style, models["base"], models["e4e"])
    targets = [output / f"{stem}{STYLED_SUFFIX}" for stem in unique_stems(inputs)] if several else [output]
    claim_outputs([*inputs, style, models["base"], models["e4e"], codeformer], targets, force)
    pipe = pipeline(max_pixels=max_pixels, **models)
    pipe.codeformer_path = codeformer
    check_alpha_length(alpha, pipe.load_style(style).generator)
    cleanup = None if cleanup == "none" else cleanup
    if cleanup or restore_input:
        pipe.codeformer()  # load (or download) before any photo is processed: a missing file fails fast
        stages = (["restoring the input"] if restore_input else []) + (["cleaning up"] if cleanup else [])
        click.echo(f"CodeFormer: {' and '.join(stages)} (fidelity {fidelity:g})", err=True)
    recognizer = None if no_identity else pipe.recognizer(identity_net, identity_weights)
    failures = 0
    for path, target in zip(inputs, targets, strict=True):
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
                show_progress=True,
            )
        except JojoganError as error:
            if len(inputs) == 1:
                raise
            click.echo(f"error: {error}", err=True)
            failures += 1
            continue
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
@force_option
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
    force,
    **models,
):
    """The alpha slider: one face from original (α = 0) to fully stylized (α = 1).

    Beside the strip go the identity curve identity(α) as OUTPUT.identity.json and a plot of it,
    OUTPUT.identity.png (unless --no-identity). An output never replaces an input; an existing output
    is replaced only with --force.

    \b
    Example:
        jojogan slider photo.jpg --style mystyle.safetensors --steps 6 -o strip.png --gif slider.gif
    """
    from jojogan.fileio import atomic_output
    from jojogan.identity.metric import plot_identity_curve
    from jojogan.imaging import labelled_strip, save_gif, save_image

    check_inputs_exist(input_image, style, models["base"], models["e4e"])
    curve_json = output.with_name(output.name + ".identity.json")
    curve_png = output.with_name(output.name + ".identity.png")
    extra = ([] if no_identity else [curve_json, curve_png]) + ([] if gif is None else [gif])
    claim_outputs([input_image, style, models["base"], models["e4e"]], [output, *extra], force)
    pipe = pipeline(max_pixels=max_pixels, **models)
    check_slider(steps, tile, pipe.load_style(style).generator.size, output, gif)  # memory and formats
    recognizer = None if no_identity else pipe.recognizer(identity_net, identity_weights)
    face = pipe.prepare(input_image, inversion, aligned=aligned, steps=inversion_steps, show_progress=True)
    frames = pipe.slider(face, style, steps)
    strip = labelled_strip([img for _, img in frames], [f"alpha {a:.2f}" for a, _ in frames], tile=tile)
    click.echo(f"strip -> {save_image(strip, output)}")
    if recognizer is not None:
        curve = pipe.identity_curve(face, frames, recognizer)
        with atomic_output(curve_json) as tmp:
            Path(tmp).write_text(curve.to_json() + "\n")
        plot = save_image(plot_identity_curve(curve), curve_png)
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
@base_options
@force_option
def sample(style, count, truncation, seed, alpha, tile, output, force, **models):
    """Random faces (top row) and the same faces in the style (bottom row).

    An output never replaces an input; an existing output is replaced only with --force.

    \b
    Example:
        jojogan sample --style mystyle.safetensors -n 6 --seed 3 -o grid.png
    """
    from jojogan.imaging import image_grid, save_image

    check_inputs_exist(style, models["base"])
    claim_outputs([style, models["base"]], [output], force)
    pipe = pipeline(**models)
    check_alpha_length(alpha, pipe.load_style(style).generator)
    check_sample(count, tile, pipe.load_style(style).generator.size, output)  # memory and formats
    originals, styled = pipe.sample(style, count, truncation=truncation, seed=seed, alpha=alpha)
    click.echo(f"grid -> {save_image(image_grid([originals, styled], tile=tile), output)}")
