"""``jojogan finetune``: train a style file from reference faces."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from jojogan.cli._options import (
    SEED,
    FiniteFloat,
    check_inputs_exist,
    claim_outputs,
    config_from_options,
    config_options,
    force_option,
    inversion_options,
    model_options,
    output_file_option,
    pipeline,
    stylize_config,
)
from jojogan.cli.identity import identity_net_options
from jojogan.config import MASK_GROUPS, MASK_PRESETS, REFERENCE_CODES, FinetuneConfig
from jojogan.identity.registry import DEFAULT_LOSS_NETWORK
from jojogan.op.precision import PRECISIONS

# How each FinetuneConfig field appears on the command line; defaults come from the config itself.
FINETUNE_OPTIONS = {
    "iterations": {"type": click.IntRange(min=1)},
    "mask": {
        "flags": ("--preset", "--mask"),
        "type": click.Choice(MASK_PRESETS + MASK_GROUPS),
        "help": "Which style layers are mixed with random codes: the original's two presets, or a group.",
    },
    "mix_strength": {
        "type": FiniteFloat(0, 1),
        "help": "How far mixed layers move to the random codes (1 = replace).",
    },
    "reference_code": {
        "type": click.Choice(REFERENCE_CODES),
        "help": "Train towards the references' inversions, the mean style code (no inversion: for "
        "references too far from photos), or a blend (colour layers from the mean).",
    },
    "identity_weight": {
        "type": FiniteFloat(min=0),
        "help": "Weight of the identity loss (ArcFace-style similarity of original and fine-tuned faces); "
        "0 turns it off. The network is --identity-net.",
    },
    "precision": {
        "type": click.Choice(PRECISIONS),
        "help": "Arithmetic of convolutions and matrix products: auto (TF32 on a GPU, fp32 on the CPU), "
        "fp32, tf32 or bf16.",
    },
    "lr": {"type": FiniteFloat(min=0, min_open=True)},
    "seed": {"type": SEED},
    "save_state_every": {
        "type": click.IntRange(min=0),
        "help": "Save a resume state every N steps (0: never); --resume continues from it.",
    },
    "preview_every": {
        "type": click.IntRange(min=0),
        "help": "Write a preview image every N steps into OUTPUT's .previews folder.",
    },
    "micro_batch": {
        "type": click.IntRange(min=1),
        "help": "References per forward pass (gradients accumulate: same result, less memory). "
        "Default: 1 on the CPU; on a GPU all, halved whenever a step runs out of memory.",
    },
}
CLI_DEFAULTS = {"save_state_every": 25}  # an interrupted command line run should lose little


@click.command()
@click.argument("references", nargs=-1, required=True, type=click.Path(path_type=Path))
@output_file_option("Style file to write.", (".safetensors",))
@inversion_options
@config_options(FinetuneConfig, FINETUNE_OPTIONS, CLI_DEFAULTS)
@identity_net_options(DEFAULT_LOSS_NETWORK)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted run from its resume state (OUTPUT.resume.pt); it must come from the same "
    "references, base, inversion and settings.",
)
@model_options
@force_option
def finetune(references, output, identity_net, identity_weights, resume, models, force, **settings):
    """Fine-tune StyleGAN2 on one or more stylized reference faces (JoJoGAN).

    \b
    Examples:
        jojogan finetune ref.png --base stylegan2-ffhq-config-f.pt -o mystyle.safetensors
        jojogan finetune art1.png art2.png --inversion optimize --preset preserve-color -o art.safetensors
        jojogan finetune ref.png --identity-weight 1 --identity-net mobilefacenet \\
            --identity-weights mobilefacenet.pt -o kept.safetensors

    An output never replaces an input; an existing output is replaced only with --force. While it runs,
    the run keeps a resume state in OUTPUT.resume.pt: --resume continues it, --force starts over and
    replaces it, and without either the command refuses to start. OUTPUT is locked while a run writes
    it (a lock file in the cache's .locks folder, never beside OUTPUT): a second run on the same output
    stops at once.
    """
    config = config_from_options(FinetuneConfig, settings)
    inputs = stylize_config(settings)
    check_inputs_exist(*references, *models.files, identity_weights)
    previews = output.with_name(output.name + ".previews")
    claim_outputs(  # the rescue file of a divergence and the previews follow the same rule as the output
        [*references, *models.files, identity_weights], [output, _rescue_path(output)], force,
        folders=[previews] if config.preview_every else [],
    )  # fmt: skip
    state_path = output.with_name(output.name + ".resume.pt")
    click.get_current_context().with_resource(_output_lock(output))
    state = _resume_state(state_path, resume, force)
    pipe = pipeline(models, inputs.distance)
    loss_net = None
    if pipe.check_finetune(config).identity_weight > 0:
        from jojogan.identity import load_identity_loss_network

        loss_net = load_identity_loss_network(identity_net, identity_weights, pipe.device).embed
    run = _train(pipe, references, config, inputs, output, state_path, state, loss_net)
    path = run.save(output)
    state_path.unlink(missing_ok=True)
    click.echo(f"style -> {path} (final loss {run.losses[-1]:.4f} after {len(run.losses)} steps)")


def _resume_state(state_path: Path, resume: bool, force: bool):
    """The resume state to continue (read before any model loads: an unreadable or unsafe state fails in
    one line, at once), or ``None``; a state left by an earlier run needs --resume or --force."""
    from jojogan.finetune import load_resume_state

    if resume and not state_path.is_file():
        raise click.UsageError(f"--resume: no resume state at {state_path}")
    if not resume and state_path.is_file() and not force:
        raise click.ClickException(
            f"a resume state of an earlier run is at {state_path}: add --resume to continue it, or --force "
            "to start over (the state is then replaced)"
        )
    return load_resume_state(state_path) if resume else None


def _train(pipe, references, config, inputs, output: Path, state_path: Path, state, loss_net):
    """Run the fine-tuning with previews and resume states; a divergence keeps the last good weights,
    an interruption says how to resume."""
    from jojogan.finetune import FinetuneDivergedError
    from jojogan.imaging import save_image, to_pil

    previews = output.with_name(output.name + ".previews")

    def on_step(step, loss, preview):
        if preview is not None:
            save_image(to_pil(preview[0]), previews / f"step_{step:05d}.png")

    try:
        return pipe.finetune(
            references, config, inputs=inputs, callback=on_step, identity_net=loss_net,
            resume_state_path=state_path if config.save_state_every else None,
            resume=state if state is not None else False,
        )  # fmt: skip
    except FinetuneDivergedError as error:
        _save_last_good(error, output)
    except KeyboardInterrupt:
        hint = (
            f"progress up to the last resume state is in {state_path}; rerun the same command with --resume"
            if state_path.is_file()
            else "no resume state was saved yet"
        )
        click.echo(f"\ninterrupted: {hint}", err=True)
        sys.exit(130)


def finetune_lock_path(output: Path) -> Path:
    """The lock of a run writing ``output``: in the cache's ``.locks`` folder (``$JOJOGAN_HOME/.locks``),
    named by a hash of the output's resolved path, so that no run, failed or not, leaves a file beside it
    (the run removes it when it ends)."""
    import hashlib

    from jojogan.op._dispatch import home_dir

    key = hashlib.sha256(str(output.resolve()).encode()).hexdigest()[:24]
    return home_dir() / ".locks" / f"finetune-{key}.lock"


def _output_lock(output: Path):
    """An exclusive lock on ``output`` for the whole run (a second run on it stops at once)."""
    import contextlib

    from filelock import FileLock, Timeout

    lock_path = finetune_lock_path(output)

    @contextlib.contextmanager
    def held():
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(lock_path), timeout=0)
            lock.acquire()
        except Timeout as error:
            raise click.ClickException(
                f"another jojogan finetune is writing {output} (it holds {lock_path}); wait for it to "
                "finish or choose another -o"
            ) from error
        except OSError as error:
            raise click.ClickException(f"cannot lock {lock_path}: {error.strerror or error}") from error
        try:
            yield lock
        finally:
            # The file goes while still held, so the lock folder does not keep one file per output ever
            # trained. A run that opened it meanwhile gets a lock on an unlinked file, which filelock
            # (3.21 and later) discards: that run is refused as if this one still held it.
            with contextlib.suppress(OSError):
                lock_path.unlink()
            lock.release()

    return held()


def _rescue_path(output: Path) -> Path:
    """Where a diverged run keeps its last good weights (claimed with the output before the run)."""
    return output.with_name(output.stem + ".last-good.safetensors")


def _save_last_good(error, output: Path) -> None:
    """Keep the weights from before a divergence beside the output (built from the trained generator's
    configuration: its mapping learning rate and conv_clamp too), then report it."""
    from jojogan.style_file import save_style
    from jojogan.stylegan2.checkpoint import generator_from_state

    rescue = _rescue_path(output)
    last_good = generator_from_state(error.last_good_state, config=error.generator_config)
    save_style(rescue, last_good, {"diverged_at_step": error.step})
    raise click.ClickException(f"{error} The last good weights were saved to {rescue}.") from error
