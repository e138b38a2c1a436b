"""Command-line interface: a thin click layer over the Python API."""

from __future__ import annotations

import functools
import json
import logging
import platform
import sys
from pathlib import Path

import click

from jojogan import __version__
from jojogan.inversion.images import DEFAULT_MAX_PIXELS
from jojogan.stylegan2.errors import JojoganError

log = logging.getLogger("jojogan")


def _user_errors(command):
    """Turn the product's own errors into clean CLI messages (exit code 1, no traceback)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except JojoganError as error:
            raise click.ClickException(str(error)) from error

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jojogan")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """One-shot face stylization with JoJoGAN on StyleGAN2."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("jojogan").setLevel(level if verbose else logging.INFO)


def environment_report() -> dict[str, str]:
    """Versions, devices and the active op implementation, as shown by ``jojogan env``."""
    import numpy
    import torch

    from jojogan.op import memory_report, ops_report

    report = {
        "jojogan": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda available": str(torch.cuda.is_available()),
        "cuda (torch build)": str(torch.version.cuda),
        "mps available": str(
            getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
        ),
        "cpu threads": str(torch.get_num_threads()),
    }
    if torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name(0)
    for name in ("dlib", "safetensors", "PIL"):
        try:
            module = __import__(name)
            report[name] = getattr(module, "__version__", getattr(module, "DLIB_VERSION", "installed"))
        except ImportError:
            report[name] = "not installed"
    report.update(ops_report())
    report["cpu memory"] = memory_report()
    return report


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def env(as_json: bool) -> None:
    """Show versions, devices and which op implementation is active and why."""
    report = environment_report()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    width = max(len(k) for k in report)
    for key, value in report.items():
        click.echo(f"{key:<{width}}  {value}")


# ---------------------------------------------------------------------------------------------- options
def _base_options(command):
    """--base/--e4e/--device, shared by every command that loads models."""
    command = click.option(
        "--device",
        default="auto",
        show_default=True,
        help="cuda, cuda:1, mps, cpu, or auto (CUDA, then MPS, then CPU).",
    )(command)
    command = click.option(
        "--e4e",
        "e4e",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="e4e_ffhq_encode.pt (default: the weights cache).",
    )(command)
    command = click.option(
        "--base",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="StyleGAN2 checkpoint, official layout (default: stylegan2-ffhq-config-f.pt in the cache).",
    )(command)
    return command


_max_pixels_option = click.option(
    "--max-pixels",
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    type=click.IntRange(min=1),
    help="Refuse larger images (decompression-bomb guard).",
)


def _output_file_option(description: str | None = None):
    """The required ``-o/--output`` of the commands that write one file."""
    return click.option(
        "-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help=description
    )


def _inversion_options(choices: tuple[str, ...]):
    def decorate(command):
        command = click.option(
            "--inversion-steps",
            type=click.IntRange(min=3),
            default=None,
            help="Optimisation steps for --inversion optimize (default 300: 200 in W, 100 in W+).",
        )(command)
        command = click.option(
            "--inversion",
            type=click.Choice(choices),
            default="e4e",
            show_default=True,
            help="How faces become W+ codes: e4e (needs its weights) or optimize (StyleGAN2 file only).",
        )(command)
        command = click.option(
            "--aligned", is_flag=True, help="Inputs are already FFHQ-aligned face crops: skip detection."
        )(command)
        return _max_pixels_option(command)

    return decorate


def _pipeline(base, e4e, device, max_pixels):
    from jojogan.api import JoJoGAN
    from jojogan.op.memory import cpu_memory_reuse

    pipe = JoJoGAN.from_pretrained(base=base, e4e=e4e, device=device)
    pipe.max_pixels = max_pixels
    # a command is one job: freed CPU memory stays mapped across all of its inputs (jojogan.op.memory)
    click.get_current_context().with_resource(cpu_memory_reuse(pipe.device))
    return pipe


