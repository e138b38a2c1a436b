"""NVIDIA's network pickles read as data: records and tensors come back, nothing in the file runs."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch

from jojogan.errors import CheckpointError
from jojogan.stylegan2.nvidia import convert_records
from jojogan.stylegan2.nvidia_pickle import NetworkRecord, PickleRefused, read_network_pickle

from conftest import shared_path
from nvidia_records import (
    PAYLOAD_NAME,
    build_networks,
    dumps,
    reference_discriminator,
    reference_mapping,
    reference_synthesis,
)


def fixture_path():
    return shared_path("fixtures", "nvidia", "sg2ada_tiny64.pkl")


def no_nvidia_code_loaded() -> bool:
    """NVIDIA's persistence module executes record sources into modules named ``_imported_module_*``."""
    return not any(
        name.startswith("_imported_module_") or name.startswith("torch_utils") for name in sys.modules
    )


def write(tmp_path, obj, name="net.pkl", payload=True) -> os.PathLike:
    path = tmp_path / name
    path.write_bytes(dumps(obj, tmp_path if payload else None))
    return path


# ---------------------------------------------------------------------------------------------- reading
def test_nvidia_fixture_reads_as_records():
    data = read_network_pickle(fixture_path())
    assert set(data) == {"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}
    g_ema = data["G_ema"]
    assert isinstance(g_ema, NetworkRecord) and g_ema.class_name == "Generator"
    mapping = g_ema.child("mapping")
    assert mapping.attr("num_layers") == 2 and mapping.path == "G_ema.mapping"
    layer = g_ema.child("synthesis").child("b8").child("conv0")
    assert (layer.class_name, layer.attr("up"), layer.attr("conv_clamp")) == ("SynthesisLayer", 2, 256)
    assert layer.tensor("weight").shape == (32, 32, 3, 3) and layer.tensor("noise_const").shape == (8, 8)
    # numpy.float64 gains come back as Python numbers
    assert layer.child("affine").attr("weight_gain") == pytest.approx(1 / np.sqrt(32), rel=1e-12)
    expected = torch.load(shared_path("fixtures", "nvidia", "sg2ada_tiny64.expected.pt"), weights_only=True)
    assert torch.equal(mapping.tensor("w_avg"), expected["w_avg"])
    assert data["D"].child("b4").child("mbstd").attr("group_size") == 4
    assert no_nvidia_code_loaded()


def test_written_records_come_back_with_their_tensors(tmp_path):
    networks = build_networks(size=16, seed=3)
    data = read_network_pickle(write(tmp_path, networks))
    original = networks["G_ema"].modules["synthesis"].modules["b8"].modules["conv0"]
    read = data["G_ema"].child("synthesis").child("b8").child("conv0")
    for name in ("weight", "bias", "noise_strength"):
        assert torch.equal(read.tensor(name), original.params[name].detach())
    assert torch.equal(read.tensor("noise_const"), original.buffers["noise_const"])
    assert read.attr("act_gain") == pytest.approx(np.sqrt(2)) and read.init_kwargs["up"] == 2
    assert data["G_ema"].child("mapping").init_kwargs == {"num_layers": 2}  # an EasyDict, as a plain dict
    assert data["training_set_kwargs"] == {"resolution": 16, "use_labels": False, "xflip": True}
    assert not (tmp_path / PAYLOAD_NAME).exists()
    assert no_nvidia_code_loaded()


class _ZipStorage:
    """Pickles as ``torch.storage._load_from_bytes`` of a zip-format ``torch.save`` of a storage."""

    def __init__(self, tensor):
        self.tensor = tensor

    def __reduce__(self):
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TypedStorage is deprecated, and what torch 1.x saved
            torch.save(self.tensor.storage(), buffer)
        return (torch.storage._load_from_bytes, (buffer.getvalue(),))


class _ZipTensor:
    def __init__(self, tensor):
        self.tensor = tensor

    def __reduce__(self):
        t = self.tensor
        return (
            torch._utils._rebuild_tensor_v2,
            (_ZipStorage(t), 0, tuple(t.shape), t.stride(), False, OrderedDict()),
        )


def test_tensor_layouts_and_storage_formats(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    tensors = {
        "transposed": base.t(),
        "offset": base[1:, 2:],
        "half": torch.randn(3, 5).half(),
        "double": torch.randn(2, dtype=torch.float64),
        "scalar": torch.tensor(1.5),
        "empty": torch.zeros(0, 3),
    }
    path = tmp_path / "tensors.pkl"
    path.write_bytes(pickle.dumps({**tensors, "zip": _ZipTensor(base)}, protocol=4))
    data = read_network_pickle(path)
    for name, tensor in tensors.items():
        assert data[name].dtype == tensor.dtype and torch.equal(data[name], tensor), name
    assert torch.equal(data["zip"], base)


# ---------------------------------------------------------------------------------------------- refusals
class _Evil:
    """Pickles as a call of ``target(*args)``: what a booby-trapped model file does."""

    def __init__(self, target, *args):
        self.target, self.args = target, args

    def __reduce__(self):
        return (self.target, self.args)


def _payloads(marker):
    return {
        "os.system": _Evil(os.system, f"touch {marker}"),
        "builtins.exec": _Evil(exec, f"open({str(marker)!r}, 'w')"),
        "subprocess.Popen": _Evil(subprocess.Popen, ["touch", str(marker)]),
        "builtins.eval": _Evil(eval, f"open({str(marker)!r}, 'w')"),
    }


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec", "subprocess.Popen", "builtins.eval"])
@pytest.mark.parametrize("where", ["top", "inside a network pickle"])
def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path, kind, where):
    marker = tmp_path / "pwned"
    evil = _payloads(marker)[kind]
    obj = evil if where == "top" else {**build_networks(size=8), "training_set_kwargs": {"hook": evil}}
    path = write(tmp_path, obj, payload=False)
    with pytest.raises(PickleRefused) as error:
        read_network_pickle(path)
    message = str(error.value)
    assert "\n" not in message and "nothing from the file was run" in message
    name = {
        "os.system": "system",
        "builtins.exec": "exec",
        "subprocess.Popen": "Popen",
        "builtins.eval": "eval",
    }
    assert name[kind] in message
    assert not marker.exists()


def test_code_hidden_in_a_stored_tensor_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    header = b"".join(
        pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True})
    )
    blob = header + pickle.dumps(_Evil(os.system, f"touch {marker}"), protocol=2)
    path = tmp_path / "storage.pkl"
    path.write_bytes(pickle.dumps(_Evil(torch.storage._load_from_bytes, blob), protocol=4))
    with pytest.raises(CheckpointError, match="system"):
        read_network_pickle(path)
    assert not marker.exists()


