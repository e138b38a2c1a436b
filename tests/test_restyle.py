"""Tests for jojogan.inversion.restyle: the official layouts, the strict loader and the iterative inference.

Layouts are pinned at full size on the meta device (no memory, no compute). Behaviour is tested on tiny
seeded checkpoints in the official layout (official depths, narrow widths, a tiny decoder), against the
inference written out by hand: step 1 corrects ``latent_avg`` from the photo stacked with the decoder's
image of ``latent_avg``, every later step corrects the previous code from the photo stacked with the
previous code's image, average-pooled to 256 px, with the decoder's stored noise.
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from jojogan.inversion import load_restyle
from jojogan.inversion.e4e import to_e4e_input
from jojogan.inversion.errors import CheckpointError
from jojogan.inversion.restyle import (
    CARS_PICTURE_ROWS,
    ENCODER_TYPES,
    BackboneEncoder,
    ProgressiveBackboneEncoder,
    ResNetBackboneEncoder,
    ResNetBasicBlock,
    ResNetProgressiveBackboneEncoder,
    RestyleConfig,
    RestyleInverter,
    build_encoder,
    config_from_checkpoint,
)

from factories import TINY_STYLE_DIM, tiny_restyle_checkpoint

# ------------------------------------------------------------------------------------- official layout


def _rows(shared, name: str) -> list[tuple[str, list[int]]]:
    lines = shared("reference", "checkpoint-layouts", name).read_text().splitlines()
    return [
        (key, [int(s) for s in shape.strip("[]").split(",") if s.strip()])
        for key, shape in (line.split("\t") for line in lines)
    ]


def _heads(template: list[tuple[str, list[int]]], n_styles: int) -> list[tuple[str, list[int]]]:
    """``n_styles`` copies of a 16 px style head's rows (``encoder.styles.0.*``), renumbered."""
    return [
        (key.replace("encoder.styles.0.", f"encoder.styles.{i}.", 1), shape)
        for i in range(n_styles)
        for key, shape in template
    ]


def _ours(encoder) -> list[tuple[str, list[int]]]:
    return [(f"encoder.{key}", list(t.shape)) for key, t in encoder.state_dict().items()]


@pytest.mark.parametrize("cls", [BackboneEncoder, ProgressiveBackboneEncoder])
def test_ir_se_encoders_have_the_official_layout(shared, cls):
    e4e = _rows(shared, "e4e_ffhq_encode.encoder.tsv")
    # The IR-SE stem and body are e4e's, with a 6-channel input conv; every head is e4e's 16 px head
    # (styles.0 there), and there is no feature pyramid (latlayer1/2).
    body = [(k, [64, 6, 3, 3] if k == "encoder.input_layer.0.weight" else s) for k, s in e4e]
    body = [(k, s) for k, s in body if k.startswith(("encoder.input_layer.", "encoder.body."))]
    template = [(k, s) for k, s in e4e if k.startswith("encoder.styles.0.")]
    assert [k.removeprefix("encoder.styles.0.") for k, _ in template][::2] == [
        *(f"convs.{i}.weight" for i in (0, 2, 4, 6)),
        "linear.weight",
    ]

    with torch.device("meta"):
        encoder = cls()

    assert _ours(encoder) == body + _heads(template, 18)
    # stem 7 tensors; 24 units of 15 (BN, conv, PReLU, conv, BN, SE fc1/fc2), 3 of them with a 6-tensor
    # 1×1 conv + BN shortcut (where the width changes): 7 + 24 * 15 + 3 * 6
    assert len(body) == 385 and encoder.config.encoder_type == cls.__name__


