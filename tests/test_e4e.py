"""Tests for jojogan.inversion.e4e: the official layout, loading, and the forward pass from first principles.

The official encoder has 267 M parameters (1.07 GB in float32) and one forward takes seconds on a small
CPU, so behaviour is tested on a tiny configuration of the same architecture, and the full size only
where size is the point (the tensor layout, a checkpoint round trip). Full-size test checkpoints are
"hollow": each tensor is a random vector broadcast to the official shape, which ``torch.save`` stores
as that vector alone, so a file in the official layout takes kilobytes, yet every tensor still differs
from every other (a loader that swapped two same-shaped tensors would be caught).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from jojogan.inversion.e4e import (
    E4EConfig,
    E4EInverter,
    Encoder4Editing,
    IRSEBottleneck,
    load_e4e,
    to_e4e_input,
)
from jojogan.inversion.errors import CheckpointError
from jojogan.stylegan2.model import Generator

TINY = E4EConfig(
    input_size=64,
    stem_channels=8,
    stage_channels=(8, 16, 16, 32),
    stage_units=(2, 2, 3, 2),
    style_dim=32,
    n_styles=18,
    se_reduction=4,
)


OFFICIAL_OPTS = {"encoder_type": "Encoder4Editing", "stylegan_size": 1024, "start_from_latent_avg": True}


def _randomize_(module: torch.nn.Module) -> torch.nn.Module:
    """Give every BatchNorm and PReLU non-trivial values, so a test notices if they are skipped or run
    in training mode."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(7)
            elif isinstance(m, torch.nn.PReLU):
                m.weight.uniform_(0.05, 0.5)
    return module.eval()


def _tiny_checkpoint(path, **overrides) -> tuple[Encoder4Editing, torch.Tensor]:
    """Save a random tiny e4e checkpoint in the official layout (``overrides`` replace top-level entries);
    returns the encoder and latent_avg."""
    encoder = _randomize_(Encoder4Editing(TINY))
    latent_avg = torch.randn(TINY.n_styles, TINY.style_dim)
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    checkpoint = {
        "state_dict": state,
        "latent_avg": latent_avg,
        "opts": dict(OFFICIAL_OPTS),
    }
    checkpoint.update(overrides)
    torch.save(checkpoint, path)
    return encoder, latent_avg


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory) -> tuple:
    """One tiny checkpoint (seed 0) for the tests that only read it: its path, encoder, latent_avg and
    the saved dict (tests that edit it take a deep copy)."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        encoder, latent_avg = _tiny_checkpoint(path)
    return path, encoder, latent_avg, torch.load(path, weights_only=True)


def _hollow(reference: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Tensors of the reference's names, shapes and dtypes, each a random vector broadcast along dim 0."""
    out = {}
    for name, ref in reference.items():
        if ref.ndim == 0:
            out[name] = torch.tensor(len(out), dtype=ref.dtype)
        else:
            base = torch.randn(ref.shape[0], generator=generator).to(ref.dtype)
            out[name] = base.view(-1, *[1] * (ref.ndim - 1)).expand(ref.shape)
    return out


def _layout(shared) -> list[tuple[str, list[int]]]:
    rows = shared("reference", "checkpoint-layouts", "e4e_ffhq_encode.encoder.tsv").read_text().splitlines()
    return [
        (name, [int(s) for s in shape.strip("[]").split(",") if s.strip()])
        for name, shape in (r.split("\t") for r in rows)
    ]


# ------------------------------------------------------------------------------------- official layout


def test_state_dict_matches_official_layout_name_shape_and_order(shared):
    expected = _layout(shared)
    with torch.device("meta"):
        encoder = Encoder4Editing()
    ours = [(f"encoder.{name}", list(t.shape)) for name, t in encoder.state_dict().items()]
    assert len(expected) == 621
    assert ours == expected


