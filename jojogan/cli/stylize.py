"""``jojogan stylize``, ``slider`` and ``sample``: use a style file."""

from __future__ import annotations

from pathlib import Path

import click

from jojogan.batch.manifest import face_outputs
from jojogan.cli._options import (
    FINISHING,
    SEED,
    FiniteFloat,
    OutputFile,
    base_options,
    check_alpha_length,
    check_inputs_exist,
    claim_outputs,
    codeformer_option,
    force_option,
    identity_options,
    inversion_options,
    model_options,
    output_file_option,
    pipeline,
    stylize_config,
    stylize_options,
    unique_stems,
)
from jojogan.config import SAMPLES, SLIDER_STEPS, STYLED_SUFFIX, TILE, TRUNCATION, StylizeConfig
from jojogan.errors import JojoganError
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
@stylize_options("alpha", "face", *FINISHING)
@codeformer_option
@identity_options
@inversion_options
@model_options
@force_option
def stylize(inputs, style, output, force, models, **settings):
    """Stylize photos with a fine-tuned style.

    When OUTPUT is a folder (no suffix; required with several inputs) each result is NAME_styled.png
    (with --face all and no --paste: NAME_face0_styled.png, NAME_face1_styled.png, ...); inputs with the
    same file name get _2, _3, ... in the order given. An output never replaces an input; an existing
    output is replaced only with --force.

    \b
    Examples:
        jojogan stylize photo.jpg --style mystyle.safetensors --alpha 0.7 -o out.png
        jojogan stylize *.jpg --style arcane_caitlyn.pt --paste -o styled/
        jojogan stylize group.jpg --style s.safetensors --face all --paste -o group_styled.png
        jojogan stylize blurry.jpg --style s.safetensors --restore-input --cleanup codeformer -o out.png
    """
    config = stylize_config(settings)
    if len(inputs) > 1 and output.suffix:
        raise click.UsageError("with several inputs --output is a folder (no file suffix)")
    if config.face == "all" and not config.paste and output.suffix:
        raise click.UsageError("--face all without --paste writes one file per face: -o is then a folder")
    check_inputs_exist(*inputs, style, *models.files)
    several = not output.suffix  # a folder: one NAME_styled.png per input
    targets = [output / f"{stem}{STYLED_SUFFIX}" for stem in unique_stems(inputs)] if several else [output]
    claim_outputs([*inputs, style, *models.files], targets, force)
    if config.face == "all" and not config.paste:  # one file per face: those already there, before any work
        claim_outputs(
            inputs, [f for t in targets for f in face_outputs(t.parent, t.name[: -len(STYLED_SUFFIX)])], force
        )
    pipe = pipeline(models, config.distance)
    config = pipe.settings(config)
    check_alpha_length(config.alpha, pipe.load_style(style).generator)
    _load_cleaner(pipe, config)
    if config.identity is not None:
        pipe.recognizer_for(config)  # a missing identity network fails before any photo
    failures = 0
    for path, target in zip(inputs, targets, strict=True):
        try:
            results = pipe.stylize_many([path], style, config=config, show_progress=True)
        except JojoganError as error:
            if len(inputs) == 1:
                raise
            click.echo(f"error: {error}", err=True)
            failures += 1
            continue
        _save_results(path, target, results, config, force)
    if failures:
        raise click.ClickException(f"{failures} of {len(inputs)} inputs failed")


def _load_cleaner(pipe, config: StylizeConfig) -> None:
    """Load (or download) the cleaner before any photo: a missing file fails fast."""
    if not config.cleaner_runs:
        return
    pipe.cleaner(config.cleaner)
    stages = (["restoring the input"] if config.restore_input else []) + (
        ["cleaning up"] if config.cleanup else []
    )
    title = type(pipe.cleaner(config.cleaner)).title
    click.echo(f"{title}: {' and '.join(stages)} (fidelity {config.fidelity:g})", err=True)


def _save_results(path: Path, target: Path, results: list, config: StylizeConfig, force: bool) -> None:
    """Write one photo's results: the pasted photo, or the face (each face with ``--face all``)."""
    from jojogan.imaging import save_image

    if config.face == "all" and not config.paste:
        stem = target.name.removesuffix(STYLED_SUFFIX)
        named = [
            (target.with_name(f"{stem}_face{r.face.aligned.face_index}{STYLED_SUFFIX}"), r) for r in results
        ]
        claim_outputs([path], [t for t, _ in named], force)  # the number of faces is known only now
    else:
        named = [(target, results[0])]
    for out, result in named:
        image = result.pasted if config.paste else result.image
        save_image(image, out, pnginfo=result.png_metadata())
        group = config.face == "all" and config.paste  # every face went into this one picture
        faces = _faces_note(results) if group else ""
        click.echo(f"{path} -> {out}{faces}{_identity_note(results if group else [result])}")


