"""The rooms of the pipeline: one StylizeConfig, the encoder and cleaner tables, domain profiles, and every
face of a group photo. Tiny checkpoint, real stages."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from jojogan.api import JoJoGAN
from jojogan.cleanup import CLEANERS, Cleaner
from jojogan.cli import main as cli
from jojogan.config import StylizeConfig
from jojogan.domains import PROFILES
from jojogan.imaging import to_pil
from jojogan.style_file import save_style

from factories import group_photo, tiny_discriminator, tiny_generator

SIZE = 64
"""The tiny models' size: what these tests check (one config, the tables, the profiles, every face of a
group) is the same at any size, and a 64 px inversion costs a third of a 128 px one."""
FAST = {"inversion": "optimize", "inversion_steps": 3}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("seams")
    gen, disc = tiny_generator(SIZE, seed=3), tiny_discriminator(SIZE, seed=4)
    torch.save({"g_ema": gen.state_dict(), "d": disc.state_dict()}, root / "base.pt")
    save_style(root / "style.safetensors", tiny_generator(SIZE, seed=8), {})
    return root


@pytest.fixture(scope="module")
def group(tiny, shared_path_module):
    """The two shared portraits side by side: one photo with two faces, 480 px high (each face is detected
    three times here; at this height both are still larger than the 64 px crops)."""
    return group_photo(shared_path_module("images", "jojogan", "test_input"), tiny / "group.png", height=480)


@pytest.fixture(scope="module")
def shared_path_module():
    from conftest import shared_path

    return shared_path


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"paste": True, "aligned": True}, "paste needs the photo's alignment"),
        ({"match_colour": True}, "match_colour applies to pasted results"),
        ({"cleanup": "gfpgan"}, "cleanup must be None or one of codeformer"),
        ({"inversion": "psp"}, "inversion must be one of e4e, optimize"),
        ({"face": "biggest"}, "face must be"),
        ({"fidelity": 1.5}, "fidelity must be a number in [0, 1]"),
        ({"alpha": 2.0}, "alpha must be in [0, 1]"),
        ({"inversion_steps": 1}, "inversion_steps must be an integer >= 3"),
    ],
)
def test_stylize_config_refuses_bad_settings_once_with_their_reason(settings, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        StylizeConfig(**settings)


def test_keyword_overrides_and_a_config_are_the_same_call(tiny):
    pipe = JoJoGAN.from_pretrained(base=tiny / "base.pt")
    face = to_pil(torch.rand(3, SIZE, SIZE) * 2 - 1)
    by_config = pipe.stylize(face, tiny / "style.safetensors", config=StylizeConfig(aligned=True, **FAST))
    by_keywords = pipe.stylize(face, tiny / "style.safetensors", aligned=True, **FAST)
    assert by_config.image.tobytes() == by_keywords.image.tobytes()
    assert by_config.face.inversion == "optimize"
    with pytest.raises(TypeError):
        pipe.stylize(face, tiny / "style.safetensors", alignd=True)


def test_the_domain_profile_decides_encoder_alignment_identity_and_paste(tiny):
    faces = JoJoGAN.from_pretrained(base=tiny / "base.pt")
    assert faces.profile is PROFILES["ffhq"]  # a file no registry row names: the default domain
    assert faces.settings().inversion == "e4e" and faces.settings(identity="auto").identity == "dlib"
    generic = JoJoGAN.from_pretrained(base=tiny / "base.pt", profile="generic")
    assert generic.settings().inversion == "optimize" and generic.settings(identity="auto").identity is None
    with pytest.raises(ValueError, match="the e4e encoder was trained for ffhq pictures, not generic"):
        generic.settings(inversion="e4e")
    with pytest.raises(ValueError, match="face selection applies to faces, not to generic pictures"):
        generic.settings(face=1)
    # no face detection: the centred square of any picture, here a 3:2 photo without a face
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8))
    crop = generic.align(photo)
    assert crop.landmarks is None and crop.image.size == (SIZE, SIZE)
    assert crop.quad[0].tolist() == [50.0, 0.0]  # the square's top-left corner in the photo
    # another aligner on a face base drops the face-only stages
    cropped = JoJoGAN.from_pretrained(base=tiny / "base.pt", aligner="center-crop")
    assert not cropped.profile.identity and cropped.profile.paste  # the crop itself goes back
    bare = JoJoGAN.from_pretrained(base=tiny / "base.pt", aligner="none")
    with pytest.raises(ValueError, match="paste-back does not apply"):
        bare.settings(paste=True)


def test_a_cleaner_added_to_the_table_is_used_by_name(tiny, monkeypatch):
    class Negative(Cleaner):  # one module + one row: nothing else names it
        name, title, weights = "negative", "Negative", None

        def __init__(self, path, device):
            self.model = torch.nn.Identity()

        def clean(self, faces, fidelity):
            return -faces

    monkeypatch.setitem(CLEANERS, Negative.name, Negative)
    pipe = JoJoGAN.from_pretrained(base=tiny / "base.pt")
    face = to_pil(torch.rand(3, SIZE, SIZE) * 2 - 1)
    plain = pipe.stylize(face, tiny / "style.safetensors", aligned=True, **FAST)
    cleaned = pipe.stylize(face, tiny / "style.safetensors", aligned=True, cleanup="negative", **FAST)
    assert cleaned.cleanup == "negative"
    assert np.abs(np.asarray(plain.image, int) + np.asarray(cleaned.image, int) - 255).max() <= 1


def test_every_face_of_a_group_photo_is_stylized_and_pasted_back(tiny, group):
    pipe = JoJoGAN.from_pretrained(base=tiny / "base.pt")
    results = pipe.stylize_faces(group, tiny / "style.safetensors", paste=True, **FAST)
    assert [r.face.aligned.face_index for r in results] == [0, 1]
    assert all(r.face.aligned.num_faces == 2 for r in results)
    pasted = np.asarray(results[0].pasted, dtype=int)
    assert results[1].pasted is results[0].pasted  # one photo holds every face
    photo = np.asarray(Image.open(group).convert("RGB"), dtype=int)
    for result in results:  # each face's box changed, the corners of the photo did not
        left, top = result.face.aligned.landmarks.min(0).astype(int)
        right, bottom = result.face.aligned.landmarks.max(0).astype(int)
        assert np.abs(pasted[top:bottom, left:right] - photo[top:bottom, left:right]).mean() > 5
    assert np.array_equal(pasted[:5, :5], photo[:5, :5])


def test_stylize_face_all_on_the_command_line(tiny, group, tmp_path):
    common = ["stylize", group, "--style", tiny / "style.safetensors", "--base", tiny / "base.pt"]
    common += ["--inversion", "optimize", "--inversion-steps", "3", "--face", "all"]
    runner = CliRunner()
    one = runner.invoke(cli, [str(a) for a in [*common, "--paste", "-o", tmp_path / "group_styled.png"]])
    assert one.exit_code == 0, one.output
    assert "(2 faces)" in one.output and (tmp_path / "group_styled.png").is_file()
    # each pasted face's own verdict (a tiny random base paints no person)
    verdict = r"face {}: not the same person \(dlib: distance \d\.\d{{3}} ≥ 0\.6\)"
    assert re.search(f"identity: {verdict.format(0)}; {verdict.format(1)}\\)", one.output), one.output
    common.append("--no-identity")
    each = runner.invoke(cli, [str(a) for a in [*common, "-o", tmp_path / "faces"]])
    assert each.exit_code == 0, each.output
    assert sorted(p.name for p in (tmp_path / "faces").iterdir()) == [
        "group_face0_styled.png",
        "group_face1_styled.png",
    ]
    refused = runner.invoke(cli, [str(a) for a in [*common, "-o", tmp_path / "x.png"]])
    assert refused.exit_code == 2 and "one file per face" in refused.output
