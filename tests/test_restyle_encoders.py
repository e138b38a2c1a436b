"""ReStyle in the ENCODERS table: --inversion restyle-psp/restyle-e4e with --restyle-iterations in the
commands, fine-tuning included, the per-domain files, and the settings' rules. A tiny base and tiny ReStyle
files in the official layout, placed in a temporary weights cache under their registry names."""

from __future__ import annotations

import dataclasses
import logging
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

from jojogan import weights
from jojogan.api import JoJoGAN
from jojogan.cli import main as cli
from jojogan.config import StylizeConfig
from jojogan.domains import PROFILES
from jojogan.errors import JojoganError
from jojogan.inversion import load_restyle
from jojogan.inversion.e4e import to_e4e_input
from jojogan.inversion.encoders import ENCODERS, RESTYLE_ITERATIONS, RestyleE4EEncoder, RestylePSPEncoder
from jojogan.style_file import load_style, save_style

from factories import tiny_discriminator, tiny_generator, tiny_restyle_checkpoint

SIZE = 64  # the tiny base: W+ [10, 16], as the tiny ReStyle files predict


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("restyle_cli")
    torch.save(
        {
            "g_ema": tiny_generator(SIZE, seed=3).state_dict(),
            "d": tiny_discriminator(SIZE, seed=4).state_dict(),
        },
        root / "base.pt",
    )
    save_style(root / "style.safetensors", tiny_generator(SIZE, seed=8), {})
    cache = root / "cache"
    cache.mkdir()
    tiny_restyle_checkpoint(cache / "restyle_psp_ffhq_encode.pt", "BackboneEncoder", size=SIZE, seed=1)
    tiny_restyle_checkpoint(
        cache / "restyle_e4e_ffhq_encode.pt", "ProgressiveBackboneEncoder", size=SIZE, seed=2
    )
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(root / "face.png")
    return root


@pytest.fixture
def cache(files, monkeypatch):
    monkeypatch.setenv("JOJOGAN_HOME", str(files / "cache"))
    return files / "cache"


def _run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def _codes(files, tmp_path, *options):
    out = tmp_path / f"codes{len(list(tmp_path.iterdir()))}.safetensors"
    _run(
        "invert",
        files / "face.png",
        "--aligned",
        "--base",
        files / "base.pt",
        "--device",
        "cpu",
        *options,
        "-o",
        out,
    )
    crop = Image.open(out.with_name(f"{out.stem}_aligned") / "face.png")
    return load_file(str(out))["w_plus"], crop


