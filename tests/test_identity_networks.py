"""The identity networks: official layouts pinned, every layer checked from first principles in float64,
the crops' geometry, strict loading and the errors of bad files."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from video_clips import face_photo

from jojogan.errors import CheckpointError
from jojogan.identity import IdentityError, MissingExtraError, load_face_recognizer
from jojogan.identity.arcface_ir_se import IRSEBackbone, load_arcface_ir_se, stage_units_from_state
from jojogan.identity.crops import ARCFACE_TEMPLATE, arcface_template_crop, psp_crop
from jojogan.identity.iresnet import IRESNET_LAYERS, IResNet, layers_from_state
from jojogan.identity.mobilefacenet import MobileFaceNet, imagenet_normalize
from jojogan.identity.onnx_recognizer import load_onnx_recognizer
from jojogan.inversion.ir_se import IR_SE_STAGE_UNITS

from conftest import shared_path

# ------------------------------------------------------------------ first-principles helpers (float64)


def conv(x, weight, bias=None, stride=1, padding=0, groups=1):
    """A 2-D convolution written as sums over kernel taps: out[n, o] = Σ_{c, ky, kx} w[o, c, ky, kx] · x."""
    x = F.pad(x, (padding,) * 4)
    n, channels, height, width = x.shape
    out_channels, per_group, kh, kw = weight.shape
    oh, ow = (height - kh) // stride + 1, (width - kw) // stride + 1
    xg = x.view(n, groups, channels // groups, height, width)
    wg = weight.view(groups, out_channels // groups, per_group, kh, kw)
    out = x.new_zeros(n, groups, out_channels // groups, oh, ow)
    for ky in range(kh):
        for kx in range(kw):
            patch = xg[
                :, :, :, ky : ky + stride * (oh - 1) + 1 : stride, kx : kx + stride * (ow - 1) + 1 : stride
            ]
            tap = wg[:, :, :, ky, kx]
            if per_group == 1 and out_channels == groups:  # depthwise: one product per channel
                out += patch * tap.view(1, groups, 1, 1, 1)
            else:
                out += torch.einsum("ngchw,goc->ngohw", patch, tap)
    out = out.reshape(n, out_channels, oh, ow)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def batch_norm(x, bn):
    """Inference batch norm: (x - running_mean) / sqrt(running_var + eps) · weight + bias, per channel."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = bn.weight.view(shape) / torch.sqrt(bn.running_var.view(shape) + bn.eps)
    return (x - bn.running_mean.view(shape)) * scale + bn.bias.view(shape)


def prelu(x, module):
    """max(x, 0) + a · min(x, 0) with one slope a per channel."""
    return torch.where(x >= 0, x, x * module.weight.view(1, -1, 1, 1))


def randomize_(module: torch.nn.Module, seed: int = 0, scale: float = 1.0) -> torch.nn.Module:
    """Give every parameter and batch-norm statistic seeded random values, so that each one matters.

    Conv/linear weights are scaled by ``scale / sqrt(fan-in)`` to keep activations of order one.
    """
    gen = torch.Generator().manual_seed(seed)

    # Drawn in float32 (a quarter of float64's cost) and copied into the tensor's dtype: the values only
    # have to be seeded and spread out, the computations on them stay in the tensor's precision.
    def rand(tensor, low, high):
        tensor.copy_(torch.rand(tensor.shape, generator=gen) * (high - low) + low)

    def randn(tensor, std, mean=0.0):
        tensor.copy_(torch.randn(tensor.shape, generator=gen) * std + mean)

    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.PReLU):
                rand(m.weight, 0.0, 0.5)
            elif isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                randn(m.weight, 0.2, 1.0)
                randn(m.bias, 0.2)
                randn(m.running_mean, 0.2)
                rand(m.running_var, 0.5, 1.5)
            elif isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                randn(m.weight, scale / m.weight[0].numel() ** 0.5)
                if m.bias is not None:
                    randn(m.bias, 0.2)
    return module.eval()


