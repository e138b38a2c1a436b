"""The StyleGAN2 checkpoint loader: official layouts in, clear errors for everything else."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from jojogan.errors import CheckpointError
from jojogan.stylegan2 import load_checkpoint

from factories import tiny_discriminator, tiny_generator


@pytest.fixture
def models():
    return tiny_generator(32, seed=1), tiny_discriminator(32, seed=2)


def same_outputs(a, b) -> bool:
    w = torch.randn(2, a.n_latent, a.style_dim)
    with torch.no_grad():
        return torch.equal(a.synthesis(w), b.synthesis(w))


def test_official_layout_round_trip(tmp_path, models):
    gen, disc = models
    path = tmp_path / "ckpt.pt"
    torch.save(
        {"g_ema": gen.state_dict(), "d": disc.state_dict(), "latent_avg": torch.ones(16), "g_optim": {}}, path
    )
    ckpt = load_checkpoint(path)
    assert ckpt.generator.channels == gen.channels and ckpt.generator.n_mlp == 2
    assert same_outputs(ckpt.generator, gen)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ckpt.discriminator(x), disc(x))
    assert torch.equal(ckpt.latent_avg, torch.ones(16))


@pytest.mark.parametrize("layout", ["jojogan-style", "e4e", "bare", "safetensors"])
def test_other_accepted_layouts(tmp_path, models, layout):
    gen, _ = models
    state = gen.state_dict()
    path = tmp_path / ("g.safetensors" if layout == "safetensors" else "g.pt")
    if layout == "jojogan-style":
        torch.save({"g": state}, path)
    elif layout == "e4e":
        decoder = {f"decoder.{k}": v for k, v in state.items()}
        torch.save(
            {"state_dict": {"encoder.x": torch.zeros(1), **decoder}, "latent_avg": torch.zeros(8, 16)}, path
        )
    elif layout == "bare":
        torch.save(state, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    ckpt = load_checkpoint(path)
    assert ckpt.discriminator is None
    assert same_outputs(ckpt.generator, gen)


def test_missing_and_unexpected_keys_are_named(tmp_path, models):
    gen, _ = models
    state = dict(gen.state_dict())
    del state["conv1.conv.weight"]
    state["extra.weight"] = torch.zeros(3)
    path = tmp_path / "bad.pt"
    torch.save({"g_ema": state}, path)
    with pytest.raises(
        CheckpointError, match=r"1 missing \(conv1\.conv\.weight\); 1 unexpected \(extra\.weight\)"
    ):
        load_checkpoint(path)


def test_wrong_shape_is_named(tmp_path, models):
    gen, _ = models
    state = dict(gen.state_dict())
    state["to_rgb1.bias"] = torch.zeros(1, 4, 1, 1)
    path = tmp_path / "bad.pt"
    torch.save({"g_ema": state}, path)
    expected = (
        r"1 with the wrong shape \(to_rgb1\.bias: \[1, 4, 1, 1\] in the file, expected \[1, 3, 1, 1\]\)"
    )
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(path)


def test_nan_weights_rejected(tmp_path, models):
    gen, _ = models
    state = {k: v.clone() for k, v in gen.state_dict().items()}
    state["style.1.bias"][0] = float("nan")
    path = tmp_path / "nan.pt"
    torch.save({"g_ema": state}, path)
    with pytest.raises(CheckpointError, match="NaN or infinite values in style.1.bias"):
        load_checkpoint(path)


class Payload:
    """Stands for arbitrary pickled code; unpickling it must be refused."""


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": Payload()}, path)
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(path)


def test_unreadable_files(tmp_path, models):
    gen, _ = models
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(text)
    good = tmp_path / "good.pt"
    torch.save({"g_ema": gen.state_dict()}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(truncated)
    broken_st = tmp_path / "broken.safetensors"
    broken_st.write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(broken_st)


def test_file_without_a_generator(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(CheckpointError, match="has no StyleGAN2 generator.*model"):
        load_checkpoint(path)