def _identity_note(results: list) -> str:
    """The identity verdict of the face in a picture, or of each face pasted into it (``face N: ...``)."""
    scored = [r for r in results if r.identity is not None]
    if not scored:
        return ""
    if len(results) == 1:
        return f" (identity: {scored[0].identity.line()})"
    each = "; ".join(f"face {r.face.aligned.face_index}: {r.identity.line()}" for r in scored)
    return f" (identity: {each})"


def _faces_note(results: list) -> str:
    """How many faces went into a pasted group photo, and how many were too small to align."""
    found = results[0].face.aligned.num_faces
    small = found - len(results)
    skipped = f"; {small} more too small to align, left as they are" if small else ""
    return f" ({len(results)} faces{skipped})"


@click.command()
@click.argument("input_image", metavar="INPUT", type=click.Path(path_type=Path))
@style_option
@click.option(
    "--steps", default=SLIDER_STEPS, show_default=True, type=click.IntRange(min=2), help="Number of α values."
)
@output_file_option("Labelled strip (PNG).")
@click.option("--gif", type=OutputFile((".gif",)), default=None, help="Also an animated GIF.")
@click.option("--tile", default=TILE, show_default=True, type=click.IntRange(min=32), help="Tile size in px.")
@identity_options
@inversion_options
@model_options
@force_option
def slider(input_image, style, steps, output, gif, tile, force, models, **settings):
    """The alpha slider: one face from original (α = 0) to fully stylized (α = 1).

    Beside the strip go the identity curve identity(α) as OUTPUT.identity.json and a plot of it,
    OUTPUT.identity.png (unless --no-identity). An output never replaces an input; an existing output
    is replaced only with --force.

    \b
    Example:
        jojogan slider photo.jpg --style mystyle.safetensors --steps 6 -o strip.png --gif slider.gif
    """
    from jojogan.imaging import labelled_strip, save_gif, save_image

    config = stylize_config(settings)
    check_inputs_exist(input_image, style, *models.files)
    curve_files = [output.with_name(output.name + suffix) for suffix in (".identity.json", ".identity.png")]
    extra = ([] if config.identity is None else curve_files) + ([] if gif is None else [gif])
    claim_outputs([input_image, style, *models.files], [output, *extra], force)
    pipe = pipeline(models, config.distance)
    config = pipe.settings(config)
    check_slider(steps, tile, pipe.load_style(style).generator.size, output, gif)  # memory and formats
    recognizer = pipe.recognizer_for(config)
    face = pipe.prepare(input_image, config, show_progress=True)
    frames = pipe.slider(face, style, steps)
    strip = labelled_strip([img for _, img in frames], [f"alpha {a:.2f}" for a, _ in frames], tile=tile)
    click.echo(f"strip -> {save_image(strip, output)}")
    if recognizer is not None:
        _save_curve(pipe.identity_curve(face, frames, recognizer), *curve_files)
    if gif is not None:
        resized = [img.resize((tile, tile)) for _, img in frames]
        click.echo(f"gif -> {save_gif(resized, gif)}")


def _save_curve(curve, curve_json: Path, curve_png: Path) -> None:
    from jojogan.fileio import atomic_output
    from jojogan.identity.metric import plot_identity_curve
    from jojogan.imaging import save_image

    with atomic_output(curve_json) as tmp:
        Path(tmp).write_text(curve.to_json() + "\n")
    plot = save_image(plot_identity_curve(curve), curve_png)
    click.echo(f"identity {curve.line()} -> {curve_json}, {plot}")


@click.command()
@style_option
@click.option(
    "-n", "count", default=SAMPLES, show_default=True, type=click.IntRange(min=1), help="Number of pictures."
)
@click.option("--truncation", default=TRUNCATION, show_default=True, type=FiniteFloat(0, 1))
@click.option("--seed", default=0, show_default=True, type=SEED)
@stylize_options("alpha")
@click.option("--tile", default=TILE, show_default=True, type=click.IntRange(min=32))
@output_file_option("Grid image.")
@base_options
@force_option
def sample(style, count, truncation, seed, alpha, tile, output, force, models):
    """Random pictures (top row) and the same pictures in the style (bottom row).

    An output never replaces an input; an existing output is replaced only with --force.

    \b
    Example:
        jojogan sample --style mystyle.safetensors -n 6 --seed 3 -o grid.png
    """
    from jojogan.imaging import image_grid, save_image

    check_inputs_exist(style, *models.files)
    claim_outputs([style, *models.files], [output], force)
    pipe = pipeline(models)
    check_alpha_length(alpha, pipe.load_style(style).generator)
    check_sample(count, tile, pipe.load_style(style).generator.size, output)  # memory and formats
    originals, styled = pipe.sample(style, count, truncation=truncation, seed=seed, alpha=alpha)
    click.echo(f"grid -> {save_image(image_grid([originals, styled], tile=tile), output)}")