def random_net(factory, seed: int, scale: float = 1.0, dtype=torch.float32) -> torch.nn.Module:
    """``randomize_`` on a network built without its default initialisation, which it would overwrite:
    ``randomize_`` sets every parameter and batch-norm statistic, and the batch counters are zeroed here."""
    with torch.device("meta"):
        net = factory().to(dtype)
    net = net.to_empty(device="cpu")
    for name, buffer in net.named_buffers():
        if name.endswith("num_batches_tracked"):
            buffer.zero_()
    return randomize_(net, seed=seed, scale=scale)


def read_layout(name: str) -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in shared_path("reference", "checkpoint-layouts", name).read_text().splitlines():
        if line.strip():
            key, shape = line.split("\t")
            rows.append((key, tuple(int(v) for v in shape.strip("[]").split(",") if v.strip())))
    return rows


def layout_of(module: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(key, tuple(value.shape)) for key, value in module.state_dict().items()]


def meta(factory):
    with torch.device("meta"):
        return factory()


# ------------------------------------------------------------------------------------------ layouts


def test_mobilefacenet_layout_is_the_official_file():
    expected = read_layout("mobilefacenet.tsv")
    assert layout_of(meta(MobileFaceNet)) == expected


def test_ir_se50_layout_is_the_e4e_body_plus_the_output_layer():
    """Names from two sources: the e4e encoder layout (stem and body, shared) and pSp's ``model_irse.py``
    (``output_layer``: BatchNorm2d, Dropout, Flatten, Linear(512·7·7, 512), BatchNorm1d, in that order)."""
    e4e = read_layout("e4e_ffhq_encode.encoder.tsv")
    stem = [(k[len("encoder.") :], s) for k, s in e4e if k.startswith("encoder.input_layer.")]
    body = [(k[len("encoder.") :], s) for k, s in e4e if k.startswith("encoder.body.")]
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    output = [(f"output_layer.0.{n}", () if n == "num_batches_tracked" else (512,)) for n in bn]
    output += [("output_layer.3.weight", (512, 512 * 7 * 7)), ("output_layer.3.bias", (512,))]
    output += [(f"output_layer.4.{n}", () if n == "num_batches_tracked" else (512,)) for n in bn]
    assert {k.split(".")[1] for k, _ in body} == {str(i) for i in range(24)}  # 3 + 4 + 14 + 3 units
    network = meta(IRSEBackbone)
    assert layout_of(network) == stem + output + body
    assert stage_units_from_state(network.state_dict()) == (3, 4, 14, 3)


