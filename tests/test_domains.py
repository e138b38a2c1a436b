"""Domain profiles of NVIDIA's models: rows, how a base finds its profile, the car's letterboxed picture."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file

import jojogan
from jojogan.cli import main as cli
from jojogan.domains import PROFILES, profile_for
from jojogan.errors import CheckpointError
from jojogan.hub import base_profile
from jojogan.inversion.align import align_picture
from jojogan.stylegan2 import load_checkpoint
from jojogan.stylegan2.checkpoint import MODEL_CONFIG_KEY
from jojogan.weights import REGISTRY

from factories import tiny_generator
from nvidia_records import build_networks, dumps

EXPECTED = {  # profile: (resolution, aligner, encoder, identity, paste, picture)
    "ffhq": (1024, "ffhq-dlib", "e4e", True, True, None),
    "ffhq-512": (512, "ffhq-dlib", "optimize", True, True, None),
    "ffhq-256": (256, "ffhq-dlib", "optimize", True, True, None),
    "metfaces": (1024, "ffhq-dlib", "optimize", True, True, None),
    "afhq-cat": (512, "center-crop", "optimize", False, True, None),
    "afhq-dog": (512, "center-crop", "optimize", False, True, None),
    "afhq-wild": (512, "center-crop", "optimize", False, True, None),
    "lsun-church": (256, "center-crop", "optimize", False, True, None),
    "lsun-horse": (256, "center-crop", "optimize", False, True, None),
    "lsun-cat": (256, "center-crop", "optimize", False, True, None),
    "lsun-car": (512, "center-crop", "optimize", False, False, (512, 384)),  # bars: no paste
}


def test_profiles_of_nvidia_models_and_their_registry_rows():
    for name, expected in EXPECTED.items():
        p = profile_for(name)
        assert (p.resolution, p.aligner, p.encoder, p.identity, p.paste, p.picture) == expected, name
        assert REGISTRY[name].profile == name  # the base-weights row of the same name points at it
    rows = [row for row in REGISTRY.values() if row.profile is not None]
    assert all(row.profile in PROFILES for row in rows)


def test_how_a_base_finds_its_profile(tmp_path):
    unknown = tmp_path / "mine.safetensors"
    assert base_profile(tmp_path / "afhqcat.pkl", None).name == "afhq-cat"  # its registry row
    assert base_profile(unknown, None, recorded="lsun-church").name == "lsun-church"  # what it records
    assert base_profile(unknown, "metfaces", recorded="lsun-church").name == "metfaces"  # named wins
    assert base_profile(unknown, None).name == "ffhq"
    generic = base_profile(unknown, None, aligner="center-crop")
    assert (generic.name, generic.aligner, generic.identity) == ("generic", "center-crop", False)
    cropped_faces = base_profile(unknown, "ffhq-512", aligner="center-crop")
    assert (cropped_faces.aligner, cropped_faces.identity, cropped_faces.paste) == (
        "center-crop",
        False,
        True,  # the whole crop goes back into the photo
    )
    assert base_profile(unknown, "ffhq", aligner="none").paste is False  # no transform back to a photo
    with pytest.raises(jojogan.JojoganError, match="unknown domain"):
        base_profile(unknown, "mars")


def test_a_converted_file_records_its_domain(tmp_path, monkeypatch):
    monkeypatch.setenv("JOJOGAN_HOME", str(tmp_path / "home"))
    source = tmp_path / "mycats.pkl"
    source.write_bytes(dumps(build_networks(size=16)))
    out = tmp_path / "mycats.safetensors"
    runner = CliRunner()
    result = runner.invoke(cli, ["convert", str(source), "--domain", "afhq-cat", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out).profile == "afhq-cat"
    pipe = jojogan.JoJoGAN.from_pretrained(base=out)
    assert pipe.profile.name == "afhq-cat"
    # a pickle named like a registry row's file records that row's domain when --base converts it
    named = tmp_path / "stylegan2-church-config-f.pkl"
    named.write_bytes(source.read_bytes())
    assert jojogan.JoJoGAN.from_pretrained(base=named).profile.name == "lsun-church"


def test_a_recorded_domain_is_parsed_not_trusted(tmp_path):
    path = tmp_path / "odd.safetensors"
    gen_state = {f"g_ema.{k}": v.contiguous() for k, v in tiny_generator(16).state_dict().items()}
    config = {"format_version": 1, "source": {"profile": "../../etc/passwd"}}
    save_file(gen_state, str(path), metadata={MODEL_CONFIG_KEY: json.dumps(config)})
    with pytest.raises(CheckpointError, match="is not a name"):
        load_checkpoint(path)


def test_the_car_picture_is_letterboxed_into_the_square(tmp_path):
    photo = tmp_path / "wide.png"
    pixels = np.full((300, 600, 3), 200, np.uint8)
    pixels[:, 100:500] = (10, 120, 240)  # the centred 400x300 box, the 4:3 the car model draws
    Image.fromarray(pixels).save(photo)
    frame = align_picture(photo, 64, picture=(64, 48))
    image = np.asarray(frame.image, dtype=np.int32)
    assert image.shape == (64, 64, 3)
    assert image[:8].max() == 0 and image[56:].max() == 0  # black bars above and below
    assert np.abs(image[10:54, 2:62] - (10, 120, 240)).max() <= 2  # the box fills the picture
    centre = frame.aligned_to_photo(np.array([[32.0, 32.0]]))[0]
    np.testing.assert_allclose(centre, (300, 150), atol=1e-6)
    np.testing.assert_allclose(frame.aligned_to_photo(np.array([[0.0, 8.0]]))[0], (100, 0), atol=1e-6)
    square = align_picture(photo, 64)
    assert square.image.size == (64, 64) and np.asarray(square.image)[:8].max() > 0