def _torchvision_resnet34_rows(in_channels: int) -> list[tuple[str, list[int]]]:
    """The ReStyle ResNet-34 stem and body as torchvision names them (``layerL.B`` → ``body.N``)."""

    def bn(prefix: str, c: int) -> list[tuple[str, list[int]]]:
        return [(f"{prefix}.{p}", [c]) for p in ("weight", "bias", "running_mean", "running_var")] + [
            (f"{prefix}.num_batches_tracked", [])
        ]

    rows = [
        ("encoder.conv1.weight", [64, in_channels, 7, 7]),
        *bn("encoder.bn1", 64),
        ("encoder.relu.weight", [64]),
    ]
    index, previous = 0, 64
    for channels, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True):
        for block in range(blocks):
            p = f"encoder.body.{index}"
            width_in = previous if block == 0 else channels
            rows += [(f"{p}.conv1.weight", [channels, width_in, 3, 3]), *bn(f"{p}.bn1", channels)]
            rows += [(f"{p}.conv2.weight", [channels, channels, 3, 3]), *bn(f"{p}.bn2", channels)]
            if block == 0 and channels != 64:
                rows += [
                    (f"{p}.downsample.0.weight", [channels, width_in, 1, 1]),
                    *bn(f"{p}.downsample.1", channels),
                ]
            index += 1
        previous = channels
    return rows


@pytest.mark.parametrize("cls", [ResNetBackboneEncoder, ResNetProgressiveBackboneEncoder])
def test_resnet_encoders_have_torchvisions_resnet34_layout(shared, cls):
    template = [
        (k, s) for k, s in _rows(shared, "e4e_ffhq_encode.encoder.tsv") if k.startswith("encoder.styles.0.")
    ]
    with torch.device("meta"):
        encoder = cls(RestyleConfig(encoder_type=cls.__name__, n_styles=16))

    assert _ours(encoder) == _torchvision_resnet34_rows(6) + _heads(template, 16)
    # torchvision's resnet34 has 21,797,672 parameters: without its 3-channel conv1 (9,408), bn1 (128) and
    # fc (513,000), layer1..layer4 hold 21,275,136.
    assert sum(p.numel() for p in encoder.body.parameters()) == 21_275_136


def test_full_size_forward_shapes_and_heads():
    with torch.device("meta"):
        encoder = ProgressiveBackboneEncoder()
        out = encoder(torch.empty(2, 6, 256, 256))
        resnet = ResNetBackboneEncoder(RestyleConfig(encoder_type="ResNetBackboneEncoder", n_styles=14))
        features = resnet.features(torch.empty(1, 6, 256, 256))
        cars = resnet(torch.empty(1, 6, 192, 256))
    assert out.shape == (2, 18, 512)
    assert features.shape == (1, 512, 16, 16)  # the 7×7 stride-2 stem and no max pool: 256 / 16
    assert cars.shape == (1, 14, 512)
    assert all(len(head.convs) == 8 for head in encoder.styles)


@pytest.mark.parametrize("encoder_type", list(ENCODER_TYPES))
def test_config_from_official_shapes_is_the_official_config(encoder_type):
    with torch.device("meta"):
        official = RestyleConfig(encoder_type=encoder_type)
        state = build_encoder(official).state_dict()
    opts = {"encoder_type": encoder_type, "input_nc": 6, "output_size": 1024, "dataset_type": "ffhq_encode"}
    assert config_from_checkpoint(opts, state) == official
    cars = config_from_checkpoint({**opts, "output_size": 512, "dataset_type": "cars_encode"}, state)
    assert (cars.n_styles, cars.picture_rows, cars.output_size) == (16, CARS_PICTURE_ROWS, 512)


def test_encoder_refuses_a_config_of_another_type():
    with pytest.raises(ValueError, match="cannot be built from a 'BackboneEncoder' config"):
        ProgressiveBackboneEncoder(RestyleConfig())
    with pytest.raises(ValueError, match="encoder_type must be one of"):
        RestyleConfig(encoder_type="GradualStyleEncoder")


