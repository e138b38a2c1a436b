"""The command line end to end on a tiny checkpoint: every stage is real, only the weights are small."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors import safe_open

import jojogan
import jojogan.api
import jojogan.cleanup.checkpoint
import jojogan.finetune
import jojogan.perceptual
from jojogan.cli import main as cli
from jojogan.fileio import file_sha256
from jojogan.style_file import load_style

from conftest import shared_path
from factories import reduced_photo, tiny_base

SIZE = 128
FAST = ["--inversion", "optimize", "--inversion-steps", "3"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny official-layout checkpoint and two 'aligned' faces made by its generator."""
    root = tmp_path_factory.mktemp("cli")
    tiny_base(root, SIZE)
    return root


def run(args, home=None, **kwargs):
    env = {"JOJOGAN_HOME": str(home)} if home is not None else {}
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False, **kwargs)


@pytest.fixture(scope="module")
def style(workdir):
    out = workdir / "style.safetensors"
    result = run(
        [
            "finetune",
            workdir / "face0.png",
            "--aligned",
            *FAST,
            "--base",
            workdir / "base.pt",
            "--iterations",
            "3",
            "-o",
            out,
        ]
    )
    assert result.exit_code == 0, result.output
    return out


def test_finetune_writes_a_style_file_with_provenance(workdir, style):
    with safe_open(str(style), "pt") as handle:
        meta = json.loads(handle.metadata()["jojogan"])
    assert meta["iterations"] == 3 and len(meta["losses"]) == 3
    assert meta["base_checkpoint"] == {"name": "base.pt", "sha256": file_sha256(workdir / "base.pt")}
    assert meta["reference_sha256s"] == [file_sha256(workdir / "face0.png")]
    assert not list(workdir.glob("*.lock"))  # the run's lock lived in the cache, not beside the output
    assert meta["mask"] == list(range(10, 17))  # the default preset at 128 px: W+ 7.. → S layers 10..
    assert meta["inversion"] == "optimize" and meta["format_version"] == 1
    assert not (workdir / "style.safetensors.resume.pt").exists()  # removed after success
    assert load_style(style).generator.size == SIZE


def test_slider_strip_and_gif(workdir, style):
    strip, gif = workdir / "strip.png", workdir / "slider.gif"
    result = run(
        [
            "slider",
            workdir / "face1.png",
            "--style",
            style,
            "--base",
            workdir / "base.pt",
            "--aligned",
            *FAST,
            "--steps",
            "4",
            "--tile",
            "48",
            "-o",
            strip,
            "--gif",
            gif,
        ]
    )
    assert result.exit_code == 0, result.output
    assert Image.open(strip).size == (4 * 48 + 3 * 4, 48 + 24)
    assert Image.open(gif).n_frames == 6  # 4 forward, 2 back
    curve = json.loads((workdir / "strip.png.identity.json").read_text())
    assert curve["network"] == "dlib" and curve["threshold"] == 0.6 and curve["metric"] == "euclidean"
    assert curve["same_person"] == [d < 0.6 for d in curve["similarities"]] and len(curve["alphas"]) == 4
    assert "identity (dlib: same person below distance 0.6) α 0.00:" in result.output


def test_sample_grid(workdir, style):
    grid = workdir / "grid.png"
    result = run(
        ["sample", "--style", style, "--base", workdir / "base.pt", "-n", "3", "--tile", "32", "-o", grid]
    )
    assert result.exit_code == 0, result.output
    assert Image.open(grid).size == (3 * 32 + 2 * 4, 2 * 32 + 4)


def test_invert_saves_codes_and_crops(workdir):
    codes = workdir / "codes.safetensors"
    result = run(
        [
            "invert",
            workdir / "face0.png",
            workdir / "face1.png",
            "--aligned",
            *FAST,
            "--base",
            workdir / "base.pt",
            "-o",
            codes,
        ]
    )
    assert result.exit_code == 0, result.output
    with safe_open(str(codes), "pt") as handle:
        assert handle.get_tensor("w_plus").shape == (2, 12, 16)
        assert json.loads(handle.metadata()["names"]) == ["face0.png", "face1.png"]
    assert sorted(p.name for p in (workdir / "codes_aligned").iterdir()) == ["face0.png", "face1.png"]


