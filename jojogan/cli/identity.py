"""``jojogan identity A B``: are two faces the same person, as a click command the main CLI registers.

A thin layer over :func:`jojogan.identity.compare_faces`; the shared options ``--identity-net`` and
``--identity-weights`` are exposed as :func:`identity_net_options` so that ``finetune``, ``stylize`` and
``slider`` can take the same ones.
"""

from __future__ import annotations

import click

from jojogan.identity.registry import DEFAULT_METRIC_NETWORK, RECOGNIZERS

__all__ = ["identity", "identity_net_options"]


def identity_net_options(default: str = DEFAULT_METRIC_NETWORK):
    """``--identity-net NAME|PATH`` and ``--identity-weights PATH`` for any command."""

    def decorate(command):
        command = click.option(
            "--identity-weights",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="Weights file of the identity network (else the weights cache is used).",
        )(command)
        return click.option(
            "--identity-net",
            default=default,
            show_default=True,
            help=f"Face-recognition network: one of {', '.join(RECOGNIZERS)}, or a weights file.",
        )(command)

    return decorate


def _device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """The devices every command accepts (checked while parsing; imported late: the CLI imports us)."""
    from jojogan.api import pick_device
    from jojogan.cli._options import Device

    return str(pick_device(Device().convert(value, param, ctx)))


@click.command()
@click.argument("image_a", type=click.Path(exists=True, dir_okay=False))
@click.argument("image_b", type=click.Path(exists=True, dir_okay=False))
@identity_net_options()
@click.option("--aligned", is_flag=True, help="Both images are already aligned face crops: skip detection.")
@click.option(
    "--device", default="cpu", show_default=True, callback=_device,
    help="Where the network runs (cpu, cuda, ...).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def identity(image_a, image_b, identity_net, identity_weights, aligned, device, as_json):
    """Say whether the faces in IMAGE_A and IMAGE_B are the same person, with the network's raw score.

    Each photo is FFHQ-aligned first (the largest face), unless --aligned. The verdict follows the
    network's published rule (dlib: descriptors closer than 0.6; the others: a cosine threshold), which is
    printed with its score; --json prints network, similarity, threshold, same_person, metric and source.

    \b
    Examples:
      jojogan identity photo.jpg stylized.png
      jojogan identity a.png b.png --aligned --identity-net mobilefacenet --identity-weights mobilefacenet.pt
    """
    from jojogan.identity import compare_faces, load_face_recognizer

    recognizer = load_face_recognizer(identity_net, identity_weights, device)
    score = compare_faces(image_a, image_b, recognizer, aligned=aligned)
    click.echo(score.to_json() if as_json else score.line())
