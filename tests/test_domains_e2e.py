"""A domain that is not a face, end to end on a real cat photo: NVIDIA's pickle → convert → finetune →
stylize → sample, through the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from safetensors import safe_open

from jojogan.cli import main as cli
from jojogan.weights import file_sha256

from conftest import shared_path

FAST = ["--inversion-steps", "6"]
NOT_A_FACE = ["--aligner", "center-crop"]  # the generic domain: centred square, optimisation, no identity


def run(args, home):
    result = CliRunner().invoke(cli, [str(a) for a in args], env={"JOJOGAN_HOME": str(home)})
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def cat_style(tmp_path_factory):
    root = tmp_path_factory.mktemp("cat")
    source = shared_path("fixtures", "nvidia", "sg2ada_tiny64.pkl")
    photo = shared_path("images", "domains", "chelsea_cat.png")
    base = root / "tiny64.safetensors"
    run(["convert", source, "-o", base], root / "home")
    style = root / "cat.safetensors"
    run(
        ["finetune", photo, *NOT_A_FACE, *FAST, "--iterations", "3", "--base", base, "-o", style],
        root / "home",
    )
    return root, base, style, photo


def test_a_cat_fine_tunes_from_a_converted_nvidia_model(cat_style):
    root, base, style, _ = cat_style
    with safe_open(str(style), framework="pt") as handle:
        metadata = json.loads(handle.metadata()["jojogan"])
    assert metadata["generator"]["conv_clamp"] == 256 and metadata["generator"]["n_mlp"] == 2
    assert metadata["base_checkpoint"]["sha256"] == file_sha256(base)
    assert len(metadata["losses"]) == 3


def test_a_cat_stylizes_and_samples(cat_style):
    root, base, style, photo = cat_style
    outputs = {}
    for alpha in ("0", "1"):
        out = root / f"alpha{alpha}.png"
        common = [*NOT_A_FACE, *FAST, "--base", base, "--style", style]
        result = run(["stylize", photo, *common, "--alpha", alpha, "-o", out, "--force"], root / "home")
        assert "identity" not in result.output  # no face: no identity figure
        outputs[alpha] = np.asarray(Image.open(out), dtype=np.float32)
    assert outputs["0"].shape == outputs["1"].shape == (64, 64, 3)
    assert np.abs(outputs["0"] - outputs["1"]).mean() > 1.0  # the style changed the cat
    grid = root / "grid.png"
    run(["sample", "--style", style, "--base", base, "-n", "2", "--tile", "64", "-o", grid], root / "home")
    assert Image.open(grid).size[0] >= 128


def test_a_stylized_cat_goes_back_into_its_photo(cat_style):
    """Paste-back of a centre crop: the photo's size, the sides outside the square untouched."""
    root, base, style, photo = cat_style
    out = root / "pasted.png"
    common = [*NOT_A_FACE, *FAST, "--base", base, "--style", style, "--paste", "-o", out]
    run(["stylize", photo, *common], root / "home")
    pasted = np.asarray(Image.open(out).convert("RGB"), dtype=int)
    original = np.asarray(Image.open(photo).convert("RGB"), dtype=int)
    assert pasted.shape == original.shape  # 451 x 300: the centred square is 300 x 300 from x = 75
    assert np.array_equal(pasted[:, :70], original[:, :70]) and np.array_equal(
        pasted[:, 381:], original[:, 381:]
    )
    assert np.abs(pasted[100:200, 175:275] - original[100:200, 175:275]).mean() > 1.0


def test_face_only_options_are_refused_for_a_cat(cat_style):
    root, base, style, photo = cat_style
    common = ["stylize", photo, *NOT_A_FACE, *FAST, "--base", base, "--style", style, "-o", root / "x.png"]
    for extra, words in ((["--face", "1"], "face selection"),):
        result = CliRunner().invoke(
            cli, [str(a) for a in common + extra], env={"JOJOGAN_HOME": str(root / "home")}
        )
        assert result.exit_code != 0 and words in result.output, result.output
    assert not (root / "x.png").exists()
    tune = [
        "finetune",
        photo,
        *NOT_A_FACE,
        "--base",
        base,
        "--identity-weight",
        "1",
        "-o",
        root / "y.safetensors",
    ]
    result = CliRunner().invoke(cli, [str(a) for a in tune], env={"JOJOGAN_HOME": str(root / "home")})
    assert result.exit_code != 0 and "identity loss applies to faces" in result.output, result.output
