"""Style files: safetensors round trip, metadata, official JoJoGAN import, atomic writes, bad files."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

import jojogan.style_file as style_file
from jojogan.errors import CheckpointError, JojoganError
from jojogan.fileio import file_sha256
from jojogan.style_file import STYLE_FORMAT_VERSION, load_style, save_style, style_metadata

from factories import TINY_STYLE_DIM, tiny_generator


def _finetuned(seed: int = 0):
    gen = tiny_generator(64, seed=seed)
    with torch.no_grad():
        for param in gen.parameters():
            param.add_(0.01 * torch.randn_like(param))
    return gen


def _metadata() -> dict:
    return style_metadata(
        base_name="stylegan2-ffhq-config-f.pt",
        base_sha256="ab" * 32,
        reference_sha256s=["cd" * 32, "ef" * 32],
        losses=[0.5, 0.25],
        run={
            "mask": [10, 11, 12],
            "mix_strength": 0.8,
            "iterations": 300,
            "seed": 3,
            "reference_code": "invert",
        },
    )


def test_round_trip_gives_the_same_generator_and_metadata(tmp_path):
    gen = _finetuned()
    path = save_style(tmp_path / "style.safetensors", gen, _metadata())
    loaded = load_style(path)
    w = torch.randn(2, TINY_STYLE_DIM)
    with torch.no_grad():
        assert torch.equal(loaded.generator.synthesis(gen.to_w_plus(w)), gen.synthesis(gen.to_w_plus(w)))
    for name, value in gen.state_dict().items():
        assert torch.equal(loaded.generator.state_dict()[name], value), name
    meta = loaded.metadata
    assert {k: meta[k] for k in _metadata()} == _metadata()
    assert meta["format_version"] == STYLE_FORMAT_VERSION
    assert meta["generator"] == {
        "size": 64,
        "style_dim": TINY_STYLE_DIM,
        "n_mlp": 2,
        "channels": {"4": 8, "8": 8, "16": 8, "32": 4, "64": 4},
        "lr_mlp": 0.01,
        "blur_kernel": [1, 3, 3, 1],
        "conv_clamp": None,
    }
    assert loaded.generator.config == gen.config
    assert meta["package_version"] and meta["created"].endswith("+00:00")
    assert loaded.path == path


def test_tensors_use_the_official_names_and_include_buffers(tmp_path):
    gen = _finetuned()
    path = save_style(tmp_path / "style.safetensors", gen, {})
    tensors = load_file(str(path))
    assert set(tensors) == set(gen.state_dict())
    assert "noises.noise_0" in tensors and "style.1.weight" in tensors and "to_rgbs.0.conv.weight" in tensors


def test_caller_cannot_override_the_reserved_fields(tmp_path):
    path = save_style(tmp_path / "s.safetensors", _finetuned(), {"format_version": 99, "note": "mine"})
    meta = load_style(path).metadata
    assert meta["format_version"] == STYLE_FORMAT_VERSION and meta["note"] == "mine"


def test_official_jojogan_style_file_is_imported(tmp_path):
    gen = _finetuned(seed=4)
    path = tmp_path / "jojo.pt"
    torch.save({"g": gen.state_dict()}, path)
    loaded = load_style(path)
    assert loaded.metadata["format"] == "jojogan-official"
    assert loaded.metadata["sha256"] == file_sha256(path)
    for name, value in gen.state_dict().items():
        assert torch.equal(loaded.generator.state_dict()[name], value), name


def test_files_in_the_wrong_layout_are_refused(tmp_path):
    gen = _finetuned()
    torch.save({"g_ema": gen.state_dict()}, tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match="expected a .safetensors style file or an official"):
        load_style(tmp_path / "ckpt.pt")
    state = {k: v for k, v in gen.state_dict().items() if k != "conv1.conv.weight"}
    torch.save({"g": state}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match=r"1 missing \(conv1\.conv\.weight\)"):
        load_style(tmp_path / "partial.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_style(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_style(tmp_path / "missing.safetensors")


def test_pickled_code_is_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"g": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_style(tmp_path / "evil.pt")


def test_non_finite_weights_are_rejected(tmp_path):
    gen = _finetuned()
    path = save_style(tmp_path / "style.safetensors", gen, {})
    tensors = load_file(str(path))
    tensors["convs.1.conv.weight"][0, 0, 0, 0, 0] = float("nan")
    with open(path, "rb") as handle:
        header_len = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(header_len))
    save_file(tensors, str(path), metadata=header["__metadata__"])
    with pytest.raises(CheckpointError, match="NaN or infinite values in convs.1.conv.weight"):
        load_style(path)
    with torch.no_grad():
        gen.get_parameter("to_rgb1.conv.weight")[0, 0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite weights in to_rgb1.conv.weight"):
        save_style(tmp_path / "bad.safetensors", gen, {})
    assert not (tmp_path / "bad.safetensors").exists()


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "style.safetensors"
    save_style(path, _finetuned(seed=1), {"note": "old"})
    before = path.read_bytes()

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(style_file.os, "fsync", full_disk)
    with pytest.raises(
        JojoganError, match=r"could not write .*style\.safetensors: no space is left on the device"
    ):
        save_style(path, _finetuned(seed=2), {"note": "new"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["style.safetensors"]
    assert path.read_bytes() == before
    monkeypatch.undo()
    nested = save_style(tmp_path / "new-folder" / "style.safetensors", _finetuned(), {})
    assert nested.is_file()  # missing folders are created, as for every output
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(JojoganError, match="could not write"):
        save_style(blocker / "style.safetensors", _finetuned(), {})


def test_newer_format_versions_and_bad_metadata_are_refused(tmp_path):
    gen = _finetuned()
    tensors = {k: v.contiguous() for k, v in gen.state_dict().items()}
    newer = {"format_version": STYLE_FORMAT_VERSION + 1, "generator": {"size": 64}}
    save_file(tensors, str(tmp_path / "new.safetensors"), metadata={"jojogan": json.dumps(newer)})
    with pytest.raises(CheckpointError, match="upgrade jojogan"):
        load_style(tmp_path / "new.safetensors")
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata={"jojogan": "{not json"})
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_style(tmp_path / "bad.safetensors")
    # A bare state dict in safetensors loads, marked as such.
    save_file(tensors, str(tmp_path / "bare.safetensors"))
    assert load_style(tmp_path / "bare.safetensors").metadata["format"] == "state-dict"


def test_save_validates_its_inputs(tmp_path):
    with pytest.raises(ValueError, match=".safetensors"):
        save_style(tmp_path / "style.pt", _finetuned(), {})
    with pytest.raises(ValueError, match="JSON-serialisable"):
        save_style(tmp_path / "style.safetensors", _finetuned(), {"losses": [float("nan")]})
    with pytest.raises(ValueError, match="JSON-serialisable"):
        save_style(tmp_path / "style.safetensors", _finetuned(), {"tensor": torch.zeros(1)})
    assert list(tmp_path.iterdir()) == []


def test_the_generator_config_travels_with_the_style(tmp_path):
    """A style file records ``generator.config`` and loading builds that generator (lr_mlp and the blur
    kernel cannot be read from the weights' shapes)."""
    from jojogan.stylegan2.model import Generator

    torch.manual_seed(0)
    gen = Generator(
        16, style_dim=8, n_mlp=2, channels={4: 4, 8: 4, 16: 4}, lr_mlp=0.05, blur_kernel=(1, 2, 1)
    )
    loaded = load_style(save_style(tmp_path / "style.safetensors", gen, {})).generator
    assert loaded.config == gen.config and loaded.lr_mlp == 0.05
    z = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(loaded(z), gen(z))


# --------------------------------------------------------------------------- issue 23: a schema, not trust
def _tampered(tmp_path, change) -> tuple:
    """A real style file whose metadata (the parsed object) ``change`` edits, or whose JSON text it
    replaces when it returns a string; returns (path, tensors)."""
    source = save_style(tmp_path / "good.safetensors", _finetuned(), _metadata())
    with _open(source) as handle:
        meta = json.loads(handle.metadata()["jojogan"])
    tensors = load_file(source)
    text = change(meta, tensors)
    path = tmp_path / "tampered.safetensors"
    save_file(tensors, str(path), metadata={"jojogan": text if isinstance(text, str) else json.dumps(meta)})
    return path, tensors


def _open(path):
    from safetensors import safe_open

    return safe_open(str(path), framework="pt")


def _set_generator(key, value):
    def change(meta, tensors):
        meta["generator"][key] = value

    return change


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda m, t: json.dumps(m).replace('"lr_mlp": 0.01', '"lr_mlp": NaN'), "NaN is not a finite number"),
        (_set_generator("lr_mlp", 1e308), "generator.lr_mlp = 1e+308; expected a finite number in (0, 1]"),
        (_set_generator("lr_mlp", "abc"), 'generator.lr_mlp = "abc"'),
        (_set_generator("lr_mlp", [1]), "generator.lr_mlp = [1]"),
        (_set_generator("size", 100), "generator.size = 100; expected a power of two"),
        (_set_generator("channels", [1]), "generator.channels = [1]"),
        (lambda m, t: m.update(generator="abc"), "has no generator configuration"),
        (lambda m, t: m.update(losses=[0.1, "abc"]), "losses is"),
        (lambda m, t: m.update(base_checkpoint=[1]), "base_checkpoint is [1]"),
        (lambda m, t: '"abc"', 'not a JSON object (got "abc")'),
        (lambda m, t: "[1]", "not a JSON object (got [1])"),
        (lambda m, t: "[" * 100_000 + "]" * 100_000, "nested more than 32 levels deep"),
        (lambda m, t: t.update({"convs.0.conv.weight": t["convs.0.conv.weight"].to(torch.int64)}), "I64"),
    ],
    ids=[
        "lr_mlp-nan",
        "lr_mlp-1e308",
        "lr_mlp-abc",
        "lr_mlp-list",
        "size",
        "channels",
        "generator-abc",
        "losses",
        "base",
        "abc",
        "list",
        "deep",
        "int64",
    ],
)
def test_metadata_and_dtypes_are_checked_before_anything_is_built(tmp_path, monkeypatch, change, expected):
    path, _ = _tampered(tmp_path, change)

    def never(*args, **kwargs):
        raise AssertionError("a generator was built from metadata that was not checked")

    monkeypatch.setattr(style_file, "generator_from_state", never)
    with pytest.raises(CheckpointError) as refused:
        load_style(path)
    message = str(refused.value)
    assert expected in message and "tampered.safetensors" in message and "\n" not in message, message


def test_an_official_style_with_integer_weights_is_refused(tmp_path):
    state = {k: v.clone() for k, v in _finetuned().state_dict().items()}
    state["to_rgb1.conv.weight"] = state["to_rgb1.conv.weight"].to(torch.int64)
    torch.save({"g": state}, tmp_path / "official.pt")
    with pytest.raises(CheckpointError, match="to_rgb1.conv.weight is stored as int64"):
        load_style(tmp_path / "official.pt")
