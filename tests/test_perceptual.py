"""LPIPS: torchvision's layouts, float64 first principles, parity with the lpips package, and the backbone
fetched through the weights manager from a 127.0.0.1 mirror."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import threading
import types
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
import torch.nn.functional as F

from jojogan import weights as manager
from jojogan.errors import CheckpointError, JojoganError
from jojogan.inversion.project import project
from jojogan.perceptual import LPIPS, lin_weights_path, load_lpips, lpips_available

from factories import tiny_generator

HAVE_LPIPS = importlib.util.find_spec("lpips") is not None

# torchvision's ``features`` layouts: index -> (out, in, kernel) of each convolution.
VGG16_CONVS = {
    0: (64, 3, 3),
    2: (64, 64, 3),
    5: (128, 64, 3),
    7: (128, 128, 3),
    10: (256, 128, 3),
    12: (256, 256, 3),
    14: (256, 256, 3),
    17: (512, 256, 3),
    19: (512, 512, 3),
    21: (512, 512, 3),
    24: (512, 512, 3),
    26: (512, 512, 3),
    28: (512, 512, 3),
}
ALEXNET_CONVS = {0: (64, 3, 11), 3: (192, 64, 5), 6: (384, 192, 3), 8: (256, 384, 3), 10: (256, 256, 3)}


def _seeded(net: str, seed: int = 0) -> LPIPS:
    """LPIPS with seeded random backbone and positive linear weights (as calibrated ones are)."""
    model = LPIPS(net)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(0.1 * torch.randn(param.shape, generator=gen))
        for lin in model.lins:
            lin.weight.abs_()
    return model.eval()


@pytest.mark.parametrize(("net", "convs"), [("vgg", VGG16_CONVS), ("alex", ALEXNET_CONVS)])
def test_backbone_keys_are_torchvisions(net, convs):
    expected = {}
    for index, (cout, cin, k) in convs.items():
        expected[f"{index}.weight"] = (cout, cin, k, k)
        expected[f"{index}.bias"] = (cout,)
    got = {k: tuple(v.shape) for k, v in LPIPS(net).features.state_dict().items()}
    assert got == expected


def _reference_lpips(model: LPIPS, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS written out with functional ops in float64 from the published recipe."""
    state = {k: v.double() for k, v in model.features.state_dict().items()}
    shift = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float64).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float64).view(1, 3, 1, 1)

    def taps(img):
        h, out = (img.double() - shift) / scale, []
        for index, layer in enumerate(model.features):
            if isinstance(layer, torch.nn.Conv2d):
                h = F.conv2d(h, state[f"{index}.weight"], state[f"{index}.bias"], layer.stride, layer.padding)
            elif isinstance(layer, torch.nn.ReLU):
                h = h.clamp_min(0)
            else:
                h = F.max_pool2d(h, layer.kernel_size, layer.stride)
            if index in model.taps:
                out.append(h)
        return out

    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for lin, a, b in zip(model.lins, taps(x), taps(y), strict=True):
        a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        w = lin.weight.double().view(1, -1, 1, 1)
        total += ((a - b).pow(2) * w).sum(1).mean((1, 2))
    return total


# 16 px is the smallest VGG16 input that keeps every tap (relu5_3 at 1 x 1).
@pytest.mark.parametrize(("net", "size"), [("alex", 48), ("vgg", 16)])
def test_matches_first_principles_in_float64(net, size):
    model = _seeded(net).double()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, size, size, generator=gen, dtype=torch.float64) * 2 - 1
    y = torch.rand(2, 3, size, size, generator=gen, dtype=torch.float64) * 2 - 1
    got = model(x, y)
    assert got.shape == (2,)
    torch.testing.assert_close(got, _reference_lpips(model, x, y), rtol=1e-12, atol=1e-14)
    assert torch.all(got > 0)
    if net == "alex":  # identity and a batch-1 target (how inversion calls it); once is enough
        torch.testing.assert_close(model(x, x), torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-12)
        torch.testing.assert_close(model(x, y[:1]), torch.stack([got[0], model(x[1:], y[:1])[0]]))


@pytest.mark.skipif(not HAVE_LPIPS, reason="needs the lpips package (pip install 'jojogan[lpips]')")
@pytest.mark.parametrize(("net", "size"), [("alex", 64), ("vgg", 16)])
def test_parity_with_the_lpips_package(net, size, monkeypatch):
    """The lpips package's own LPIPS, its torchvision backbone replaced by ours (same weights), agrees.

    torchvision is stubbed: the package only asks it for ``models.<net>(pretrained=False).features``.
    """
    ours = _seeded(net)
    models = types.SimpleNamespace(
        vgg16=lambda pretrained=False, **_: types.SimpleNamespace(features=ours.features),
        alexnet=lambda pretrained=False, **_: types.SimpleNamespace(features=ours.features),
    )
    monkeypatch.setitem(sys.modules, "torchvision", types.SimpleNamespace(models=models))
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    before = set(sys.modules)
    try:
        import lpips

        reference = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False).eval()
    finally:
        for name in set(sys.modules) - before:  # the package was imported against the stub
            del sys.modules[name]
    lins = torch.load(lin_weights_path(net), map_location="cpu", weights_only=True)
    with torch.no_grad():
        for k, lin in enumerate(ours.lins):
            lin.weight.copy_(lins[f"lin{k}.model.1.weight"])
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, size, size, generator=gen) * 2 - 1
    y = torch.rand(2, 3, size, size, generator=gen) * 2 - 1
    with torch.no_grad():
        expected = reference(x, y).reshape(-1)
        got = ours(x, y)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    assert float(expected.min()) > 0