def test_interrupted_finetune_resumes_to_the_same_result(workdir, monkeypatch):
    args = [
        "finetune",
        workdir / "face0.png",
        "--aligned",
        *FAST,
        "--base",
        workdir / "base.pt",
        "--iterations",
        "3",
        "--save-state-every",
        "1",
    ]
    straight = workdir / "straight.safetensors"
    assert run([*args, "-o", straight]).exit_code == 0

    stage = jojogan.finetune.finetune

    def interrupted(*a, callback=None, **kw):
        def stop_at_2(step, loss, preview):  # step 1's state is saved; the resumed run does steps 2, 3
            if step == 2:
                raise KeyboardInterrupt

        return stage(*a, callback=stop_at_2, **kw)

    resumed = workdir / "resumed.safetensors"
    monkeypatch.setattr(jojogan.finetune, "finetune", interrupted)
    result = run([*args, "-o", resumed])
    assert result.exit_code == 130
    assert "--resume" in result.output and not resumed.exists()
    monkeypatch.setattr(jojogan.finetune, "finetune", stage)
    result = run([*args, "-o", resumed, "--resume"])
    assert result.exit_code == 0, result.output
    a, b = load_style(straight), load_style(resumed)
    assert a.metadata["losses"] == pytest.approx(b.metadata["losses"], rel=1e-6)
    for key, value in a.generator.state_dict().items():
        torch.testing.assert_close(b.generator.state_dict()[key], value, rtol=1e-6, atol=1e-7)


def test_user_errors_are_one_clean_message(workdir, style, tmp_path):
    gray = tmp_path / "gray.png"
    Image.new("RGB", (300, 300), (128, 128, 128)).save(gray)
    notes = tmp_path / "notes.jpg"
    notes.write_text("not an image")
    base = ["--base", workdir / "base.pt"]
    cases = [
        (["finetune", gray, "-o", tmp_path / "s.safetensors", "--inversion", "optimize"], "home"),
        (
            [
                "stylize",
                gray,
                "--style",
                style,
                *base,
                *FAST,
                "-o",
                tmp_path / "o.png",
            ],
            "gray.png; if it is already an aligned face crop, pass --aligned",
        ),
        (
            [
                "stylize",
                notes,
                "--style",
                style,
                *base,
                *FAST,
                "-o",
                tmp_path / "o.png",
            ],
            "notes.jpg",
        ),
        (
            [
                "stylize",
                workdir / "face0.png",
                "--aligned",
                "--max-pixels",
                "1000",
                "--style",
                style,
                *base,
                *FAST,
                "-o",
                tmp_path / "o.png",
            ],
            "--max-pixels",
        ),
        (
            [
                "stylize",
                workdir / "face0.png",
                "--aligned",
                "--style",
                style,
                *base,
                "-o",
                tmp_path / "o.png",
            ],
            "--inversion optimize",
        ),
    ]
    for args, expected in cases:
        result = run(args, home=tmp_path / "empty-cache")
        if expected == "home":
            expected = "not in the weights cache"
        assert result.exit_code == 1, result.output
        assert result.output.startswith("Error: ") and expected in result.output, result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "s.safetensors").exists()


def test_identity_weight_trains_with_the_chosen_network(workdir, shared, tmp_path):
    net = shared("weights", "mobilefacenet.pt")
    args = ["finetune", workdir / "face0.png", "--aligned", "--base", workdir / "base.pt"]
    args += ["--iterations", "1", "--inversion", "optimize", "--inversion-steps", "3"]
    args += ["--identity-weight", "0.5"]
    # The default loss network's weights are not cached and the tests are offline: one line, nothing written.
    missing = run([*args, "-o", tmp_path / "a.safetensors"], home=tmp_path / "home")
    assert missing.exit_code == 1 and "model_ir_se50.pth" in missing.output, missing.output
    assert len(missing.output.strip().splitlines()) == 1 and not (tmp_path / "a.safetensors").exists()
    chosen = ["--identity-net", "mobilefacenet", "--identity-weights", net]
    ok = run([*args, *chosen, "-o", tmp_path / "b.safetensors"])
    assert ok.exit_code == 0, ok.output
    assert load_style(tmp_path / "b.safetensors").metadata["identity_weight"] == 0.5


def test_api_checkpoint_interval_needs_a_path(workdir):
    pipe = jojogan.api.JoJoGAN.from_pretrained(base=workdir / "base.pt", device="cpu")
    config = jojogan.FinetuneConfig(iterations=1, save_state_every=1)
    with pytest.raises(ValueError, match="save_state_every needs resume_state_path"):
        pipe.finetune([workdir / "face0.png"], config, inversion="optimize", aligned=True)


@pytest.fixture(scope="module")
def photo(workdir):
    """IU's photo at half its width and height (900 x 1079 -> 450 x 539): a quarter of the pixels for each
    command's face detection and paste-back, and her face (269 px) is still larger than every crop here."""
    return reduced_photo(shared_path("images", "jojogan", "test_input", "iu.jpeg"), 2, workdir / "iu.png")


