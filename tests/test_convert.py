"""``jojogan convert`` and ``--base MODEL.pkl``: NVIDIA's pickles become official-layout checkpoints that
load back exactly, once, with their provenance; everything else is one line and no file."""

from __future__ import annotations

import functools
import json
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

import jojogan
import jojogan.convert
from jojogan import weights as manager
from jojogan.cli import main as cli
from jojogan.convert import base_checkpoint_path, convert_network_pickle
from jojogan.errors import CheckpointError
from jojogan.style_file import load_style, save_style
from jojogan.stylegan2 import load_checkpoint
from jojogan.stylegan2.checkpoint import MODEL_CONFIG_KEY
from jojogan.weights import file_sha256

from conftest import shared_path
from nvidia_records import (
    PAYLOAD_NAME,
    build_networks,
    conditional_networks,
    dumps,
    stylegan3_networks,
    tf_dumps,
)

TOLERANCE = 1e-4


def run(args, home):
    return CliRunner().invoke(cli, [str(a) for a in args], env={"JOJOGAN_HOME": str(home)})


def rel_error(actual, expected) -> float:
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-12)).item()


def same_models(ckpt, conversion) -> None:
    """The loaded checkpoint is the conversion: same settings, same outputs to the last bit."""
    gen, disc = conversion.generator(), conversion.discriminator()
    assert ckpt.generator.config == gen.config
    assert ckpt.discriminator.config == disc.config
    assert torch.equal(ckpt.latent_avg, conversion.latent_avg)
    z = torch.randn(4, gen.style_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        img = gen(z)
        assert torch.equal(ckpt.generator(z), img)
        assert torch.equal(ckpt.discriminator(img), disc(img))


@pytest.fixture
def own_pickle(tmp_path):
    """A binding clamp, 8 mapping layers and a stddev group of 8: every setting shapes cannot tell."""
    path = tmp_path / "own.pkl"
    path.write_bytes(dumps(build_networks(size=16, n_mlp=8, clamp=0.5, mbstd_group=8), tmp_path))
    return path


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_convert_writes_a_checkpoint_that_loads_back_exactly(tmp_path, own_pickle, suffix):
    out = tmp_path / f"own{suffix}"
    result = run(["convert", own_pickle, "-o", out], tmp_path / "home")
    assert result.exit_code == 0, result.output
    assert "16 px, w 16, 8 mapping layers, conv_clamp 0.5, with its discriminator" in result.output
    conversion = convert_network_pickle(own_pickle)
    ckpt = load_checkpoint(out)
    assert (ckpt.generator.conv_clamp, ckpt.generator.n_mlp, ckpt.discriminator.stddev_group) == (0.5, 8, 8)
    same_models(ckpt, conversion)
    assert not (tmp_path / PAYLOAD_NAME).exists()


def test_nvidia_fixture_converted_to_a_file_matches_nvidia(tmp_path):
    source = shared_path("fixtures", "nvidia", "sg2ada_tiny64.pkl")
    expected = torch.load(shared_path("fixtures", "nvidia", "sg2ada_tiny64.expected.pt"), weights_only=True)
    out = tmp_path / "tiny64.safetensors"
    assert run(["convert", source, "-o", out], tmp_path).exit_code == 0
    ckpt = load_checkpoint(out)
    with torch.no_grad():
        img = ckpt.generator(expected["z"])
        assert rel_error(img, expected["img_const"]) <= TOLERANCE
        assert rel_error(ckpt.discriminator(img), expected["d_logits"]) <= TOLERANCE
    with safe_open(str(out), framework="pt") as handle:
        recorded = json.loads(handle.metadata()[MODEL_CONFIG_KEY])
    assert recorded["source"]["sha256"] == file_sha256(source)
    assert recorded["source"]["file"] == "sg2ada_tiny64.pkl" and recorded["source"]["mapping_layers"] == 2
    assert recorded["generator"]["conv_clamp"] == 256 and recorded["discriminator"]["stddev_group"] == 4


def test_base_pickle_is_converted_once_into_the_cache(tmp_path, own_pickle, monkeypatch):
    monkeypatch.setenv("JOJOGAN_HOME", str(tmp_path / "home"))
    first = base_checkpoint_path(own_pickle)
    assert first.parent == tmp_path / "home" / "converted" and first.name.startswith("own-")
    same_models(load_checkpoint(first), convert_network_pickle(own_pickle))
    mtime = first.stat().st_mtime_ns

    def no_second_conversion(path):
        raise AssertionError("converted twice")

    monkeypatch.setattr(jojogan.convert, "convert_network_pickle", no_second_conversion)
    assert base_checkpoint_path(own_pickle) == first and first.stat().st_mtime_ns == mtime
    first.write_bytes(b"damaged")  # a damaged cache entry is converted again, not loaded
    monkeypatch.undo()
    monkeypatch.setenv("JOJOGAN_HOME", str(tmp_path / "home"))
    assert base_checkpoint_path(own_pickle) == first and load_checkpoint(first).generator.conv_clamp == 0.5
    official = tmp_path / "official.pt"
    official.write_bytes(b"anything")
    assert base_checkpoint_path(official) == official  # not a pickle: loaded as it is


def test_pipeline_loads_a_pickle_base(tmp_path, own_pickle, monkeypatch):
    monkeypatch.setenv("JOJOGAN_HOME", str(tmp_path / "home"))
    pipe = jojogan.JoJoGAN.from_pretrained(base=own_pickle)
    assert pipe.generator.conv_clamp == 0.5 and pipe.discriminator.stddev_group == 8
    assert pipe.base_path.parent == tmp_path / "home" / "converted"


def test_a_style_from_a_clamped_base_keeps_its_clamp(tmp_path, own_pickle):
    gen = convert_network_pickle(own_pickle).generator()
    loaded = load_style(save_style(tmp_path / "style.safetensors", gen))
    assert loaded.generator.conv_clamp == 0.5 and loaded.generator.lr_mlp == gen.lr_mlp
    z = torch.randn(2, 16)
    with torch.no_grad():
        assert torch.equal(loaded.generator(z), gen(z))


def test_convert_output_rules(tmp_path, own_pickle):
    out = tmp_path / "own.safetensors"
    out.write_bytes(b"keep me")
    result = run(["convert", own_pickle, "-o", out], tmp_path)
    assert result.exit_code == 1 and "exists; pass --force" in result.output
    assert out.read_bytes() == b"keep me"
    assert run(["convert", own_pickle, "-o", out, "--force"], tmp_path).exit_code == 0
    result = run(["convert", own_pickle, "-o", tmp_path / "own.ckpt"], tmp_path)
    assert result.exit_code == 2 and ".safetensors" in result.output


# ---------------------------------------------------------------------------------------------- refusals
class _System:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


def _refusal_cases(tmp_path):
    marker = tmp_path / "pwned"
    networks = build_networks(size=16)
    whole = dumps(networks)
    return {
        "code": (dumps({**networks, "augment_pipe": _System(f"touch {marker}")}), "system when unpickled"),
        "truncated": (whole[: len(whole) * 2 // 3], "truncated"),
        "other network": (dumps({"model": build_networks(size=8)["D"]}), "no StyleGAN2 generator 'G_ema'"),
        "stylegan3": (dumps(stylegan3_networks()), "not a StyleGAN2"),
        "conditional": (dumps(conditional_networks()), "conditional model (c_dim=5)"),
        "tensors only": (dumps({"G_ema": torch.zeros(3)}), "no StyleGAN2 generator 'G_ema'"),
    }


@pytest.mark.parametrize(
    "case", ["code", "truncated", "other network", "stylegan3", "conditional", "tensors only"]
)
def test_refusals_are_one_line_and_write_nothing(tmp_path, case, monkeypatch):
    monkeypatch.setenv("JOJOGAN_HOME", str(tmp_path / "home"))
    data, words = _refusal_cases(tmp_path)[case]
    source = tmp_path / "model.pkl"
    source.write_bytes(data)
    out = tmp_path / "out.safetensors"
    result = run(["convert", source, "-o", out], tmp_path / "home")
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and line.startswith("Error: ") and words in line and "Traceback" not in line
    assert not out.exists() and list(tmp_path.glob(".out.safetensors*")) == []
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(CheckpointError, match=re.escape(words)):
        base_checkpoint_path(source)
    assert not (tmp_path / "home" / "converted").exists() or not any(
        (tmp_path / "home" / "converted").iterdir()
    )


# ---------------------------------------------------------------------------------------------- TF era
def test_tf_era_pickle_converts_like_its_pytorch_twin(tmp_path):
    """The same networks in NVlabs/stylegan2's TF format and in stylegan2-ada-pytorch's give one checkpoint:
    transposed dense and conv weights, the flipped up-sampling kernels, the +1 of the styles and the noise
    variables land where the PyTorch records put them."""
    networks = build_networks(size=16, n_mlp=3, clamp=None, mbstd_group=2, seed=4)
    twin = tmp_path / "pytorch.pkl"
    twin.write_bytes(dumps(networks))
    source = tmp_path / "stylegan2-cat-config-f.pkl"
    source.write_bytes(tf_dumps(networks, mbstd_group=2, payload_folder=tmp_path))
    tf, pt = convert_network_pickle(source), convert_network_pickle(twin)
    assert tf.source["format"] == "stylegan2-tf" and pt.source["format"] == "stylegan2-ada-pytorch"
    assert tf.generator_config == pt.generator_config and tf.discriminator_config == pt.discriminator_config
    for ours, theirs in ((tf.g_ema, pt.g_ema), (tf.d, pt.d)):
        assert list(ours) == list(theirs)
        for key in ours:
            assert torch.equal(ours[key], theirs[key]), key
    assert torch.equal(tf.latent_avg, pt.latent_avg)
    result = run(["convert", source, "-o", tmp_path / "cat.safetensors"], tmp_path / "home")
    assert result.exit_code == 0 and "3 mapping layers, no conv_clamp" in result.output
    assert not (tmp_path / PAYLOAD_NAME).exists()


# ---------------------------------------------------------------------------------------------- registry
NVIDIA_ROWS = {
    "ffhq-512": 512,
    "ffhq-256": 256,
    "metfaces": 1024,
    "afhq-cat": 512,
    "afhq-dog": 512,
    "afhq-wild": 512,
    "lsun-car": 512,
    "lsun-cat": 256,
    "lsun-church": 256,
    "lsun-horse": 256,
}


def test_registry_rows_for_nvidia_models():
    for name, size in NVIDIA_ROWS.items():
        row = manager.REGISTRY[name]
        assert row.url.startswith("https://nvlabs-fi-cdn.nvidia.com/") and row.filename.endswith(".pkl")
        assert row.url.endswith("/" + row.filename) and f"{size} px" in row.description
        assert "Nvidia Source Code License-NC" in row.licence
        assert row.sha256 is None and row.size is None  # NVIDIA publishes neither: pinned on first download


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local HTTP folder standing in for NVIDIA's CDN (``JOJOGAN_WEIGHTS_MIRROR``), downloads on."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    monkeypatch.setenv("JOJOGAN_WEIGHTS_MIRROR", f"http://127.0.0.1:{httpd.server_address[1]}")
    monkeypatch.setenv("JOJOGAN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("JOJOGAN_OFFLINE", raising=False)
    yield folder
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_base_by_registry_name_downloads_converts_once_and_caches(tmp_path, mirror, monkeypatch):
    (mirror / "afhqcat.pkl").write_bytes(dumps(build_networks(size=16, clamp=256), tmp_path))
    pipe = jojogan.JoJoGAN.from_pretrained(base="afhq-cat")
    home = tmp_path / "home"
    assert (home / "afhqcat.pkl").is_file() and pipe.base_path.parent == home / "converted"
    assert pipe.generator.size == 16 and pipe.generator.conv_clamp == 256
    assert pipe.profile.name == "afhq-cat"  # the registry row's domain, recorded in the conversion
    (mirror / "afhqcat.pkl").unlink()  # a second run needs neither the network nor a new conversion
    monkeypatch.setattr(jojogan.convert, "convert_network_pickle", None)
    again = jojogan.JoJoGAN.from_pretrained(base="afhq-cat")
    assert again.base_path == pipe.base_path
    assert not (tmp_path / PAYLOAD_NAME).exists()