def test_invert_command_runs_the_chosen_number_of_steps(files, cache, tmp_path):
    codes, crop = _codes(files, tmp_path, "--inversion", "restyle-psp", "--restyle-iterations", "2")
    default, _ = _codes(files, tmp_path, "--inversion", "restyle-psp")
    inverter = load_restyle(cache / "restyle_psp_ffhq_encode.pt")

    # One 5-step run holds every shorter one: step n of it is what ``invert(crop, iterations=n)`` returns
    # (its forward is the last of its steps; test_restyle pins both).
    with torch.no_grad():
        steps = inverter.steps(to_e4e_input(crop, 256)[None], 5)
    expected = {n: steps[n - 1] for n in (1, 2, 5)}

    assert codes.shape == (1, 10, 16)
    torch.testing.assert_close(codes, expected[2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(default, expected[RESTYLE_ITERATIONS.default], rtol=1e-5, atol=1e-5)
    assert (expected[2] - expected[1]).abs().max() > 1e-3  # the option is really honoured


def test_stylize_and_finetune_on_the_command_line(files, cache, tmp_path):
    common = ["--aligned", "--base", files / "base.pt", "--device", "cpu", "--restyle-iterations", "2"]
    result = _run(
        "stylize", files / "face.png", "--style", files / "style.safetensors", "--inversion", "restyle-e4e",
        "--no-identity", *common, "-o", tmp_path / "out.png",
    )  # fmt: skip
    assert Image.open(tmp_path / "out.png").size == (SIZE, SIZE), result.output

    _run(
        "finetune", files / "face.png", "--inversion", "restyle-psp", "--iterations", "2",
        "--save-state-every", "0", *common, "-o", tmp_path / "s.safetensors",
    )  # fmt: skip
    assert load_style(tmp_path / "s.safetensors").metadata["inversion"] == "restyle-psp"


def test_the_setting_travels_in_the_config(files, cache):
    pipe = JoJoGAN.from_pretrained(base=files / "base.pt")
    face = pipe.align(files / "face.png", aligned=True)
    one = pipe.invert(face, inversion="restyle-psp", inversion_options={"iterations": 1})
    three = pipe.invert(face, StylizeConfig(inversion="restyle-psp", inversion_options={"iterations": 3}))
    inverter = load_restyle(cache / "restyle_psp_ffhq_encode.pt")
    torch.testing.assert_close(one, inverter.invert(face.image, 1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(three, inverter.invert(face.image, 3), rtol=1e-5, atol=1e-5)
    # an encoder that does not read the setting ignores it
    assert pipe.settings(inversion="optimize", inversion_options={"iterations": 2}).inversion == "optimize"


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"iterations": 0}, "iterations must be an integer >= 1, got 0"),
        ({"iterations": 2.5}, "iterations must be an integer >= 1"),
        ({"steps": 3}, "inversion_options has no setting 'steps'; the encoders read iterations"),
    ],
)
def test_bad_encoder_settings_are_refused_once(options, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        StylizeConfig(inversion_options=options)


def test_a_default_spelled_out_is_the_same_config():
    """The command line always passes --restyle-iterations; a batch resumed from Python must match it."""
    assert StylizeConfig(inversion_options={"iterations": RESTYLE_ITERATIONS.default}) == StylizeConfig()
    assert StylizeConfig(inversion_options={"iterations": 2}).inversion_options == {"iterations": 2}


def test_bad_iterations_on_the_command_line_is_a_usage_error(files, cache, tmp_path):
    args = [
        "invert",
        files / "face.png",
        "--inversion",
        "restyle-psp",
        "--restyle-iterations",
        "0",
        "-o",
        tmp_path / "c.pt",
    ]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert (
        result.exit_code == 2 and "--restyle-iterations" in result.output and "Traceback" not in result.output
    )


def test_restyle_is_refused_for_a_domain_it_was_not_trained_for(files):
    horses = JoJoGAN.from_pretrained(base=files / "base.pt", profile="lsun-horse")
    with pytest.raises(
        ValueError, match="restyle-psp encoder was trained for ffhq, lsun-car, lsun-church, afhq-wild"
    ):
        horses.settings(inversion="restyle-psp")
    assert horses.settings(inversion="restyle-e4e").inversion == "restyle-e4e"  # the authors trained one


@pytest.mark.parametrize("cls", [RestylePSPEncoder, RestyleE4EEncoder])
def test_every_domain_names_a_file_for_its_generator(cls):
    """Each domain's rows exist, and their W+ fits the profile's generator (2·log2(size) − 2 entries)."""
    assert ENCODERS[cls.name] is cls and cls.domains == tuple(cls.rows)
    for profile, rows in cls.rows.items():
        n_styles = 2 * (PROFILES[profile].resolution.bit_length() - 1) - 2
        for row in rows:
            layout = weights.REGISTRY[row].layout
            assert layout == "as restyle-e4e" or f"'latent_avg': [{n_styles}, 512]" in layout, (profile, row)
        assert cls.weights_for(profile) == rows
    assert cls.weights_for("metfaces") == ()


def test_the_third_party_copy_is_used_when_the_authors_file_is_missing(files, tmp_path, monkeypatch, caplog):
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("JOJOGAN_HOME", str(cache))
    tiny_restyle_checkpoint(cache / "restyle_e4e_ffhq.pt", "ProgressiveBackboneEncoder", size=SIZE, seed=5)
    copy = weights.REGISTRY["restyle-e4e-hf"]  # the tiny stand-in has another size and hash
    monkeypatch.setitem(weights.REGISTRY, copy.name, dataclasses.replace(copy, sha256=None, approx_size=None))
    pipe = JoJoGAN.from_pretrained(base=files / "base.pt")
    with caplog.at_level(logging.WARNING, logger="jojogan"):
        encoder = pipe.encoder("restyle-e4e")
    assert "restyle-e4e is not in the weights cache; using restyle-e4e-hf" in caplog.text
    face = pipe.align(files / "face.png", aligned=True)
    expected = load_restyle(cache / "restyle_e4e_ffhq.pt").invert(face.image, 5)
    torch.testing.assert_close(pipe.invert(face, inversion="restyle-e4e"), expected, rtol=1e-5, atol=1e-5)
    assert encoder is pipe.encoder("restyle-e4e")


def test_a_missing_file_offline_says_how_to_get_it(files, tmp_path, monkeypatch):
    monkeypatch.setenv("JOJOGAN_HOME", str(tmp_path))
    pipe = JoJoGAN.from_pretrained(base=files / "base.pt")
    authors = r"drive\.google\.com.*restyle_psp_ffhq_encode\.pt.*--inversion optimize"
    with pytest.raises(JojoganError, match=authors):
        pipe.encoder("restyle-psp")
    # ReStyle-e4e falls back to the downloadable copy, and still names the authors' file
    copy = r"restyle_e4e_ffhq\.pt.*put restyle_e4e_ffhq_encode\.pt from https://drive\.google\.com"
    with pytest.raises(JojoganError, match=copy):
        pipe.encoder("restyle-e4e")


def test_every_command_that_inverts_offers_the_encoders_settings():
    from jojogan.inversion.encoders import encoder_options

    flags = {option.flag.replace("-", "_") for option in encoder_options().values()}
    inverting = {
        name: {param.name for param in command.params}
        for name, command in cli.commands.items()
        if any(param.name == "inversion" for param in command.params)
    }
    assert {"stylize", "slider", "invert", "finetune", "batch", "video", "ui"} <= set(inverting)
    for name, params in inverting.items():
        assert flags <= params, name