def test_align_and_paste_back_on_a_real_photo(workdir, style, photo, dlib, tmp_path):
    result = run(["align", photo, "--size", "96", "-o", tmp_path / "aligned"])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "aligned" / "iu.png").size == (96, 96)

    pasted = tmp_path / "pasted.png"
    common = ["stylize", photo, "--style", style, "--base", workdir / "base.pt", *FAST, "--paste"]
    result = run([*common, "--no-identity", "-o", pasted])  # nothing here reads the identity score
    assert result.exit_code == 0, result.output
    with Image.open(photo) as original, Image.open(pasted) as out:
        assert out.size == original.size
        difference = np.abs(np.asarray(out, dtype=int) - np.asarray(original.convert("RGB"), dtype=int))
    # the face region changed, the corners of the photo did not
    assert difference.mean() > 1
    assert difference[:20, :20].max() == 0 and difference[-20:, -20:].max() == 0


def test_stylize_cleanup_and_paste_on_a_real_photo(workdir, style, photo, dlib, tmp_path, monkeypatch):
    """stylize --cleanup codeformer --paste end to end: a real photo, the tiny base, a CodeFormer file."""
    from test_codeformer import TINY, seeded

    from jojogan.cleanup import CodeFormer, load_codeformer

    with torch.random.fork_rng():
        torch.manual_seed(5)
        restorer = seeded(CodeFormer(TINY), 6)
    torch.save({"params_ema": restorer.state_dict()}, tmp_path / "codeformer.pth")
    # The released architecture is 94 M parameters; the tests' file has the same structure at a tiny width.
    monkeypatch.setattr(
        jojogan.cleanup.checkpoint, "load_codeformer", functools.partial(load_codeformer, config=TINY)
    )
    common = ["stylize", photo, "--style", style, "--base", workdir / "base.pt", *FAST, "--paste"]
    plain, cleaned = tmp_path / "plain.png", tmp_path / "cleaned.png"
    assert run([*common, "--no-identity", "-o", plain]).exit_code == 0  # the cleaned run's score is read
    args = [
        *common,
        "--cleanup",
        "codeformer",
        "--fidelity",
        "0.5",
        "--codeformer",
        tmp_path / "codeformer.pth",
    ]
    result = run([*args, "-o", cleaned])
    assert result.exit_code == 0, result.output
    assert "CodeFormer: cleaning up (fidelity 0.5)" in result.output and "identity" in result.output
    with Image.open(photo) as original, Image.open(plain) as a, Image.open(cleaned) as b:
        assert b.size == original.size
        assert b.text["jojogan:cleanup"] == "codeformer" and b.text["jojogan:fidelity"] == "0.5"
        identity = json.loads(b.text["jojogan:identity"])
        assert identity["network"] == "dlib" and identity["threshold"] == 0.6 and identity["similarity"] >= 0
        assert identity["same_person"] == (identity["similarity"] < 0.6)
        assert "jojogan:cleanup" not in a.text
        photo_px, plain_px, cleaned_px = (np.asarray(i.convert("RGB"), dtype=int) for i in (original, a, b))
    assert np.abs(cleaned_px - plain_px).mean() > 0.1  # the cleanup changed the face
    assert (cleaned_px[:20, :20] == photo_px[:20, :20]).all()  # far from the face the photo is untouched


class _CountingDistance(torch.nn.Module):
    """A stand-in perceptual distance: mean squared error per image, counting its calls."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, images, targets):
        self.calls += 1
        return (images - targets).pow(2).flatten(1).mean(1)


def test_distance_lpips_drives_optimisation_inversion(workdir, monkeypatch, tmp_path):
    pipe = jojogan.api.JoJoGAN.from_pretrained(base=workdir / "base.pt", device="cpu")
    face = pipe.align(workdir / "face0.png", aligned=True)
    distance = _CountingDistance()
    assert pipe.components.get("lpips", lambda device: distance) is distance  # instead of the VGG download
    w_plus = pipe.invert(face, inversion="optimize", inversion_steps=3, distance="lpips")
    assert distance.calls >= 3 and torch.isfinite(w_plus).all()
    # On the command line it is refused in one line, before any model loads, when LPIPS cannot work here.
    monkeypatch.setattr(jojogan.perceptual, "lpips_available", lambda net="vgg": False)
    args = ["invert", workdir / "face0.png", "--aligned", "--inversion", "optimize", "--distance", "lpips"]
    result = run([*args, "--base", workdir / "base.pt", "-o", tmp_path / "codes.pt"])
    assert result.exit_code == 1 and "jojogan[lpips]" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