@pytest.mark.parametrize("depth", list(IRESNET_LAYERS))
def test_iresnet_layout_and_depth_from_shapes(depth):
    layers = IRESNET_LAYERS[depth]
    state = meta(lambda: IResNet(layers)).state_dict()
    keys = list(state)
    # arcface_torch's order: stem, layers, bn2, fc, features
    assert keys[:7] == [
        "conv1.weight",
        *(f"bn1.{n}" for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")),
        "prelu.weight",
    ]
    assert keys[-7:-5] == ["fc.weight", "fc.bias"] and keys[-5] == "features.weight"
    assert state["fc.weight"].shape == (512, 512 * 7 * 7)
    assert state["layer1.0.downsample.0.weight"].shape == (64, 64, 1, 1)
    assert state["layer4.0.downsample.0.weight"].shape == (512, 256, 1, 1)
    assert "layer1.1.downsample.0.weight" not in state
    assert state["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)
    assert layers_from_state(state) == layers
    units = sum(1 for k in keys if k.endswith(".conv1.weight") and k.startswith("layer"))
    assert units == sum(layers)


# ------------------------------------------------------------------------ forward passes by hand


def _mobilefacenet_by_hand(net: MobileFaceNet, x: torch.Tensor, relu6=True) -> torch.Tensor:
    def act6(v):
        return v.clamp(0, 6) if relu6 else v.clamp(min=0)

    def conv_bn_act(seq, v, stride=1, groups=1, activate=True):
        c, bn = seq[0], seq[1]
        v = batch_norm(
            conv(v, c.weight, stride=stride, padding=(c.weight.shape[-1] - 1) // 2, groups=groups), bn
        )
        return act6(v) if activate else v

    v = conv_bn_act(net.conv1, x, stride=2)
    dw = net.dw_conv
    v = torch.relu(batch_norm(conv(v, dw.depthwise.weight, padding=1, groups=v.shape[1]), dw.bn1))
    v = torch.relu(batch_norm(conv(v, dw.pointwise.weight), dw.bn2))
    settings = [(2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)]
    strides = [s if i == 0 else 1 for _, _, n, s in settings for i in range(n)]
    for unit, stride in zip(net.features, strides, strict=True):
        expand, depthwise, project, project_bn = unit.conv
        h = conv_bn_act(expand, v)
        h = conv_bn_act(depthwise, h, stride=stride, groups=h.shape[1])
        h = batch_norm(conv(h, project.weight), project_bn)
        v = v + h if stride == 1 and v.shape == h.shape else h
    v = conv_bn_act(net.conv2, v)
    g = net.gdconv
    v = batch_norm(conv(v, g.depthwise.weight, groups=v.shape[1]), g.bn)
    assert v.shape[-2:] == (1, 1)
    v = batch_norm(conv(v, net.conv3.weight, net.conv3.bias), net.bn)
    return v.flatten(1)


def test_mobilefacenet_forward_from_first_principles():
    net = random_net(MobileFaceNet, seed=1, scale=2.0, dtype=torch.float64)
    x = torch.randn(1, 3, 112, 112, dtype=torch.float64)
    with torch.no_grad():
        got = net(x)
        expected = _mobilefacenet_by_hand(net, x)
        plain_relu = _mobilefacenet_by_hand(net, x, relu6=False)
    assert got.shape == (1, 128)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    # ReLU6 is observable with these weights: the check would fail for a plain ReLU.
    assert (plain_relu - expected).abs().max() > 1e-3


def _ir_se_unit_by_hand(unit, x):
    bn1, conv1, act, conv2, bn2, se = unit.res_layer
    r = conv(batch_norm(x, bn1), conv1.weight, padding=1)
    r = batch_norm(conv(prelu(r, act), conv2.weight, stride=unit.stride, padding=1), bn2)
    gate = torch.sigmoid(
        conv(torch.relu(conv(r.mean(dim=(2, 3), keepdim=True), se.fc1.weight)), se.fc2.weight)
    )
    if unit.in_channels == unit.depth:
        shortcut = x[:, :, :: unit.stride, :: unit.stride]
    else:
        shortcut = batch_norm(
            conv(x, unit.shortcut_layer[0].weight, stride=unit.stride), unit.shortcut_layer[1]
        )
    return r * gate + shortcut


def test_ir_se_backbone_forward_from_first_principles():
    net = random_net(lambda: IRSEBackbone((1, 1, 2, 1)), seed=2, dtype=torch.float64)
    x = torch.randn(1, 3, 112, 112, dtype=torch.float64)
    with torch.no_grad():
        stem_conv, stem_bn, stem_act = net.input_layer
        v = prelu(batch_norm(conv(x, stem_conv.weight, padding=1), stem_bn), stem_act)
        for unit in net.body:
            v = _ir_se_unit_by_hand(unit, v)
        assert v.shape == (1, 512, 7, 7)
        bn2d, _, _, linear, bn1d = net.output_layer
        v = batch_norm(batch_norm(v, bn2d).flatten(1) @ linear.weight.T + linear.bias, bn1d)
        expected = v / v.norm(dim=1, keepdim=True)
        got = net(x)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(1, dtype=torch.float64))


def test_iresnet_forward_from_first_principles():
    net = random_net(lambda: IResNet((1, 2, 1, 1)), seed=3, dtype=torch.float64)
    x = torch.randn(1, 3, 112, 112, dtype=torch.float64)
    with torch.no_grad():
        v = prelu(batch_norm(conv(x, net.conv1.weight, padding=1), net.bn1), net.prelu)
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            for index, unit in enumerate(layer):
                stride = 2 if index == 0 else 1
                h = batch_norm(conv(batch_norm(v, unit.bn1), unit.conv1.weight, padding=1), unit.bn2)
                h = batch_norm(
                    conv(prelu(h, unit.prelu), unit.conv2.weight, stride=stride, padding=1), unit.bn3
                )
                if unit.downsample is None:
                    v = h + v
                else:
                    down_conv, down_bn = unit.downsample
                    v = h + batch_norm(conv(v, down_conv.weight, stride=stride), down_bn)
        assert v.shape == (1, 512, 7, 7)
        expected = batch_norm(batch_norm(v, net.bn2).flatten(1) @ net.fc.weight.T + net.fc.bias, net.features)
        got = net(x)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_conv_helper_is_a_convolution():
    """The helper itself, against the definition at one output position (groups, stride, padding)."""
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64)
    out = conv(x, w, stride=2, padding=1, groups=2)
    xp = F.pad(x, (1, 1, 1, 1))
    # output channel 4 belongs to group 1 (input channels 2, 3); position (1, 2) reads rows 2..4, cols 4..6
    expected = sum(
        w[4, c, ky, kx] * xp[0, 2 + c, 2 + ky, 4 + kx] for c in range(2) for ky in range(3) for kx in range(3)
    )
    torch.testing.assert_close(out[0, 4, 1, 2], expected)


# -------------------------------------------------------------------------------------------- crops


def test_psp_crop_is_psps_window_pooled():
    """On a 256 px row ramp, each output row is the mean of the adaptive-pooling window over rows 35:223."""
    rows = torch.arange(256, dtype=torch.float64).view(1, 1, 256, 1).expand(1, 3, 256, 256)
    out = psp_crop(rows.contiguous())
    assert out.shape == (1, 3, 112, 112)
    for i in (0, 1, 55, 111):
        start, end = math.floor(i * 188 / 112), math.ceil((i + 1) * 188 / 112)
        assert out[0, 0, i, 7].item() == pytest.approx(35 + (start + end - 1) / 2)


def test_arcface_crop_sends_the_template_eyes_where_the_ffhq_rule_puts_them():
    """Independent arithmetic: the FFHQ rule applied to the template's eyes and mouth corners."""
    t = ARCFACE_TEMPLATE
    eye_mid, mouth_mid = (t[0] + t[1]) / 2, (t[3] + t[4]) / 2
    eye_to_eye, eye_to_mouth = t[1] - t[0], mouth_mid - eye_mid
    side = 2 * max(np.hypot(*eye_to_eye) * 2, np.hypot(*eye_to_mouth) * 1.8)
    centre = eye_mid + 0.1 * eye_to_mouth
    size = 1024
    ys, xs = torch.meshgrid(
        torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij"
    )
    image = torch.stack([(xs + 0.5) / size, (ys + 0.5) / size, xs * 0]).unsqueeze(0)
    out = arcface_template_crop(image)
    for point in (t[0], t[1], t[3]):
        col, row = int(point[0]), int(point[1])
        # FFHQ position of this template pixel's centre (rotation of 0.3° ignored: < 0.5 px here)
        expected = (np.array([col + 0.5, row + 0.5]) - centre) / side + 0.5
        assert out[0, 0, row, col].item() == pytest.approx(expected[0], abs=0.6 / 112 * 0.77)
        assert out[0, 1, row, col].item() == pytest.approx(expected[1], abs=0.6 / 112 * 0.77)


def test_arcface_crop_puts_real_landmarks_on_the_template():
    """On a real FFHQ-aligned photo, dlib's landmarks land within a few pixels of the 112 px template.

    The photo is scaled to 720 px high (dlib's detection and the crop's padding cost scale with its pixels):
    its landmarks still span ~300 px, far more than the 112 px template, and their distances to the template
    points are those of the full 1079 px photo (largest 5.3 px either way)."""
    from jojogan.inversion.align import align_face

    face = align_face(face_photo("iu.jpeg", height=720), 1024)
    marks = face.photo_to_aligned(face.landmarks) / 1024
    points = np.stack([marks[36:42].mean(0), marks[42:48].mean(0), marks[30], marks[48], marks[54]])
    size = 1024
    ys, xs = torch.meshgrid(
        torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij"
    )
    image = torch.stack([(xs + 0.5) / size, (ys + 0.5) / size, xs * 0]).unsqueeze(0)
    coords = arcface_template_crop(image)[0, :2].permute(1, 2, 0).reshape(-1, 2).numpy()
    for point, target in zip(points, ARCFACE_TEMPLATE, strict=True):
        nearest = np.argmin(((coords - point) ** 2).sum(1))
        found = np.array([nearest % 112 + 0.5, nearest // 112 + 0.5])
        assert np.hypot(*(found - target)) < 6, (point, target, found)


def test_crops_are_differentiable():
    x = torch.randn(1, 3, 20, 20, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(psp_crop, (x,), fast_mode=True)
    assert torch.autograd.gradcheck(arcface_template_crop, (x,), fast_mode=True)


def test_crops_refuse_non_square_batches():
    with pytest.raises(ValueError, match=r"square"):
        psp_crop(torch.zeros(1, 3, 64, 32))
    with pytest.raises(ValueError, match=r"\[batch, 3, H, H\]"):
        arcface_template_crop(torch.zeros(3, 64, 64))


def test_imagenet_normalize_matches_torchvision_formula():
    x = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    got = imagenet_normalize(x)[0, :, 0, 0]
    expected = torch.tensor([(0.0 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (1.0 - 0.406) / 0.225])
    torch.testing.assert_close(got, expected)


# ----------------------------------------------------------------------------------- loading, errors


def _mobilefacenet_file():
    return shared_path("weights", "mobilefacenet.pt")


def test_real_mobilefacenet_loads_strictly_and_is_differentiable():
    recognizer = load_face_recognizer("mobilefacenet", _mobilefacenet_file())
    state = torch.load(_mobilefacenet_file(), map_location="cpu", weights_only=True)
    for key, value in recognizer.network.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert not any(p.requires_grad for p in recognizer.network.parameters())
    assert not recognizer.network.training
    images = (torch.rand(2, 3, 128, 128) * 2 - 1).requires_grad_(True)
    embeddings = recognizer.embed(images)
    assert embeddings.shape == (2, 128) and recognizer.embedding_dim == 128
    embeddings.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_a_weights_path_alone_finds_its_network():
    recognizer = load_face_recognizer(str(_mobilefacenet_file()))
    assert recognizer.name == "mobilefacenet"


def test_wrong_layout_names_the_differing_keys(tmp_path):
    state = torch.load(_mobilefacenet_file(), map_location="cpu", weights_only=True)
    state["conv3.renamed"] = state.pop("conv3.weight")
    state["bn.weight"] = state["bn.weight"][:64]
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as error:
        load_face_recognizer("mobilefacenet", path)
    message = str(error.value)
    assert "MobileFaceNet" in message and "conv3.weight" in message and "conv3.renamed" in message
    assert "bn.weight: [64] in the file, expected [128]" in message


def test_a_file_of_no_known_network_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"linear.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match=r"not a face recognizer.*linear\.weight"):
        load_face_recognizer(str(path))


def test_iresnet_file_is_read_with_its_depth(tmp_path):
    net = random_net(lambda: IResNet(IRESNET_LAYERS["r18"]), seed=4)
    path = tmp_path / "backbone.pth"
    torch.save(net.state_dict(), path)
    recognizer = load_face_recognizer("arcface-iresnet", path)
    assert recognizer.network.layers == IRESNET_LAYERS["r18"]
    x = torch.rand(1, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(recognizer.network(x), net(x))


def test_ir_se_file_loads_and_other_depths_name_what_differs(tmp_path):
    # The state stays in memory (the loader takes it as read): a 175 MB file would only cost time here.
    net = random_net(lambda: IRSEBackbone(IR_SE_STAGE_UNITS[50]), seed=5)
    path = tmp_path / "model_ir_se50.pth"
    recognizer = load_arcface_ir_se(path, state=net.state_dict())
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(recognizer.embed(x), net(psp_crop(x)))
    state = net.state_dict()
    state.pop("body.23.res_layer.5.fc2.weight")
    with pytest.raises(CheckpointError, match=r"IR-SE50.*body\.23\.res_layer\.5\.fc2\.weight"):
        load_arcface_ir_se(path, state=state)


def test_unknown_names_and_missing_files_are_clear(tmp_path):
    with pytest.raises(IdentityError, match=r"unknown identity network 'facenet'.*mobilefacenet"):
        load_face_recognizer("facenet")
    with pytest.raises(IdentityError, match=r"mobilefacenet recognizer needs its weights file"):
        load_face_recognizer("mobilefacenet")
    with pytest.raises(CheckpointError, match=r"not found"):
        load_face_recognizer("mobilefacenet", tmp_path / "absent.pt")


def test_nan_embeddings_are_refused():
    recognizer = load_face_recognizer("mobilefacenet", _mobilefacenet_file())
    images = torch.zeros(1, 3, 112, 112)
    images[0, 0, 50, 50] = float("nan")
    with pytest.raises(IdentityError, match=r"NaN or infinite embedding"):
        recognizer.embed(images)


# -------------------------------------------------------------------------------------------- ONNX


def _tiny_onnx(path, side=112, dim=8):
    """input [N, 3, side, side] → spatial mean [N, 3] → MatMul [3, dim] + bias: an 'embedding' we can
    compute by hand."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((3, dim)).astype(np.float32)
    bias = rng.standard_normal(dim).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input.1"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["projected"]),
            helper.make_node("Add", ["projected", "b"], ["683"]),
        ],
        "tiny_recognizer",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, side, side])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["N", dim])],
        initializer=[numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return weight, bias


def test_onnx_recognizer_runs_the_graph_on_the_template_crop(tmp_path):
    pytest.importorskip("onnxruntime")
    path = tmp_path / "w600k_r50.onnx"
    weight, bias = _tiny_onnx(path)
    recognizer = load_face_recognizer(str(path))
    assert recognizer.name == "arcface-w600k-r50" and not recognizer.differentiable
    images = torch.rand(2, 3, 256, 256) * 2 - 1
    expected = arcface_template_crop(images).mean(dim=(2, 3)).numpy() @ weight + bias
    torch.testing.assert_close(recognizer.embed(images), torch.from_numpy(expected), rtol=1e-5, atol=1e-5)


def test_onnx_file_with_another_input_is_refused(tmp_path):
    pytest.importorskip("onnxruntime")
    path = tmp_path / "other.onnx"
    _tiny_onnx(path, side=64)
    with pytest.raises(CheckpointError, match=r"reads \['N', 3, 64, 64\].*\[N, 3, 112, 112\]"):
        load_onnx_recognizer(path)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match=r"not a readable ONNX model"):
        load_onnx_recognizer(tmp_path / "junk.onnx")


def test_onnx_without_onnxruntime_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes ``import onnxruntime`` fail
    with pytest.raises(MissingExtraError, match=r'pip install "jojogan\[onnx\]"'):
        load_face_recognizer("arcface-w600k-r50", tmp_path / "w600k_r50.onnx")