# ------------------------------------------------------------------------------------------ manager
@pytest.fixture
def mirror(tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    monkeypatch.setenv("JOJOGAN_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("JOJOGAN_WEIGHTS_MIRROR", f"http://127.0.0.1:{httpd.server_address[1]}")
    for switch in ("JOJOGAN_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(switch, raising=False)
    yield served
    httpd.shutdown()
    httpd.server_close()


def _serve_backbone(served, monkeypatch, prefix_ok=True):
    """A torchvision-layout AlexNet checkpoint (features + a small classifier) named like torchvision's."""
    source = _seeded("alex", seed=5)
    state = {f"features.{k}": v for k, v in source.features.state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(4, 9216)  # ignored, as a full checkpoint's head is
    staging = served / "staging.pth"
    torch.save(state, staging)
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()
    prefix = digest[:8] if prefix_ok else ("0" * 8 if digest[:8] != "0" * 8 else "1" * 8)
    filename = f"alexnet-owt-{digest[:8]}.pth"
    staging.rename(served / filename)
    entry = manager.WeightsEntry(
        "alexnet", filename, "test AlexNet", "test", sha256_prefix=prefix, url="https://example.invalid/x"
    )
    monkeypatch.setattr(manager, "REGISTRY", {**manager.REGISTRY, "alexnet": entry})
    return source, entry


@pytest.mark.skipif(not HAVE_LPIPS, reason="needs the lpips package (pip install 'jojogan[lpips]')")
def test_load_fetches_the_backbone_through_the_manager(mirror, monkeypatch):
    source, entry = _serve_backbone(mirror, monkeypatch)
    monkeypatch.setenv("JOJOGAN_OFFLINE", "1")
    assert not lpips_available("alex")  # not cached and offline: LPIPS stays off
    with pytest.raises(JojoganError, match="downloads are off"):
        load_lpips("alex")
    monkeypatch.delenv("JOJOGAN_OFFLINE")
    assert lpips_available("alex")
    model = load_lpips("alex", progress=False)
    for key, value in source.features.state_dict().items():
        assert torch.equal(model.features.state_dict()[key], value), key
    lins = torch.load(lin_weights_path("alex"), map_location="cpu", weights_only=True)
    assert torch.equal(model.lins[2].weight, lins["lin2.model.1.weight"])
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    assert manager.check_cached(entry).state == "verified"
    monkeypatch.setenv("JOJOGAN_OFFLINE", "1")
    assert lpips_available("alex")  # cached now


def test_a_backbone_with_the_wrong_hash_prefix_is_refused(mirror, monkeypatch):
    _source, entry = _serve_backbone(mirror, monkeypatch, prefix_ok=False)
    with pytest.raises(manager.WeightsDownloadError, match=f"registry expects {entry.sha256_prefix}"):
        load_lpips("alex", progress=False)
    assert not manager.cached_path(entry).exists()


def test_a_checkpoint_in_another_layout_is_refused(tmp_path):
    bad = tmp_path / "not-alexnet.pth"
    torch.save({"features.0.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(CheckpointError, match="does not hold torchvision's alexnet layout"):
        load_lpips("alex", backbone=str(bad))


def test_real_registry_rows_point_at_torchvision():
    vgg, alex = manager.REGISTRY["vgg16"], manager.REGISTRY["alexnet"]
    assert (
        vgg.url == "https://download.pytorch.org/models/vgg16-397923af.pth"
        and vgg.sha256_prefix == "397923af"
    )
    assert alex.url == "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
    assert alex.sha256_prefix == "7be5be79"


def test_drives_optimisation_inversion():
    """The network is what ``project(..., lpips=...)`` expects: [batch] out, gradients to the image."""
    gen, model = tiny_generator(32, seed=3), _seeded("alex", seed=4)
    with torch.no_grad():
        target = gen(torch.randn(1, gen.style_dim, generator=torch.Generator().manual_seed(6))).clamp(-1, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = project(gen, target, lpips=model, steps=5, w_plus_steps=1, pixel_weight=0.0, seed=0)
    assert all(torch.isfinite(torch.tensor(result.distances)))
    assert result.distances[-1] < 0.8 * result.distances[0], result.distances
    for key, value in model.state_dict().items():  # a distance, not trained
        assert torch.equal(value, before[key]), key
