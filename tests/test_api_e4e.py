"""The pipeline's e4e path on official-size models: lazy loading, W+ shape, stylizing from the code."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from jojogan import JoJoGAN, JojoganError
from jojogan.imaging import to_pil
from jojogan.inversion.e4e import Encoder4Editing
from jojogan.style_file import save_style

from factories import tiny_discriminator, tiny_generator


def hollow_state(module: torch.nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """The module's layout with each tensor a small random vector broadcast to its shape (kB on disk)."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for name, value in module.state_dict().items():
        if not value.is_floating_point():
            state[prefix + name] = torch.zeros((), dtype=value.dtype).expand(value.shape)
            continue
        row = torch.randn(value.shape[-1] if value.ndim else 1, generator=gen) * 0.02
        if name.endswith("running_var"):
            row = row.abs() + 1  # variances are positive
        state[prefix + name] = row.expand(value.shape) if value.ndim else row[0]
    return state


@pytest.fixture(scope="module")
def hollow_e4e():
    """The official e4e encoder's hollow state (``encoder.*``), made once: each test saves its own file."""
    with torch.device("meta"):
        encoder = Encoder4Editing()
    return hollow_state(encoder, "encoder.")


@pytest.fixture(scope="module")
def official_shape_base():
    """A generator with the official W+ shape ([18, 512]) and narrow layers (fast), built once; no test
    changes it."""
    return tiny_generator(1024, style_dim=512, n_mlp=8)


def test_e4e_inversion_feeds_stylize(tmp_path, hollow_e4e, official_shape_base):
    e4e_path = tmp_path / "e4e_ffhq_encode.pt"
    torch.save({"state_dict": hollow_e4e, "latent_avg": torch.randn(18, 512), "opts": {}}, e4e_path)
    base = official_shape_base
    base_path = tmp_path / "stylegan2.pt"
    torch.save({"g_ema": base.state_dict(), "d": tiny_discriminator(1024).state_dict()}, base_path)
    style_path = save_style(tmp_path / "style.safetensors", base, {})

    pipe = JoJoGAN.from_pretrained(base=base_path, e4e=e4e_path)
    assert "encoder:e4e" not in pipe.components  # loaded on first use only
    face = pipe.prepare(Image.new("RGB", (1024, 1024), (90, 120, 150)), inversion="e4e", aligned=True)
    assert face.w_plus.shape == (1, 18, 512) and torch.isfinite(face.w_plus).all()
    encoder_module = pipe.components["encoder:e4e"]
    pipe.prepare(Image.new("RGB", (1024, 1024), (10, 20, 30)), inversion="e4e", aligned=True)
    assert pipe.components["encoder:e4e"] is encoder_module  # cached, not reloaded

    styled = pipe.render(face, style_path, alpha=1.0)
    with torch.no_grad():
        expected = to_pil(base.synthesis(face.w_plus)[0])  # the style *is* the base here
    assert styled.tobytes() == expected.tobytes()


def test_non_finite_codes_are_refused(tmp_path, hollow_e4e, official_shape_base):
    state = dict(hollow_e4e)  # the shared state stays intact
    state["encoder.input_layer.1.running_var"] = -torch.ones(64)  # a damaged file: sqrt of a negative
    e4e_path = tmp_path / "damaged.pt"
    torch.save({"state_dict": state, "latent_avg": torch.randn(18, 512)}, e4e_path)
    base_path = tmp_path / "stylegan2.pt"
    torch.save({"g_ema": official_shape_base.state_dict()}, base_path)
    pipe = JoJoGAN.from_pretrained(base=base_path, e4e=e4e_path)
    with pytest.raises(JojoganError, match="NaN or infinite"):
        pipe.prepare(Image.new("RGB", (1024, 1024)), inversion="e4e", aligned=True)


def test_e4e_codes_must_fit_the_base(tmp_path, hollow_e4e):
    e4e_path = tmp_path / "e4e.pt"
    torch.save({"state_dict": hollow_e4e, "latent_avg": torch.randn(18, 512)}, e4e_path)
    small = tiny_generator(128)
    base_path = tmp_path / "tiny.pt"
    torch.save({"g_ema": small.state_dict()}, base_path)
    pipe = JoJoGAN.from_pretrained(base=base_path, e4e=e4e_path)
    face_image = Image.new("RGB", (128, 128), (90, 120, 150))
    try:
        pipe.prepare(face_image, inversion="e4e", aligned=True)
    except JojoganError as error:
        assert "produces W+ codes [18, 512] but the base generator needs [12, 16]" in str(error)
    else:
        raise AssertionError("a 1024 px e4e encoder must not feed a 128 px generator")