def test_official_config_taps_and_output_shape():
    config = E4EConfig()
    # c1, c2, c3 of the original: the outputs of body units 6, 20 and 23.
    assert config.feature_taps == (6, 20, 23)
    with torch.device("meta"):
        encoder = Encoder4Editing()
        out = encoder(torch.empty(2, 3, 256, 256))  # shapes only: the meta device computes nothing
    assert out.shape == (2, 18, 512)
    assert [len(encoder.styles[i].convs) // 2 for i in (0, 2, 3, 6, 7, 17)] == [4, 4, 5, 5, 6, 6]


@pytest.fixture(scope="module")
def full_size_file(tmp_path_factory):
    """A hollow checkpoint in the full official layout (encoder, decoder, latent_avg, Namespace opts)."""
    gen = torch.Generator().manual_seed(1)
    with torch.device("meta"):
        encoder_reference = Encoder4Editing().state_dict()
        decoder_reference = Generator(1024, 512, 8, 2).state_dict()
    encoder_state = _hollow(encoder_reference, gen)
    decoder_state = _hollow(decoder_reference, gen)
    latent_avg = torch.randn(18, 512, generator=gen)
    state = {f"encoder.{k}": v for k, v in encoder_state.items()}
    state.update({f"decoder.{k}": v for k, v in decoder_state.items()})
    # The official training code stores its argparse options; a weights-only load must still accept them.
    opts = argparse.Namespace(**OFFICIAL_OPTS, checkpoint_path=None, device="cuda", lpips_lambda=0.8)
    checkpoint = {"state_dict": state, "latent_avg": latent_avg, "opts": opts}
    path = tmp_path_factory.mktemp("e4e") / "e4e_ffhq_encode.pt"
    torch.save(checkpoint, path)
    return path, checkpoint, encoder_reference, encoder_state, decoder_state


def test_full_size_round_trip_with_namespace_opts(full_size_file):
    path, checkpoint, reference, encoder_state, _ = full_size_file
    with pytest.raises(pickle.UnpicklingError):  # the Namespace path really is exercised
        torch.load(path, weights_only=True)

    inverter = load_e4e(path)

    assert inverter.decoder is None
    assert torch.equal(inverter.latent_avg, checkpoint["latent_avg"])
    loaded = inverter.encoder.state_dict()
    assert list(loaded) == list(reference)
    for name, value in encoder_state.items():
        assert torch.equal(loaded[name], value), name
        assert loaded[name].dtype == reference[name].dtype and loaded[name].is_contiguous(), name
    assert not any(m.training for m in inverter.modules())
    assert not any(p.requires_grad for p in inverter.parameters())


def test_with_decoder_builds_official_generator(full_size_file):
    path, _, _, _, decoder_state = full_size_file

    inverter = load_e4e(path, with_decoder=True)

    decoder = inverter.decoder
    assert isinstance(decoder, Generator) and (decoder.size, decoder.style_dim, decoder.n_mlp) == (
        1024,
        512,
        8,
    )
    loaded = decoder.state_dict()
    assert list(loaded) == list(decoder_state)
    assert all(torch.equal(loaded[k], v) for k, v in decoder_state.items())
    assert not decoder.training


def test_with_decoder_rejects_missing_decoder_key(full_size_file, tmp_path):
    _, checkpoint, *_ = full_size_file
    state = {k: v for k, v in checkpoint["state_dict"].items() if k != "decoder.to_rgbs.3.conv.weight"}
    path = tmp_path / "no_rgb3.pt"
    torch.save({**checkpoint, "state_dict": state}, path)
    with pytest.raises(CheckpointError, match=r"1 missing \(decoder\.to_rgbs\.3\.conv\.weight\)"):
        load_e4e(path, with_decoder=True)


# ------------------------------------------------------------------------------- first principles


def test_tiny_round_trip_gives_identical_output(tiny_file):
    path, encoder, latent_avg, _ = tiny_file
    x = torch.rand(2, 3, 64, 64) * 2 - 1

    inverter = load_e4e(path, config=TINY)

    with torch.no_grad():
        expected = encoder(x) + latent_avg
    with torch.inference_mode():
        got = inverter(x)
    assert got.shape == (2, 18, 32)
    assert torch.equal(got, expected)


def _batch_norm(x: torch.Tensor, bn: torch.nn.BatchNorm2d) -> torch.Tensor:
    shape = (1, -1, 1, 1)
    scale = bn.weight.view(shape) / torch.sqrt(bn.running_var.view(shape) + bn.eps)
    return (x - bn.running_mean.view(shape)) * scale + bn.bias.view(shape)


def _prelu(x: torch.Tensor, prelu: torch.nn.PReLU) -> torch.Tensor:
    return torch.where(x >= 0, x, x * prelu.weight.view(1, -1, 1, 1))


@pytest.mark.parametrize(("in_channels", "depth", "stride"), [(8, 8, 2), (8, 8, 1), (8, 16, 2)])
def test_bottleneck_matches_hand_computation(in_channels, depth, stride):
    unit = _randomize_(IRSEBottleneck(in_channels, depth, stride, se_reduction=4))
    x = torch.randn(2, in_channels, 16, 16)
    bn1, conv1, prelu, conv2, bn2, se = unit.res_layer

    r = F.conv2d(_batch_norm(x, bn1), conv1.weight, padding=1)
    r = F.conv2d(_prelu(r, prelu), conv2.weight, stride=stride, padding=1)
    r = _batch_norm(r, bn2)
    gate = torch.sigmoid(
        F.conv2d(torch.relu(F.conv2d(r.mean(dim=(2, 3), keepdim=True), se.fc1.weight)), se.fc2.weight)
    )
    r = r * gate
    if in_channels == depth:
        shortcut = x[:, :, ::stride, ::stride]
    else:
        conv, bn = unit.shortcut_layer
        shortcut = _batch_norm(F.conv2d(x, conv.weight, stride=stride), bn)

    with torch.no_grad():
        got = unit(x)
    assert got.shape == (2, depth, 16 // stride, 16 // stride)
    torch.testing.assert_close(got, r + shortcut, rtol=1e-5, atol=1e-5)


def _style_head(x: torch.Tensor, head) -> torch.Tensor:
    """A GradualStyleBlock by hand: stride-2 convs with leaky ReLU 0.01, then an equalized linear."""
    for conv in head.convs[::2]:
        x = F.leaky_relu(F.conv2d(x, conv.weight, conv.bias, stride=2, padding=1), 0.01)
    assert x.shape[-2:] == (1, 1)
    weight = head.linear.weight
    return x.flatten(1) @ (weight / math.sqrt(weight.shape[1])).t() + head.linear.bias


def test_forward_is_latent_avg_plus_w0_plus_deltas(tiny_file):
    path = tiny_file[0]
    inverter = load_e4e(path, config=TINY)
    enc = inverter.encoder
    x = torch.rand(2, 3, 64, 64) * 2 - 1

    with torch.no_grad():
        h = _prelu(
            _batch_norm(F.conv2d(x, enc.input_layer[0].weight, padding=1), enc.input_layer[1]),
            enc.input_layer[2],
        )
        # Taps at the end of stages 2, 3 and 4, counted from the configuration independently of the code.
        ends = [n - 1 for n in itertools.accumulate(TINY.stage_units)]
        taps = {}
        for index, unit in enumerate(enc.body):
            h = unit(h)
            taps[index] = h
        c1, c2, c3 = taps[ends[1]], taps[ends[2]], taps[ends[3]]
        assert c3.shape[-1] == 4 and c2.shape[-1] == 8 and c1.shape[-1] == 16

        def up_add(top, lateral, align_corners=True):
            return F.interpolate(top, scale_factor=2, mode="bilinear", align_corners=align_corners) + lateral

        p2 = up_add(c3, F.conv2d(c2, enc.latlayer1.weight, enc.latlayer1.bias))
        p1 = up_add(p2, F.conv2d(c1, enc.latlayer2.weight, enc.latlayer2.bias))
        features = [c3] * 3 + [p2] * 4 + [p1] * 11
        w0 = _style_head(c3, enc.styles[0])
        deltas = [_style_head(f, head) for f, head in zip(features[1:], enc.styles[1:], strict=True)]

        got = inverter(x)

    latent_avg = inverter.latent_avg
    torch.testing.assert_close(got[:, 0], latent_avg[0] + w0, rtol=1e-5, atol=1e-5)
    for i, delta in enumerate(deltas, start=1):
        torch.testing.assert_close(got[:, i], latent_avg[i] + w0 + delta, rtol=1e-5, atol=1e-5)
    # The deltas matter and the pyramid's corner alignment is observable: this test can fail.
    assert min(d.abs().max().item() for d in deltas) > 1e-3
    p2_other = up_add(c3, F.conv2d(c2, enc.latlayer1.weight, enc.latlayer1.bias), align_corners=False)
    assert (_style_head(p2_other, enc.styles[3]) - deltas[2]).abs().max() > 1e-4


def test_eval_mode_batch_independence(tiny_file):
    path = tiny_file[0]
    inverter = load_e4e(path, config=TINY)
    a, b = torch.rand(2, 1, 3, 64, 64) * 2 - 1
    with torch.inference_mode():
        alone = inverter(a)
        batched = inverter(torch.cat([a, b]))
        in_other_batch = inverter(torch.cat([a, -b]))
    torch.testing.assert_close(batched[:1], alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(in_other_batch[:1], alone, rtol=1e-5, atol=1e-5)
    assert (batched[1] - batched[0]).abs().max() > 1e-3  # the two faces do get different codes


def test_forward_rejects_wrong_input_shape():
    encoder = Encoder4Editing(TINY).eval()
    for shape in [(1, 3, 32, 32), (1, 1, 64, 64), (3, 64, 64), (1, 3, 64, 48)]:
        with pytest.raises(ValueError, match=r"\[batch, 3, 64, 64\]"):
            encoder(torch.zeros(shape))


def test_inverter_rejects_mismatched_latent_avg():
    with pytest.raises(ValueError, match=r"\[18, 32\]"):
        E4EInverter(Encoder4Editing(TINY), torch.zeros(18, 512))


# ----------------------------------------------------------------------------------------- images


def test_to_e4e_input_values_and_bilinear_resize():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(96, 96, 3), dtype=np.uint8)
    pixels[0, 0] = (0, 128, 255)
    image = Image.fromarray(pixels)

    same_size = to_e4e_input(image, size=96)
    assert same_size.dtype == torch.float32 and same_size.shape == (3, 96, 96)
    torch.testing.assert_close(same_size[:, 0, 0], torch.tensor([-1.0, 128 / 255 * 2 - 1, 1.0]))

    resized = to_e4e_input(image, size=64)
    expected = np.asarray(image.resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float32) / 255 * 2 - 1
    torch.testing.assert_close(resized, torch.from_numpy(expected).permute(2, 0, 1), rtol=0, atol=1e-6)
    # PIL's bilinear shrink averages (antialiasing); point sampling would give something else.
    nearest = np.asarray(image.resize((64, 64), Image.Resampling.NEAREST), dtype=np.float32) / 255 * 2 - 1
    assert (resized - torch.from_numpy(nearest).permute(2, 0, 1)).abs().mean() > 0.05

    grey = to_e4e_input(Image.fromarray(pixels[..., 0]), size=96)  # mode L → RGB
    assert torch.equal(grey[0], grey[2]) and torch.equal(grey[0], same_size[0])


def test_to_e4e_input_rejects_bad_images():
    with pytest.raises(ValueError, match="square"):
        to_e4e_input(Image.new("RGB", (100, 80)))
    with pytest.raises(TypeError, match="PIL"):
        to_e4e_input(np.zeros((64, 64, 3), dtype=np.uint8))


def test_invert_equals_forward_on_preprocessed_images(tiny_file):
    path = tiny_file[0]
    inverter = load_e4e(path, config=TINY)
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, size=(128, 128, 3), dtype=np.uint8)) for _ in range(2)]

    codes = inverter.invert(images)
    single = inverter.invert(images[1])

    with torch.no_grad():
        expected = inverter(torch.stack([to_e4e_input(im, 64) for im in images]))
    assert codes.shape == (2, 18, 32) and not codes.requires_grad
    assert torch.equal(codes, expected)
    torch.testing.assert_close(single, expected[1:], rtol=1e-5, atol=1e-5)
    codes[:, 7:] = codes[:1, 7:]  # later stages edit codes in place (style mixing): not inference tensors
    with pytest.raises(ValueError, match="at least one"):
        inverter.invert([])


