"""``jojogan align`` and ``jojogan invert``: faces to aligned crops, and crops to W+ codes."""

from __future__ import annotations

import json
from pathlib import Path

import click

from jojogan.cli._options import (
    check_inputs_exist,
    claim_outputs,
    force_option,
    inversion_options,
    model_options,
    output_file_option,
    pipeline,
    stylize_config,
    stylize_options,
    unique_stems,
)
from jojogan.errors import JojoganError


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder."
)
@click.option("--size", default=1024, show_default=True, type=click.IntRange(min=16), help="Crop size in px.")
@stylize_options("face")
@click.option("--supersample", is_flag=True, help="Higher-quality FFHQ transform (slower).")
@stylize_options("max_pixels")
@force_option
def align(inputs, output, size, face, supersample, max_pixels, force):
    """FFHQ-align faces (dlib 68 landmarks), as StyleGAN2 and JoJoGAN expect.

    Each crop is OUTPUT/NAME.png (NAME_I.png for face I with --face all); inputs with the same file
    name get _2, _3, ... in the order given.
    An output never replaces an input; an existing output is replaced only with --force.

    \b
    Example:
        jojogan align photo.jpg group.png -o aligned/ --face all
    """
    from jojogan.imaging import save_image
    from jojogan.limits import check_crop_size

    check_inputs_exist(*inputs)
    check_crop_size(size, supersample, crops=len(inputs))  # every crop is kept until all are written
    stems = unique_stems(inputs)
    if face != "all":  # one crop per input: every name is known before any work
        claim_outputs(inputs, [output / f"{stem}.png" for stem in stems], force)
    aligned, failures = _align_all(inputs, stems, size, face, supersample, max_pixels)
    writes = [
        (path, crop, output / (f"{stem}_{crop.face_index}.png" if face == "all" else f"{stem}.png"))
        for path, stem, crops in aligned
        for crop in crops
    ]
    if face == "all":  # the number of faces is known only now: every output is checked before the first write
        claim_outputs(inputs, [target for _, _, target in writes], force)
    for path, crop, target in writes:
        save_image(crop.image, target)
        click.echo(f"{path} -> {target} (face {crop.face_index + 1} of {crop.num_faces})")
    if failures:
        raise click.ClickException(f"{failures} of {len(inputs)} inputs failed")


def _align_all(inputs, stems, size, face, supersample, max_pixels):
    """Every input's crops, ``[(path, stem, crops)]``, and how many inputs failed (each said on stderr; a
    single input's failure is raised)."""
    from jojogan.inversion.align import align_face, align_faces

    aligned, failures = [], 0
    for path, stem in zip(inputs, stems, strict=True):
        try:
            if face == "all":
                crops = align_faces(path, output_size=size, supersample=supersample, max_pixels=max_pixels)
            else:
                crops = [align_face(path, size, face=face, supersample=supersample, max_pixels=max_pixels)]
        except JojoganError as error:
            if len(inputs) == 1:
                raise
            click.echo(f"error: {error}", err=True)
            failures += 1
            continue
        aligned.append((path, stem, crops))
    return aligned, failures


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@output_file_option("codes.safetensors or codes.pt (W+ [n, n_latent, style_dim]).", (".safetensors", ".pt"))
@inversion_options
@model_options
@force_option
def invert(inputs, output, force, models, **settings):
    """Invert faces to W+ codes; the aligned crops are saved beside the codes, in OUTPUT_aligned/.

    Inputs with the same file name get _2, _3, ... in the order given. An output never replaces an
    input; an existing output is replaced only with --force.

    \b
    Example:
        jojogan invert photo.jpg --inversion optimize --base stylegan2-ffhq-config-f.pt -o codes.safetensors
    """
    import torch
    from safetensors.torch import save_file

    from jojogan.fileio import atomic_output
    from jojogan.imaging import save_image

    config = stylize_config(settings)
    check_inputs_exist(*inputs, *models.files)
    crops = output.with_name(f"{output.stem}_aligned")
    crop_files = [crops / f"{stem}.png" for stem in unique_stems(inputs)]
    claim_outputs([*inputs, *models.files], [output, *crop_files], force)
    pipe = pipeline(models, config.distance)
    faces = [pipe.prepare(path, config, show_progress=True) for path in inputs]
    w_plus = torch.cat([f.w_plus.cpu() for f in faces])
    names = [f.name for f in faces]
    with atomic_output(output) as tmp:
        if output.suffix == ".safetensors":
            save_file({"w_plus": w_plus.contiguous()}, str(tmp), metadata={"names": json.dumps(names)})
        else:
            torch.save({"w_plus": w_plus, "names": names}, tmp)
    for face, target in zip(faces, crop_files, strict=True):
        save_image(face.aligned.image, target)
    click.echo(f"W+ codes {tuple(w_plus.shape)} -> {output}; aligned crops in {crops}/")
