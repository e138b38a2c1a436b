"""LPIPS (Zhang et al., 2018) as an inversion distance, its backbone fetched through the weights manager.

LPIPS compares two images through an ImageNet network: at five depths the channel vectors are scaled to
unit length, their squared differences are weighed per channel by calibrated linear layers, averaged over
the image and summed over the depths.

Where the pieces come from:

* the calibrated linear layers ship inside the ``lpips`` wheel (``lpips/weights/v0.1/<net>.pth``, the
  ``jojogan[lpips]`` extra). They are read from it as a file with ``torch.load(weights_only=True)``; the
  package is not imported, because importing it imports torchvision and its models download their weights
  on their own, outside the manager;
* the backbone is torchvision's ImageNet checkpoint (registry rows ``vgg16`` and ``alexnet``), fetched from
  torchvision's URL and checked against the sha256 prefix in its file name, as ``torch.hub`` checks it. The
  convolutions are declared below at torchvision's layer indices so that the checkpoint's ``features.*``
  tensors load with ``strict=True``; torchvision itself is not needed.

:func:`load_lpips` builds the network; :func:`lpips_available` says whether it can be built without the
network being touched when offline (the default choice of distance should follow it).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from jojogan import weights as manager
from jojogan.errors import CheckpointError, JojoganError
from jojogan.stylegan2.checkpoint import read_weights_file

LpipsNet = Literal["vgg", "alex"]

# Layer specs at torchvision's ``features`` indices: ("conv", in, out, kernel, stride, padding), ("relu",),
# ("pool", kernel, stride). Each network is cut after its last tapped layer.
_VGG16_CHANNELS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


def _vgg16_spec() -> list[tuple]:
    spec, cin = [], 3
    for item in _VGG16_CHANNELS:
        if item == "M":
            spec.append(("pool", 2, 2))
        else:
            spec += [("conv", cin, item, 3, 1, 1), ("relu",)]
            cin = item
    return spec


_ALEXNET_SPEC = [
    ("conv", 3, 64, 11, 4, 2),
    ("relu",),
    ("pool", 3, 2),
    ("conv", 64, 192, 5, 1, 2),
    ("relu",),
    ("pool", 3, 2),
    ("conv", 192, 384, 3, 1, 1),
    ("relu",),
    ("conv", 384, 256, 3, 1, 1),
    ("relu",),
    ("conv", 256, 256, 3, 1, 1),
    ("relu",),
]

_NETS: dict[str, dict] = {
    # taps: the ``features`` indices whose outputs LPIPS compares (relu1_2 ... relu5_3 for VGG16).
    "vgg": {"spec": _vgg16_spec(), "taps": (3, 8, 15, 22, 29), "backbone": "vgg16"},
    "alex": {"spec": _ALEXNET_SPEC, "taps": (1, 4, 7, 9, 11), "backbone": "alexnet"},
}

# LPIPS v0.1 input scaling: images in [-1, 1] are shifted and scaled to ImageNet statistics.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10


def _build(spec: list[tuple]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for kind, *args in spec:
        if kind == "conv":
            cin, cout, kernel, stride, padding = args
            layers.append(nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding))
        elif kind == "relu":
            layers.append(nn.ReLU(inplace=False))  # tapped outputs must not be overwritten
        else:
            layers.append(nn.MaxPool2d(args[0], stride=args[1]))
    return nn.Sequential(*layers)


class LPIPS(nn.Module):
    """LPIPS distance network.

    Args:
        net: ``"vgg"`` (VGG16 backbone, the usual choice for optimisation) or ``"alex"``.

    Call it as ``lpips(images, targets)`` with ``[batch, 3, H, W]`` tensors in ``[-1, 1]`` (``targets`` may
    have batch 1); it returns ``[batch]`` distances. Freshly built its weights are random: use
    :func:`load_lpips`.
    """

    def __init__(self, net: LpipsNet = "vgg"):
        super().__init__()
        if net not in _NETS:
            raise ValueError(f"net must be one of {sorted(_NETS)}, got {net!r}")
        self.net = net
        spec, self.taps = _NETS[net]["spec"], _NETS[net]["taps"]
        self.features = _build(spec[: self.taps[-1] + 1])
        channels = [next(s[2] for s in reversed(spec[: t + 1]) if s[0] == "conv") for t in self.taps]
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)

    def extra_repr(self) -> str:
        return f"net={self.net!r}, taps={self.taps}"

    def tapped(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Backbone activations at the five taps for ``[batch, 3, H, W]`` images in ``[-1, 1]``."""
        # Built per call in the input's dtype, so a float64 run does not carry float32-rounded constants.
        shift = torch.tensor(_SHIFT, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        scale = torch.tensor(_SCALE, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        h = (images - shift) / scale
        out = []
        for index, layer in enumerate(self.features):
            h = layer(h)
            if index in self.taps:
                out.append(h)
        return out

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3 or targets.ndim != 4 or targets.shape[1] != 3:
            raise ValueError(
                f"LPIPS expects [batch, 3, H, W] images and targets, got {tuple(images.shape)} and "
                f"{tuple(targets.shape)}"
            )
        total = 0
        for lin, a, b in zip(self.lins, self.tapped(images), self.tapped(targets), strict=True):
            a = a / (a.square().sum(1, keepdim=True).sqrt() + _EPS)
            b = b / (b.square().sum(1, keepdim=True).sqrt() + _EPS)
            total = total + lin((a - b).square()).mean((2, 3))
        return total.reshape(-1)


def lin_weights_path(net: LpipsNet) -> Path:
    """The calibrated linear layers inside the installed ``lpips`` wheel (the package is not imported).

    Raises:
        JojoganError: ``lpips`` is not installed.
    """
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        raise JojoganError(
            "LPIPS needs the calibrated layers shipped in the 'lpips' package: pip install 'jojogan[lpips]'"
        )
    path = Path(spec.origin).parent / "weights" / "v0.1" / f"{net}.pth"
    if not path.is_file():
        raise JojoganError(f"the installed lpips package has no {path.name} in {path.parent}")
    return path


def lpips_available(net: LpipsNet = "vgg") -> bool:
    """Whether :func:`load_lpips` can work: ``lpips`` installed and the backbone cached or downloadable."""
    if importlib.util.find_spec("lpips") is None:
        return False
    backbone = manager.REGISTRY[_NETS[net]["backbone"]]
    return manager.check_cached(backbone).usable or not manager.is_offline()


def load_lpips(
    net: LpipsNet = "vgg",
    *,
    backbone: str | None = None,
    download: bool = True,
    progress: bool = True,
) -> LPIPS:
    """Build LPIPS with torchvision's backbone (through the weights manager) and lpips' linear layers.

    Args:
        net: ``"vgg"`` or ``"alex"``.
        backbone: a path or registry name of the backbone checkpoint (default: the registry's row for
            ``net``).
        download: fetch the backbone on first use.
        progress: progress bar while downloading.

    Returns:
        The network in eval mode with ``requires_grad`` off (a distance, not a model to train).

    Raises:
        JojoganError: ``lpips`` missing, the backbone missing offline, or a file in the wrong layout.
    """
    model = LPIPS(net)
    path = manager.resolve_weights(backbone or _NETS[net]["backbone"], download=download, progress=progress)
    state = read_weights_file(path)
    features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    features = {k: v for k, v in features.items() if int(k.split(".")[0]) < len(model.features)}
    try:
        model.features.load_state_dict(features, strict=True)
    except RuntimeError as error:
        detail = " ".join(str(error).split())
        raise CheckpointError(
            f"{path.name} does not hold torchvision's {_NETS[net]['backbone']} layout (features.*): "
            f"{detail[:300]}"
        ) from error
    lins = torch.load(lin_weights_path(net), map_location="cpu", weights_only=True)
    for k, lin in enumerate(model.lins):
        lin.weight.data.copy_(lins[f"lin{k}.model.1.weight"])
    return model.eval().requires_grad_(False)
