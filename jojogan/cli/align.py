"""``jojogan align`` and ``jojogan invert``: faces to aligned crops, and crops to W+ codes."""

from __future__ import annotations

import json
from pathlib import Path

import click

from jojogan.cli._options import (
    face_option,
    inversion_options,
    max_pixels_option,
    model_options,
    output_file_option,
    pipeline,
)
from jojogan.errors import JojoganError


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder."
)
@click.option("--size", default=1024, show_default=True, type=click.IntRange(min=16), help="Crop size in px.")
@face_option("largest, all, or an index from the left", allow_all=True)
@click.option("--supersample", is_flag=True, help="Higher-quality FFHQ transform (slower).")
@max_pixels_option
def align(inputs, output, size, face, supersample, max_pixels):
    """FFHQ-align faces (dlib 68 landmarks), as StyleGAN2 and JoJoGAN expect.

    \b
    Example:
        jojogan align photo.jpg group.png -o aligned/ --face all
    """
    from jojogan.imaging import save_image
    from jojogan.inversion.align import align_face, align_faces

    failures = 0
    for path in inputs:
        try:
            if face == "all":
                crops = align_faces(path, output_size=size, supersample=supersample, max_pixels=max_pixels)
            else:
                crops = [align_face(path, size, face=face, supersample=supersample, max_pixels=max_pixels)]
        except JojoganError as error:
            click.echo(f"error: {error}", err=True)
            failures += 1
            continue
        for crop in crops:
            suffix = f"_{crop.face_index}" if face == "all" or crop.num_faces > 1 else ""
            target = save_image(crop.image, output / f"{Path(path).stem}{suffix}.png")
            click.echo(f"{path} -> {target} (face {crop.face_index + 1} of {crop.num_faces})")
    if failures:
        raise click.ClickException(f"{failures} of {len(inputs)} inputs failed")


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@output_file_option("codes.safetensors or codes.pt (W+ [n, n_latent, style_dim]).", (".safetensors", ".pt"))
@inversion_options
@model_options
def invert(inputs, output, max_pixels, aligned, inversion, inversion_steps, base, e4e, device):
    """Invert faces to W+ codes; the aligned crops are saved beside the codes.

    \b
    Example:
        jojogan invert photo.jpg --inversion optimize --base stylegan2-ffhq-config-f.pt -o codes.safetensors
    """
    import torch
    from safetensors.torch import save_file

    from jojogan.fileio import atomic_output
    from jojogan.imaging import save_image

    pipe = pipeline(base, e4e, device, max_pixels)
    faces = [
        pipe.prepare(path, inversion, aligned=aligned, steps=inversion_steps, show_progress=True)
        for path in inputs
    ]
    w_plus = torch.cat([f.w_plus.cpu() for f in faces])
    names = [f.name for f in faces]
    with atomic_output(output) as tmp:
        if output.suffix == ".safetensors":
            save_file({"w_plus": w_plus.contiguous()}, str(tmp), metadata={"names": json.dumps(names)})
        else:
            torch.save({"w_plus": w_plus, "names": names}, tmp)
    crops = output.with_name(f"{output.stem}_aligned")
    for face in faces:
        save_image(face.aligned.image, crops / f"{Path(face.name).stem}.png")
    click.echo(f"W+ codes {tuple(w_plus.shape)} -> {output}; aligned crops in {crops}/")
