"""MobileFaceNet (Chen et al., 2018) as trained by foamliu/MobileFaceNet (Apache-2.0): a 1 M-parameter,
128-d ArcFace-margin face embedder, small enough to be the fast CPU choice.

Architecture and tensor names follow that repository's ``MobileFaceNet`` (read for the layout only):
``conv1`` (conv 3×3 stride 2 + BN + ReLU6), ``dw_conv`` (depthwise 3×3 + BN + ReLU, pointwise + BN + ReLU),
``features.0..14`` (MobileNetV2 inverted residuals: 1×1 expansion + BN + ReLU6, depthwise 3×3 + BN +
ReLU6, 1×1 projection + BN, a skip when shape allows; settings t, c, n, s = (2, 64, 5, 2), (4, 128, 1, 2),
(2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)), ``conv2`` (1×1 to 512 + BN + ReLU6), ``gdconv``
(global depthwise 7×7 + BN), ``conv3`` (1×1 to 128, with bias) and ``bn``. The layout is pinned against
``mobilefacenet.tsv`` by the tests.

Input: RGB 112×112 normalised with the ImageNet mean and standard deviation (the repository's
``data_gen.py`` transforms), faces aligned to the five-point ArcFace template (its MTCNN alignment).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from jojogan.identity.crops import arcface_template_crop
from jojogan.identity.recognizer import TorchRecognizer, load_network_state

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MOBILEFACENET_SETTINGS",
    "MobileFaceNet",
    "imagenet_normalize",
    "load_mobilefacenet",
]

MOBILEFACENET_SETTINGS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))
"""Inverted-residual stages: expansion t, output channels c, units n, first stride s."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _conv_bn_relu6(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(),
    )


class DepthwiseSeparable(nn.Module):
    """Depthwise 3×3 → BN → ReLU → pointwise 1×1 → BN → ReLU (``dw_conv``), no biases."""

    def __init__(self, channels: int):
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, channels, h, w]`` → same shape."""
        x = torch.relu(self.bn1(self.depthwise(x)))
        return torch.relu(self.bn2(self.pointwise(x)))


class GlobalDepthwise(nn.Module):
    """Depthwise conv over the whole 7×7 map, then BN (``gdconv``): a learned, per-channel pooling."""

    def __init__(self, channels: int, kernel: int = 7):
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, kernel, groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, channels, 7, 7]`` → ``[batch, channels, 1, 1]``."""
        return self.bn(self.depthwise(x))


class InvertedResidual(nn.Module):
    """MobileNetV2 unit: ``conv.0`` expand (1×1), ``conv.1`` depthwise 3×3 with the stride, ``conv.2``/
    ``conv.3`` linear 1×1 projection + BN; the input is added back when stride is 1 and widths match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        self.residual = stride == 1 and in_channels == out_channels
        self.conv = nn.Sequential(
            _conv_bn_relu6(in_channels, hidden, 1),
            _conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, in, h, w]`` → ``[batch, out, h / stride, w / stride]``."""
        return x + self.conv(x) if self.residual else self.conv(x)

    def extra_repr(self) -> str:
        return f"residual={self.residual}"


class MobileFaceNet(nn.Module):
    """The network: ``[batch, 3, 112, 112]`` ImageNet-normalised RGB → ``[batch, 128]`` embeddings."""

    def __init__(self, embedding_dim: int = 128):
        super().__init__()
        # Attribute order is the official state-dict order (``features`` was assigned last there).
        self.conv1 = _conv_bn_relu6(3, 64, 3, stride=2)
        self.dw_conv = DepthwiseSeparable(64)
        units: list[nn.Module] = []
        channels = 64
        for expansion, out_channels, count, stride in MOBILEFACENET_SETTINGS:
            for i in range(count):
                units.append(InvertedResidual(channels, out_channels, stride if i == 0 else 1, expansion))
                channels = out_channels
        self.conv2 = _conv_bn_relu6(channels, 512, 1)
        self.gdconv = GlobalDepthwise(512)
        self.conv3 = nn.Conv2d(512, embedding_dim, 1)
        self.bn = nn.BatchNorm2d(embedding_dim)
        self.features = nn.Sequential(*units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, 3, 112, 112]`` → ``[batch, embedding_dim]``."""
        x = self.features(self.dw_conv(self.conv1(x)))
        x = self.bn(self.conv3(self.gdconv(self.conv2(x))))
        return x.flatten(1)


def imagenet_normalize(images: torch.Tensor) -> torch.Tensor:
    """RGB in [-1, 1] → ``(x01 - mean) / std`` with the ImageNet statistics (torchvision's ``Normalize``)."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return ((images + 1) / 2 - mean) / std


def load_mobilefacenet(
    path: str | Path, device: str | torch.device = "cpu", state: Mapping[str, object] | None = None
) -> TorchRecognizer:
    """Load ``mobilefacenet.pt`` (a plain state dict in foamliu's layout) as a recognizer.

    Raises:
        CheckpointError: unreadable file or another layout.
    """
    with torch.device("meta"):
        network = MobileFaceNet()
    network = load_network_state(network, path, "MobileFaceNet (foamliu/MobileFaceNet)", state)
    recognizer = TorchRecognizer("mobilefacenet", network, arcface_template_crop, imagenet_normalize, 128)
    return recognizer.to(device)