# ---------------------------------------------------------------------------------- wrong layouts


def _broken(tmp_path, tiny_file, edit):
    path = tmp_path / "broken.pt"
    checkpoint = copy.deepcopy(tiny_file[3])
    edit(checkpoint)
    torch.save(checkpoint, path)
    return path


def _drop(name):
    return lambda ckpt: ckpt["state_dict"].pop(name)


def _add(name):
    return lambda ckpt: ckpt["state_dict"].__setitem__(name, torch.zeros(3))


def _reshape(name, shape):
    return lambda ckpt: ckpt["state_dict"].__setitem__(name, torch.zeros(shape))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_drop("encoder.styles.5.convs.2.weight"), r"missing \(encoder\.styles\.5\.convs\.2\.weight\)"),
        (_drop("encoder.body.0.res_layer.0.running_var"), r"encoder\.body\.0\.res_layer\.0\.running_var"),
        (_add("encoder.styles.18.linear.weight"), r"unexpected \(encoder\.styles\.18\.linear\.weight\)"),
        (
            _reshape("encoder.latlayer1.weight", (32, 16, 3, 3)),
            r"encoder\.latlayer1\.weight: \[32, 16, 3, 3\] in the file, expected \[32, 16, 1, 1\]",
        ),
        (lambda c: c.pop("state_dict"), "no 'state_dict'"),
        (lambda c: c.pop("latent_avg"), "no 'latent_avg'"),
        (lambda c: c.__setitem__("latent_avg", torch.zeros(512)), r"'latent_avg' has shape \[512\]"),
        (lambda c: c["opts"].__setitem__("encoder_type", "GradualStyleEncoder"), "GradualStyleEncoder"),
        (lambda c: c["opts"].__setitem__("start_from_latent_avg", False), "start_from_latent_avg"),
        (lambda c: c["opts"].__setitem__("stylegan_size", 512), "512 px"),
    ],
)
def test_wrong_layout_raises_checkpoint_error_naming_the_problem(tmp_path, tiny_file, edit, message):
    path = _broken(tmp_path, tiny_file, edit)
    with pytest.raises(CheckpointError, match=message):
        load_e4e(path, config=TINY)


