"""``jojogan convert``: NVIDIA's StyleGAN2 ``.pkl`` to an official-layout checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from jojogan.cli._options import check_inputs_exist, claim_outputs, force_option, output_file_option
from jojogan.domains import PROFILES


@click.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@output_file_option("model.safetensors or model.pt (g_ema, d, latent_avg).", (".safetensors", ".pt"))
@click.option(
    "--domain",
    type=click.Choice(list(PROFILES)),
    default=None,
    help="Record what the model's pictures are (default: the registry row of a file named like MODEL).",
)
@force_option
def convert(model, output, domain, force):
    """Convert NVIDIA's stylegan2-ada-pytorch / stylegan3 (StyleGAN2 config) MODEL.pkl.

    The pickle is read as data: nothing in it is imported or run, and a file that asks to run anything
    else is refused. The result holds the generator (G_ema), the discriminator (D, which fine-tuning
    needs) and the mean latent (w_avg) in the official layout, with the settings that make it load back
    exactly (conv_clamp, mapping depth, ...) and the source's sha256. --base MODEL.pkl converts on its
    own (once, into the weights cache); this command writes the file where you want it.

    \b
    Example:
        jojogan convert afhqcat.pkl -o afhqcat.safetensors
        jojogan convert mycats.pkl --domain afhq-cat -o mycats.safetensors
        jojogan finetune cat.png --base afhqcat.safetensors -o cat-style.safetensors
    """
    from jojogan.convert import convert_network_pickle, describe, save_converted

    check_inputs_exist(model)
    claim_outputs([model], [output], force)
    conversion = convert_network_pickle(model)
    save_converted(conversion, output, source=model, profile=domain)
    click.echo(f"{model} -> {output} ({describe(conversion)})")