# ---------------------------------------------------------------------------------------- inference


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One tiny file per encoder type (512 px decoders, so reconstructions are pooled by 2)."""
    folder = tmp_path_factory.mktemp("restyle")
    files = {}
    for seed, encoder_type in enumerate(ENCODER_TYPES):
        path = folder / f"{encoder_type}.pt"
        files[encoder_type] = (path, tiny_restyle_checkpoint(path, encoder_type, size=512, seed=seed))
    return files


@pytest.fixture(scope="module")
def inverters(checkpoints):
    return {name: load_restyle(path) for name, (path, _) in checkpoints.items()}


def _photos(batch: int = 2, seed: int = 5) -> torch.Tensor:
    return torch.rand(batch, 3, 256, 256, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _seen(inverter: RestyleInverter, w_plus: torch.Tensor) -> torch.Tensor:
    """The reconstruction by hand: stored noise buffers, 2×2 average pool from 512 px to 256."""
    decoder = inverter.decoder
    noise = [getattr(decoder.noises, f"noise_{i}") for i in range(decoder.num_layers)]
    return F.avg_pool2d(decoder.synthesis(w_plus, noise), 2)


@pytest.mark.parametrize("encoder_type", list(ENCODER_TYPES))
def test_steps_follow_the_official_recursion(inverters, checkpoints, encoder_type):
    inverter = inverters[encoder_type]
    latent_avg = checkpoints[encoder_type][1]["latent_avg"]
    x = _photos()
    with torch.no_grad():
        steps = inverter.steps(x, 3)
        w = latent_avg + inverter.encoder(
            torch.cat([x, _seen(inverter, latent_avg[None]).expand(2, -1, -1, -1)], 1)
        )
        expected = [w]
        for _ in range(2):
            w = w + inverter.encoder(torch.cat([x, _seen(inverter, w)], 1))
            expected.append(w)
        swapped = latent_avg + inverter.encoder(
            torch.cat([inverter.average_image.expand(2, -1, -1, -1), x], 1)
        )
        final = inverter(x, iterations=3)

    assert len(steps) == 3 and steps[0].shape == (2, 16, TINY_STYLE_DIM)
    for got, want in zip(steps, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(final, steps[-1])
    # Each step really moves the code, and the photo comes first in the 6 channels.
    assert min((b - a).abs().max().item() for a, b in zip(steps, steps[1:], strict=False)) > 1e-2
    assert (swapped - steps[0]).abs().max() > 1e-2


@pytest.mark.parametrize(
    ("encoder_type", "progressive"),
    [
        ("BackboneEncoder", False),
        ("ProgressiveBackboneEncoder", True),
        ("ResNetProgressiveBackboneEncoder", True),
    ],
)
def test_heads_are_codes_or_offsets_from_w0(inverters, encoder_type, progressive):
    encoder = inverters[encoder_type].encoder
    x = torch.cat([_photos(1), _photos(1, seed=6)], 1)
    with torch.no_grad():
        features = encoder.features(x)
        heads = torch.stack([head(features) for head in encoder.styles], dim=1)
        out = encoder(x)
    if progressive:
        torch.testing.assert_close(out[:, 0], heads[:, 0])
        torch.testing.assert_close(out[:, 1:], heads[:, :1] + heads[:, 1:])
    else:
        assert torch.equal(out, heads)
    assert (heads[:, 1:] - heads[:, :1]).abs().max() > 1e-2  # the two rules differ on these weights


def test_average_image_is_the_decoders_image_of_latent_avg(inverters, checkpoints):
    inverter = inverters["BackboneEncoder"]
    latent_avg = checkpoints["BackboneEncoder"][1]["latent_avg"]
    with torch.no_grad():
        expected = _seen(inverter, latent_avg[None])
    assert inverter.average_image.shape == (1, 3, 256, 256)
    torch.testing.assert_close(inverter.average_image, expected)
    assert "average_image" not in inverter.state_dict()  # derived, never saved


def test_reconstructions_use_the_stored_noise(inverters):
    inverter = copy.deepcopy(inverters["ProgressiveBackboneEncoder"])  # its noise is changed below
    x = _photos(1)
    with torch.no_grad():
        before = inverter.steps(x, 2)
        again = inverter.steps(x, 2)
        inverter.decoder.noises.noise_5.normal_()
        inverter.decoder.noises.noise_5.mul_(3)
        after = inverter.steps(x, 2)
    assert all(torch.equal(a, b) for a, b in zip(before, again, strict=True))  # deterministic: no fresh noise
    assert torch.equal(after[0], before[0])  # step 1 reads the average image, computed at load
    assert (after[1] - before[1]).abs().max() > 1e-4  # step 2 reads a reconstruction with the new noise


def test_pooling_from_1024_px_is_a_4x4_average(tmp_path):
    path = tmp_path / "big.pt"
    tiny_restyle_checkpoint(path, "ResNetBackboneEncoder", size=1024)
    inverter = load_restyle(path)
    w = inverter.latent_avg[None] + 0.3
    with torch.no_grad():
        got = inverter.reconstruct(w)
        image = inverter.decoder.synthesis(w)
    assert inverter.latent_avg.shape == (18, TINY_STYLE_DIM)
    torch.testing.assert_close(got, F.avg_pool2d(image, 4))
    assert (got - F.interpolate(image, size=256, mode="bilinear")).abs().max() > 1e-3


def test_batch_equals_single(inverters):
    inverter = inverters["ResNetBackboneEncoder"]
    x = _photos(3)
    with torch.no_grad():
        batched = inverter.steps(x, 3)
        alone = inverter.steps(x[1:2], 3)
    for b, a in zip(batched, alone, strict=True):
        torch.testing.assert_close(b[1:2], a, rtol=1e-5, atol=1e-5)
    assert (batched[-1][0] - batched[-1][1]).abs().max() > 1e-2


def test_cars_read_only_the_picture_band(tmp_path):
    path = tmp_path / "cars.pt"
    tiny_restyle_checkpoint(path, "ResNetProgressiveBackboneEncoder", size=512, dataset_type="cars_encode")
    inverter = load_restyle(path)
    top, bottom = CARS_PICTURE_ROWS
    x = _photos(1)
    other = x.clone()
    other[:, :, :top] = -other[:, :, :top]
    other[:, :, bottom:] = 1.0
    with torch.no_grad():
        steps = inverter.steps(x, 2)
        band = inverter.steps(other, 2)
        w1 = inverter.latent_avg + inverter.encoder(
            torch.cat(
                [
                    x[:, :, top:bottom],
                    F.avg_pool2d(inverter.decoder.synthesis(inverter.latent_avg[None]), 2)[:, :, top:bottom],
                ],
                1,
            )
        )
    assert inverter.config.picture_rows == CARS_PICTURE_ROWS
    assert inverter.average_image.shape == (1, 3, 192, 256)
    torch.testing.assert_close(steps[0], w1)
    assert all(torch.equal(a, b) for a, b in zip(steps, band, strict=True))


def test_invert_equals_forward_on_preprocessed_images(inverters):
    inverter = inverters["BackboneEncoder"]
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, size=(300, 300, 3), dtype=np.uint8)) for _ in range(2)]
    codes = inverter.invert(images, iterations=2)
    with torch.no_grad():
        expected = inverter(torch.stack([to_e4e_input(image, 256) for image in images]), iterations=2)
    assert torch.equal(codes, expected) and not codes.requires_grad
    codes[:, 3:] = codes[:1, 3:]  # later stages edit codes in place: not inference tensors


def test_bad_inputs_raise_value_errors(inverters):
    inverter = inverters["BackboneEncoder"]
    for shape in [(1, 3, 128, 128), (1, 6, 256, 256), (3, 256, 256)]:
        with pytest.raises(ValueError, match=r"\[batch, 3, 256, 256\]"):
            inverter(torch.zeros(shape))
    for iterations in [0, -1, 1.5, True]:
        with pytest.raises(ValueError, match="iterations must be a positive integer"):
            inverter(_photos(1), iterations=iterations)
    with pytest.raises(ValueError, match="photo \\+ reconstruction"):
        inverter.encoder(torch.zeros(1, 3, 256, 256))


def _batch_norm(x: torch.Tensor, bn: torch.nn.BatchNorm2d) -> torch.Tensor:
    shape = (1, -1, 1, 1)
    scale = bn.weight.view(shape) / torch.sqrt(bn.running_var.view(shape) + bn.eps)
    return (x - bn.running_mean.view(shape)) * scale + bn.bias.view(shape)


@pytest.mark.parametrize(("in_channels", "channels", "stride"), [(8, 8, 1), (8, 16, 2)])
def test_resnet_basic_block_by_hand(in_channels, channels, stride):
    block = ResNetBasicBlock(in_channels, channels, stride)
    with torch.no_grad():
        for bn in [m for m in block.modules() if isinstance(m, torch.nn.BatchNorm2d)]:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.2)
            bn.running_mean.normal_(0, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    block.eval()
    x = torch.randn(2, in_channels, 16, 16)
    h = torch.relu(_batch_norm(F.conv2d(x, block.conv1.weight, stride=stride, padding=1), block.bn1))
    h = _batch_norm(F.conv2d(h, block.conv2.weight, padding=1), block.bn2)
    if block.downsample is None:
        shortcut = x
    else:
        conv, bn = block.downsample
        shortcut = _batch_norm(F.conv2d(x, conv.weight, stride=stride), bn)
    with torch.no_grad():
        got = block(x)
    assert got.shape == (2, channels, 16 // stride, 16 // stride)
    assert (block.downsample is None) == (stride == 1)
    torch.testing.assert_close(got, torch.relu(h + shortcut), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------- wrong layouts


@pytest.fixture(scope="module")
def small_checkpoints(tmp_path_factory):
    """Tiny 64 px checkpoints, made once; each test edits a deep copy."""
    folder = tmp_path_factory.mktemp("small")
    return {
        encoder_type: tiny_restyle_checkpoint(folder / f"{encoder_type}.pt", encoder_type, size=64)
        for encoder_type in ("BackboneEncoder", "ResNetBackboneEncoder")
    }


def _broken(tmp_path, small_checkpoints, edit, encoder_type="BackboneEncoder"):
    path = tmp_path / "broken.pt"
    checkpoint = copy.deepcopy(small_checkpoints[encoder_type])
    edit(checkpoint)
    torch.save(checkpoint, path)
    return path


def _state(edit):
    return lambda checkpoint: edit(checkpoint["state_dict"])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            _state(lambda s: s.pop("encoder.styles.3.convs.4.weight")),
            r"1 missing \(encoder\.styles\.3\.convs\.4\.weight\)",
        ),
        (
            _state(lambda s: s.__setitem__("encoder.styles.10.linear.bias", torch.zeros(16))),
            r"1 unexpected \(encoder\.styles\.10\.",
        ),
        (
            _state(lambda s: s.__setitem__("encoder.latlayer1.weight", torch.zeros(16, 16, 1, 1))),
            r"unexpected \(encoder\.latlayer1",
        ),
        (
            _state(lambda s: s.__setitem__("encoder.body.5.res_layer.1.weight", torch.zeros(8, 8, 1, 1))),
            r"encoder\.body\.5\.res_layer\.1\.weight: \[8, 8, 1, 1\] in the file, expected \[8, 8, 3, 3\]",
        ),
        (
            _state(lambda s: s.pop("decoder.to_rgbs.2.conv.weight")),
            r"under 'decoder\.': 1 missing \(decoder\.to_rgbs\.2",
        ),
        (
            _state(lambda s: s.__setitem__("discriminator.convs.0.0.weight", torch.zeros(1))),
            "outside 'encoder.' and 'decoder.'",
        ),
        (lambda c: c.pop("state_dict"), "no 'state_dict'"),
        (lambda c: c.pop("opts"), "'opts' should be a dict"),
        (
            lambda c: c["opts"].__setitem__("encoder_type", "GradualStyleEncoder"),
            "'GradualStyleEncoder' encoder",
        ),
        (lambda c: c["opts"].__setitem__("input_nc", 3), "input_nc=3"),
        (lambda c: c["opts"].__setitem__("output_size", 128), "decoder is a 64 px generator"),
        (lambda c: c["opts"].__setitem__("output_size", 100), "power of two"),
        (lambda c: c.pop("latent_avg"), "no 'latent_avg'"),
        (lambda c: c.__setitem__("latent_avg", torch.zeros(18, 16)), r"'latent_avg' has shape \[18, 16\]"),
        (lambda c: c.__setitem__("latent_avg", torch.full((16,), float("nan"))), "NaN"),
    ],
)
def test_wrong_layouts_are_refused_in_one_line(tmp_path, small_checkpoints, edit, message):
    path = _broken(tmp_path, small_checkpoints, edit)
    with pytest.raises(CheckpointError, match=message) as error:
        load_restyle(path)
    assert "\n" not in str(error.value)


def test_a_resnet_file_labelled_ir_se_names_the_first_differing_keys(tmp_path, small_checkpoints):
    path = _broken(
        tmp_path,
        small_checkpoints,
        lambda c: c["opts"].__setitem__("encoder_type", "BackboneEncoder"),
        "ResNetBackboneEncoder",
    )
    with pytest.raises(
        CheckpointError,
        match=r"BackboneEncoder: \d+ missing \(encoder\.input_layer\.0\.weight.*unexpected \(encoder\.conv1",
    ):
        load_restyle(path)


def test_namespace_opts_and_a_single_w_latent_avg_load(tmp_path):
    path = tmp_path / "namespace.pt"
    checkpoint = tiny_restyle_checkpoint(path, "ProgressiveBackboneEncoder", size=64)
    w = torch.randn(TINY_STYLE_DIM)
    torch.save({**checkpoint, "opts": argparse.Namespace(**checkpoint["opts"]), "latent_avg": w}, path)
    inverter = load_restyle(path)
    assert torch.equal(inverter.latent_avg, w.expand(10, -1))
    assert not any(p.requires_grad for p in inverter.parameters()) and not inverter.training


def test_unsafe_files_are_refused(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"state_dict": {}, "opts": Image.new("RGB", (2, 2))}, path)
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_restyle(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_restyle(tmp_path / "missing.pt")


# ----------------------------------------------------------------------------------------- weights rows


def test_weights_rows_name_the_authors_files_and_the_third_party_copy():
    from jojogan.weights import REGISTRY

    rows = {name: row for name, row in REGISTRY.items() if name.startswith("restyle-")}
    drive = {row.filename: row.drive_id for row in rows.values() if row.drive_id}
    assert drive["restyle_psp_ffhq_encode.pt"] == "1sw6I2lRIB0MpuJkpc8F5BJiSZrc0hjfE"
    assert drive["restyle_e4e_ffhq_encode.pt"] == "1e2oXVeBPXMQoUoC_4TNwAWpOPpSEhE_e"
    assert (
        len(drive) == 9
    )  # FFHQ pSp and e4e; pSp cars, church, AFHQ wild; e4e cars, church, horse, AFHQ wild
    for row in rows.values():
        assert row.drive_id is None or (row.hf_repo, row.url, row.sha256) == (None, None, None), row.name
        types = [t for t in ENCODER_TYPES if f"({t})" in row.layout]
        assert row.layout == "as restyle-e4e" or len(types) == 1, row.name
        assert ("ResNet" in row.layout) == (row.drive_id is not None and "ffhq" not in row.filename), row.name
    copy = rows["restyle-e4e-hf"]
    assert (copy.hf_repo, copy.filename) == ("trysem/restyle-e4e-ffhq", "restyle_e4e_ffhq.pt")
    assert copy.sha256 == "89afa8b3255be61425714397be11f07b34312d76ea22382ecf80001da617da5b"
    assert "third-party" in copy.description and "not checked" in copy.description