def test_many_missing_keys_are_counted_not_all_listed(tmp_path, tiny_file):
    path = _broken(
        tmp_path,
        tiny_file,
        lambda c: [c["state_dict"].pop(k) for k in list(c["state_dict"]) if ".styles." in k],
    )
    with pytest.raises(CheckpointError, match=r"160 missing \(.*, and 155 more\)"):
        load_e4e(path, config=TINY)


def test_official_layout_rejects_tiny_file(tmp_path):
    path = tmp_path / "tiny.pt"
    _tiny_checkpoint(path, latent_avg=torch.zeros(18, 512))
    with pytest.raises(CheckpointError, match=r"in the file, expected \[64, 3, 3, 3\]"):
        load_e4e(path)


class _Opaque:
    """Stands for any class a weights-only load must refuse to construct."""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is a text file, not a checkpoint\n", "not a readable PyTorch checkpoint"),
        (b"", "not a readable PyTorch checkpoint"),
        (b"PK\x03\x04" + b"\x00" * 64, "not a readable PyTorch checkpoint"),
    ],
)
def test_non_checkpoint_files_raise_checkpoint_error(tmp_path, content, message):
    path = tmp_path / "not_a_checkpoint.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_e4e(path)


def test_unsafe_or_odd_checkpoints_raise_checkpoint_error(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"state_dict": {}, "latent_avg": torch.zeros(18, 512), "opts": _Opaque()}, path)
    with pytest.raises(CheckpointError, match="_Opaque"):
        load_e4e(path)
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match="holds a Tensor, expected a dict"):
        load_e4e(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_e4e(tmp_path / "missing.pt")