def test_a_truncated_pickle_is_one_line(tmp_path):
    data = dumps(build_networks(size=8))
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated") as error:
        read_network_pickle(path)
    assert "\n" not in str(error.value)


def test_files_that_are_no_network_pickle(tmp_path):
    archive = tmp_path / "model.pt"
    torch.save({"g_ema": {}}, archive)
    with pytest.raises(CheckpointError, match="torch.save archive"):
        read_network_pickle(archive)
    text = tmp_path / "model.pkl"
    text.write_text("not a pickle")
    with pytest.raises(CheckpointError, match="not a pickle"):
        read_network_pickle(text)
    with pytest.raises(CheckpointError, match="not found"):
        read_network_pickle(tmp_path / "missing.pkl")


# ---------------------------------------------------------------------------------------------- conversion
TOLERANCE = 1e-4


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-12)).item()


@pytest.fixture(scope="module")
def nvidia_fixture():
    data = read_network_pickle(fixture_path())
    expected = torch.load(shared_path("fixtures", "nvidia", "sg2ada_tiny64.expected.pt"), weights_only=True)
    return data, expected


def product_outputs(conversion, z, psi=0.7):
    """What NVIDIA's fixture records, computed by the product's modules after conversion."""
    gen, disc = conversion.generator(), conversion.discriminator()
    avg = conversion.latent_avg
    with torch.no_grad():
        w = gen.get_latent(z)
        w_psi = avg + psi * (w - avg)
        zeros = [torch.zeros_like(n) for n in gen.noise_buffers()]
        img = gen.synthesis(gen.to_w_plus(w))
        blocks = disc.features(img, range(1, len(disc.convs)))
        return {
            "w": gen.to_w_plus(w),
            "w_psi07": gen.to_w_plus(w_psi),
            "img_const": img,
            "img_none": gen.synthesis(gen.to_w_plus(w), zeros),
            "img_psi07_const": gen.synthesis(gen.to_w_plus(w_psi)),
            "d_logits": disc(img),
            "d_blocks": {gen.size // 2**i: block for i, block in enumerate(blocks)},
            "w_avg": avg,
        }


def test_converted_fixture_matches_nvidia_outputs(nvidia_fixture):
    data, expected = nvidia_fixture
    conversion = convert_records(data, "sg2ada_tiny64.pkl")
    config = conversion.generator_config
    assert (config["size"], config["style_dim"], config["n_mlp"], config["conv_clamp"]) == (64, 32, 2, 256.0)
    assert conversion.discriminator_config["stddev_group"] == 4
    ours = product_outputs(conversion, expected["z"])
    for name in ("w", "w_psi07", "img_const", "img_none", "img_psi07_const", "d_logits", "w_avg"):
        assert rel_error(ours[name], expected[name]) <= TOLERANCE, name
    assert set(ours["d_blocks"]) == set(expected["d_blocks"])
    for res, block in expected["d_blocks"].items():
        assert rel_error(ours["d_blocks"][res], block) <= TOLERANCE, f"D block {res}"


def reference_outputs(data, z):
    """NVIDIA's forward pass from the records by the tests' own reading of the maths (nvidia_records)."""
    G, D = data["G_ema"], data["D"]
    with torch.no_grad():
        w = reference_mapping(G, z)
        num_ws = G.child("synthesis").attr("num_ws")
        ws = w[:, None].expand(-1, num_ws, -1)
        img = reference_synthesis(G, ws)
        logits, blocks = reference_discriminator(D, img)
        return {
            "w": ws,
            "img_const": img,
            "img_none": reference_synthesis(G, ws, noise_mode="none"),
            "d_logits": logits,
            "d_blocks": blocks,
        }


def test_the_tests_reference_reproduces_nvidia_outputs(nvidia_fixture):
    """The oracle used for our own fixtures below is checked against NVIDIA's own numbers first."""
    data, expected = nvidia_fixture
    ref = reference_outputs(data, expected["z"])
    for name in ("w", "img_const", "img_none", "d_logits"):
        assert rel_error(ref[name], expected[name]) <= TOLERANCE, name
    for res, block in expected["d_blocks"].items():
        assert rel_error(ref["d_blocks"][res], block) <= TOLERANCE, f"D block {res}"


OWN_FIXTURES = {
    # a clamp that binds in most layers, NVIDIA's default 8 mapping layers, an 8-image stddev group
    "32px-8mlp-clamp0.5": dict(size=32, z_dim=16, n_mlp=8, clamp=0.5, mbstd_group=8, seed=1),
    # no clamp, a larger size, a group of 2
    "128px-2mlp-noclamp": dict(size=128, z_dim=8, n_mlp=2, clamp=None, mbstd_group=2, seed=2),
    # the smallest size the product builds, a clamp that binds a little
    "8px-4mlp-clamp2": dict(size=8, z_dim=12, n_mlp=4, clamp=2.0, mbstd_group=4, seed=3),
}


@pytest.mark.parametrize("name", list(OWN_FIXTURES))
def test_own_fixtures_match_the_reference(tmp_path, name):
    settings = OWN_FIXTURES[name]
    data = read_network_pickle(write(tmp_path, build_networks(**settings)))
    conversion = convert_records(data, name)
    assert conversion.generator_config["n_mlp"] == settings["n_mlp"]
    assert conversion.generator_config["conv_clamp"] == settings["clamp"]
    assert conversion.discriminator_config["stddev_group"] == settings["mbstd_group"]
    z = torch.randn(8, settings["z_dim"], generator=torch.Generator().manual_seed(5))
    ours, ref = product_outputs(conversion, z), reference_outputs(data, z)
    for key in ("w", "img_const", "img_none", "d_logits"):
        assert rel_error(ours[key], ref[key]) <= TOLERANCE, key
    for res, block in ref["d_blocks"].items():
        assert rel_error(ours["d_blocks"][res], block) <= TOLERANCE, f"D block {res}"
    assert not (tmp_path / PAYLOAD_NAME).exists()


def test_the_clamp_binds_and_is_reproduced(tmp_path):
    """With conv_clamp 0.5 many activations are clamped: dropping the clamp changes image and logits."""
    data = read_network_pickle(write(tmp_path, build_networks(**OWN_FIXTURES["32px-8mlp-clamp0.5"])))
    conversion = convert_records(data)
    gen, disc = conversion.generator(), conversion.discriminator()
    clamped = []
    gen.convs[1].register_forward_hook(
        lambda module, args, out: clamped.append((out.abs() == 0.5).float().mean())
    )
    z = torch.randn(8, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        img = gen(z)
        logits = disc(img)
        assert clamped[0] > 0.05  # the layer's output sits on the clamp in over 5% of its values
        for module in [*gen.modules(), *disc.modules()]:
            if hasattr(module, "conv_clamp"):
                module.conv_clamp = None
        assert rel_error(gen(z), img) > 0.1 and rel_error(disc(img), logits) > 0.01


def test_a_pickle_nested_beyond_reason_is_one_line(tmp_path):
    path = tmp_path / "deep.pkl"
    # hand-written opcodes: protocol 2, 100000 nested EMPTY_DICT/SETITEM levels (no Python object is pickled)
    depth = 100_000
    path.write_bytes(b"\x80\x02" + b"}X\x01\x00\x00\x00k" * depth + b"}" + b"s" * depth + b".")
    with pytest.raises(CheckpointError, match="damaged") as error:
        read_network_pickle(path)
    assert "\n" not in str(error.value)