def _parse_alpha(text: str):
    """``0.7`` or a comma-separated list with one value per style layer."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as error:
        raise click.BadParameter(
            f"alpha must be a number or comma-separated numbers, got {text!r}"
        ) from error
    if any(not 0.0 <= v <= 1.0 for v in values):
        raise click.BadParameter(f"alpha values must lie in [0, 1], got {text!r}")
    return values[0] if len(values) == 1 else values


def _face_choice(text: str) -> str | int:
    if text in ("largest", "all"):
        return text
    try:
        return int(text)
    except ValueError as error:
        raise click.BadParameter(f"--face takes largest, all or an index, got {text!r}") from error


# ---------------------------------------------------------------------------------------------- align
@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder."
)
@click.option("--size", default=1024, show_default=True, type=click.IntRange(min=16), help="Crop size in px.")
@click.option("--face", default="largest", show_default=True, help="largest, all, or an index from the left.")
@click.option("--supersample", is_flag=True, help="Higher-quality FFHQ transform (slower).")
@_max_pixels_option
@_user_errors
def align(inputs, output, size, face, supersample, max_pixels):
    """FFHQ-align faces (dlib 68 landmarks), as StyleGAN2 and JoJoGAN expect.

    \b
    Example:
        jojogan align photo.jpg group.png -o aligned/ --face all
    """
    from jojogan.imaging import save_image
    from jojogan.inversion.align import align_face, align_faces

    face = _face_choice(face)
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


# ---------------------------------------------------------------------------------------------- invert
@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@_output_file_option("codes.safetensors or codes.pt (W+ [n, n_latent, style_dim]).")
@_inversion_options(("e4e", "optimize"))
@_base_options
@_user_errors
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

    if output.suffix not in (".safetensors", ".pt"):
        raise click.UsageError("--output must end in .safetensors or .pt")
    pipe = _pipeline(base, e4e, device, max_pixels)
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


# ---------------------------------------------------------------------------------------------- finetune
@cli.command()
@click.argument("references", nargs=-1, required=True, type=click.Path(path_type=Path))
@_output_file_option("Style file to write (.safetensors).")
@_inversion_options(("e4e", "optimize", "mean"))
@click.option("--iterations", default=300, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--preset",
    type=click.Choice(["default", "preserve-color"]),
    default="default",
    show_default=True,
    help="Which style layers are mixed with random codes (the original's two settings).",
)
@click.option(
    "--mix-strength",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="How far mixed layers move to the random codes (1 = replace).",
)
@click.option(
    "--identity-weight",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Identity-preservation loss weight (needs a face-recognition network).",
)
@click.option("--lr", default=2e-3, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--checkpoint-every",
    default=25,
    show_default=True,
    type=click.IntRange(min=0),
    help="Save a resumable state every N steps (0: never).",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its saved state.")
@click.option(
    "--preview-every",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Write a preview image every N steps into OUTPUT's .previews folder.",
)
@click.option(
    "--micro-batch",
    default=None,
    type=click.IntRange(min=1),
    help="References per forward pass (gradients accumulate: same result, less memory). "
    "Default: 1 on the CPU; on a GPU all, halved whenever a step runs out of memory.",
)
@_base_options
@_user_errors
def finetune(
    references,
    output,
    max_pixels,
    aligned,
    inversion,
    inversion_steps,
    iterations,
    preset,
    mix_strength,
    identity_weight,
    lr,
    seed,
    checkpoint_every,
    resume,
    preview_every,
    micro_batch,
    base,
    e4e,
    device,
):
    """Fine-tune StyleGAN2 on one or more stylized reference faces (JoJoGAN).

    \b
    Examples:
        jojogan finetune ref.png --base stylegan2-ffhq-config-f.pt -o mystyle.safetensors
        jojogan finetune art1.png art2.png --inversion optimize --preset preserve-color -o art.safetensors
    """
    from jojogan.config import FinetuneConfig
    from jojogan.finetune import FinetuneDivergedError
    from jojogan.imaging import save_image, to_pil
    from jojogan.style_file import save_style

    if output.suffix != ".safetensors":
        raise click.UsageError("--output must end in .safetensors")
    if identity_weight > 0:
        raise click.UsageError(
            "--identity-weight needs a face-recognition network; the Python API takes one "
            "(JoJoGAN.finetune(identity_net=...)), the command line will once ArcFace weights are supported"
        )
    config = FinetuneConfig(
        iterations=iterations,
        lr=lr,
        mask=preset,
        mix_strength=mix_strength,
        seed=seed,
        checkpoint_every=checkpoint_every,
        preview_every=preview_every,
        micro_batch=micro_batch,
    )
    state_path = output.with_name(output.name + ".resume.pt")
    if resume and not state_path.is_file():
        raise click.UsageError(f"--resume: no saved state at {state_path}")
    previews = output.with_name(output.name + ".previews")

    def on_step(step, loss, preview):
        if preview is not None:
            save_image(to_pil(preview[0]), previews / f"step_{step:05d}.png")

    pipe = _pipeline(base, e4e, device, max_pixels)
    try:
        run = pipe.finetune(
            references,
            config,
            inversion=inversion,
            inversion_steps=inversion_steps,
            aligned=aligned,
            callback=on_step,
            checkpoint_path=state_path if checkpoint_every else None,
            resume=resume,
        )
    except FinetuneDivergedError as error:
        from jojogan.stylegan2.checkpoint import generator_from_state

        rescue = output.with_name(output.stem + ".last-good.safetensors")
        save_style(rescue, generator_from_state(error.last_good_state), {"diverged_at_step": error.step})
        raise click.ClickException(f"{error} The last good weights were saved to {rescue}.") from error
    except KeyboardInterrupt:
        hint = (
            f"progress up to the last checkpoint is in {state_path}; rerun the same command with --resume"
            if state_path.is_file()
            else "no checkpoint was saved yet"
        )
        click.echo(f"\ninterrupted: {hint}", err=True)
        sys.exit(130)
    path = run.save(output)
    state_path.unlink(missing_ok=True)
    click.echo(f"style -> {path} (final loss {run.losses[-1]:.4f} after {len(run.losses)} steps)")


# ---------------------------------------------------------------------------------------------- stylize
@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--style",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Style file: ours (.safetensors) or an official JoJoGAN .pt.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Image file for one input; a folder for several.",
)
@click.option(
    "--alpha",
    default="1.0",
    show_default=True,
    help="Style strength in [0, 1], or one comma-separated value per style layer.",
)
@click.option("--face", default="largest", show_default=True, help="largest, or an index from the left.")
@click.option("--paste", is_flag=True, help="Paste the stylized face back into the photo.")
@_inversion_options(("e4e", "optimize"))
@_base_options
@_user_errors
def stylize(
    inputs,
    style,
    output,
    alpha,
    face,
    paste,
    max_pixels,
    aligned,
    inversion,
    inversion_steps,
    base,
    e4e,
    device,
):
    """Stylize photos with a fine-tuned style.

    \b
    Examples:
        jojogan stylize photo.jpg --style mystyle.safetensors --alpha 0.7 -o out.png
        jojogan stylize *.jpg --style arcane_caitlyn.pt --paste -o styled/
    """
    from jojogan.imaging import save_image

    alpha = _parse_alpha(alpha)
    face = _face_choice(face)
    if face == "all":
        raise click.BadParameter("stylize takes one face per photo: largest or an index", param_hint="--face")
    several = len(inputs) > 1
    if several and output.suffix:
        raise click.UsageError("with several inputs --output is a folder (no file suffix)")
    pipe = _pipeline(base, e4e, device, max_pixels)
    pipe.load_style(style)
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
            )
        except JojoganError as error:
            if not several:
                raise
            click.echo(f"error: {error}", err=True)
            failures += 1
            continue
        target = output / f"{Path(path).stem}_styled.png" if several else output
        save_image(result.pasted if paste else result.image, target)
        click.echo(f"{path} -> {target}")
    if failures:
        raise click.ClickException(f"{failures} of {len(inputs)} inputs failed")


# ---------------------------------------------------------------------------------------------- slider
@cli.command()
@click.argument("input_image", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--style", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--steps", default=5, show_default=True, type=click.IntRange(min=2), help="Number of α values.")
@_output_file_option("Labelled strip (PNG).")
@click.option(
    "--gif", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also an animated GIF."
)
@click.option("--tile", default=256, show_default=True, type=click.IntRange(min=32), help="Tile size in px.")
@_inversion_options(("e4e", "optimize"))
@_base_options
@_user_errors
def slider(
    input_image,
    style,
    steps,
    output,
    gif,
    tile,
    max_pixels,
    aligned,
    inversion,
    inversion_steps,
    base,
    e4e,
    device,
):
    """The alpha slider: one face from original (α = 0) to fully stylized (α = 1).

    \b
    Example:
        jojogan slider photo.jpg --style mystyle.safetensors --steps 6 -o strip.png --gif slider.gif
    """
    from jojogan.imaging import labelled_strip, save_gif, save_image

    pipe = _pipeline(base, e4e, device, max_pixels)
    pipe.load_style(style)
    face = pipe.prepare(input_image, inversion, aligned=aligned, steps=inversion_steps)
    frames = pipe.slider(face, style, steps)
    strip = labelled_strip([img for _, img in frames], [f"alpha {a:.2f}" for a, _ in frames], tile=tile)
    click.echo(f"strip -> {save_image(strip, output)}")
    if gif is not None:
        resized = [img.resize((tile, tile)) for _, img in frames]
        click.echo(f"gif -> {save_gif(resized, gif)}")


# ---------------------------------------------------------------------------------------------- sample
@cli.command()
@click.option("--style", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-n", "count", default=4, show_default=True, type=click.IntRange(min=1), help="Number of faces."
)
@click.option("--truncation", default=0.7, show_default=True, type=click.FloatRange(0, 1))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--alpha", default="1.0", show_default=True, help="Style strength (see stylize).")
@click.option("--tile", default=256, show_default=True, type=click.IntRange(min=32))
@_output_file_option()
@_base_options
@_user_errors
def sample(style, count, truncation, seed, alpha, tile, output, base, e4e, device):
    """Random faces (top row) and the same faces in the style (bottom row).

    \b
    Example:
        jojogan sample --style mystyle.safetensors -n 6 --seed 3 -o grid.png
    """
    from jojogan.imaging import image_grid, save_image

    pipe = _pipeline(base, e4e, device, None)
    originals, styled = pipe.sample(style, count, truncation=truncation, seed=seed, alpha=_parse_alpha(alpha))
    click.echo(f"grid -> {save_image(image_grid([originals, styled], tile=tile), output)}")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="jojogan")
