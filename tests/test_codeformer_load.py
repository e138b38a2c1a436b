"""CodeFormer files and the cleanup stage: strict weights-only loading, clear errors, resizing around 512."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from test_codeformer import TINY, seeded

from jojogan.cleanup import (
    MIN_CLEANUP_SIZE,
    CleanupError,
    CodeFormer,
    CodeFormerInputError,
    FaceTooSmallToRestoreError,
    cleanup_face,
    load_codeformer,
    restore_image,
)
from jojogan.errors import CheckpointError, JojoganError


@pytest.fixture
def tiny():
    with torch.random.fork_rng():
        torch.manual_seed(3)
        model = CodeFormer(TINY)
    return seeded(model, 4).requires_grad_(False)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_official_file_structure_loads_strictly(tiny, tmp_path):
    path = tmp_path / "codeformer.pth"
    # The release also stores the training weights and other keys next to params_ema.
    other = {k: torch.zeros_like(v) for k, v in tiny.state_dict().items()}
    torch.save({"params_ema": tiny.state_dict(), "params": other}, path)
    loaded = load_codeformer(path, config=TINY)
    assert _same_weights(loaded, tiny)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    # On the CPU the loaded network is channels-last (faster convolutions): the same function.
    assert loaded.encoder.blocks[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    cl = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(loaded(cl, 0.5), tiny(x, 0.5), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cleanup_face(x, loaded, 0.5), tiny(x, 0.5).clamp(-1, 1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_bare_state_dicts_load(tiny, tmp_path, suffix):
    path = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in tiny.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    assert _same_weights(load_codeformer(path, config=TINY), tiny)


def test_other_layouts_name_the_first_differing_keys(tiny, tmp_path):
    state = dict(tiny.state_dict())
    state["position_embedding"] = state.pop("position_emb")
    state["feat_emb.weight"] = torch.zeros(3, 3)
    state["feat_emb.bias"] = 7
    path = tmp_path / "other.pth"
    torch.save({"params_ema": state}, path)
    with pytest.raises(CheckpointError) as info:
        load_codeformer(path, config=TINY)
    message = str(info.value)
    assert "other.pth is not a CodeFormer checkpoint in the official layout" in message
    assert "missing (1): position_emb" in message
    assert "unexpected (1): position_embedding" in message
    assert (
        "wrong shape (2): feat_emb.weight [3, 3] (expected [32, 16]), feat_emb.bias not a tensor (int)"
        in message
    )


def test_a_stylegan_file_is_not_taken_for_codeformer(tmp_path):
    path = tmp_path / "g.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(4, 4)}}, path)
    with pytest.raises(CheckpointError, match="missing \\(515\\): position_emb, encoder.blocks.0.weight"):
        load_codeformer(path)


class _RunsCode:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_pickled_code_is_refused_not_run(tmp_path, capsys):
    path = tmp_path / "codeformer.pth"
    torch.save({"params_ema": {"position_emb": torch.zeros(1)}, "trap": _RunsCode()}, path)
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_codeformer(path)
    assert "pickled code ran" not in capsys.readouterr().out


def test_missing_file():
    with pytest.raises(CheckpointError, match="not found"):
        load_codeformer("/nonexistent/codeformer.pth")


# --------------------------------------------------------------------------------------- cleanup stage


def test_cleanup_face_resizes_to_the_network_and_back(tiny):
    face = torch.rand(2, 3, 96, 96, dtype=torch.float64) * 2.4 - 1.2  # a little outside [-1, 1]
    out = cleanup_face(face, tiny, fidelity=0.5)
    assert out.shape == face.shape and out.dtype == torch.float64
    assert out.min() >= -1 and out.max() <= 1
    # By hand: clamp, antialiased bicubic to 64, the network, clamp, back to 96, clamp.
    x = F.interpolate(face.float().clamp(-1, 1), size=(64, 64), mode="bicubic", antialias=True)
    restored = tiny(x, 0.5).clamp(-1, 1)
    expected = F.interpolate(restored, size=(96, 96), mode="bicubic", antialias=True).clamp(-1, 1)
    torch.testing.assert_close(out, expected.double(), rtol=0, atol=1e-6)
    # At the network's own size nothing is resampled.
    same = torch.rand(1, 3, 64, 64) * 2 - 1
    assert torch.equal(cleanup_face(same, tiny, 1.0), tiny(same, 1.0).clamp(-1, 1))


def test_cleanup_face_bad_input(tiny):
    too_small = f"48 px across but cleanup needs at least {MIN_CLEANUP_SIZE}"
    with pytest.raises(FaceTooSmallToRestoreError, match=too_small):
        cleanup_face(torch.zeros(1, 3, 48, 48), tiny)
    with pytest.raises(CodeFormerInputError, match=r"square faces \[batch, 3, S, S\], got \[1, 3, 64, 80\]"):
        cleanup_face(torch.zeros(1, 3, 64, 80), tiny)
    with pytest.raises(CodeFormerInputError, match=r"\[0, 1\], got -0.1"):
        cleanup_face(torch.zeros(1, 3, 64, 64), tiny, fidelity=-0.1)
    with pytest.raises(CleanupError, match="contains NaN"):
        cleanup_face(torch.full((1, 3, 64, 64), float("nan")), tiny)
    assert issubclass(FaceTooSmallToRestoreError, JojoganError)
    assert issubclass(CodeFormerInputError, JojoganError)


def test_nan_output_is_reported(tiny):
    with torch.no_grad():
        tiny.generator.blocks[-1].bias.fill_(float("nan"))
    with pytest.raises(CleanupError, match="CodeFormer produced NaN"):
        cleanup_face(torch.zeros(1, 3, 64, 64), tiny)


def test_restore_image_keeps_the_size(tiny):
    image = Image.new("RGB", (80, 80), (200, 120, 90))
    out = restore_image(image, tiny, fidelity=0.7)
    assert out.size == (80, 80) and out.mode == "RGB"
    x = torch.tensor([200, 120, 90], dtype=torch.float32).reshape(1, 3, 1, 1).expand(1, 3, 80, 80) / 127.5 - 1
    expected = ((cleanup_face(x, tiny, 0.7)[0] + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0)
    # 8-bit rounding of the same restoration (the network may round its last bit differently per layout).
    assert (torch.from_numpy(np.array(out)).int() - expected.int()).abs().max() <= 1
    with pytest.raises(CodeFormerInputError, match="square"):
        restore_image(Image.new("RGB", (80, 60)), tiny)


def test_registry_name_reads_the_weights_cache(tiny, tmp_path, monkeypatch):
    from jojogan.fileio import file_sha256
    from jojogan.weights import REGISTRY

    monkeypatch.setenv("JOJOGAN_HOME", str(tmp_path))
    with pytest.raises(CheckpointError, match=r"codeformer.pth .* is not in the weights cache"):
        load_codeformer("codeformer")
    path = tmp_path / "codeformer.pth"
    torch.save({"params_ema": tiny.state_dict()}, path)
    # The cache serves only files whose size and sha256 are the registry's: the real entry refuses this one.
    with pytest.raises(CheckpointError, match="is damaged"):
        load_codeformer(config=TINY)
    entry = dataclasses.replace(REGISTRY["codeformer"], size=path.stat().st_size, sha256=file_sha256(path))
    monkeypatch.setitem(REGISTRY, "codeformer", entry)
    assert _same_weights(load_codeformer(config=TINY), tiny)
    assert "non-commercial" in REGISTRY["codeformer"].licence
