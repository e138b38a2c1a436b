"""insightface ``arcface_torch`` iresnet backbones (r18, r34, r50, r100, r200), from ``backbone.pth``.

Architecture and names follow ``recognition/arcface_torch/backbones/iresnet.py`` (read for the layout
only): ``conv1`` 3×3 + ``bn1`` + ``prelu``; ``layer1..4`` of :class:`IBasicBlock` units (``bn1``, ``conv1``
3×3, ``bn2``, ``prelu``, ``conv2`` 3×3 with the stride, ``bn3``, and on the first unit of every layer a
``downsample`` 1×1 conv + BN), each layer halving the resolution; ``bn2`` on the 7×7×512 map, flatten,
``fc`` to 512 and the ``features`` BatchNorm1d. The output is the 512-d feature (not normalised). The
depth is read from the number of units in each layer.

Input: RGB in [-1, 1] (``(x / 255 - 0.5) / 0.5``), 112×112 faces aligned to the ArcFace template.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from jojogan.identity.crops import RECOGNITION_SIZE, arcface_template_crop
from jojogan.identity.recognizer import TorchRecognizer, load_network_state
from jojogan.stylegan2.checkpoint import read_weights_file

__all__ = ["IBasicBlock", "IRESNET_LAYERS", "IResNet", "layers_from_state", "load_iresnet"]

IRESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "r18": (2, 2, 2, 2),
    "r34": (3, 4, 6, 3),
    "r50": (3, 4, 14, 3),
    "r100": (3, 13, 30, 3),
    "r200": (6, 26, 60, 6),
}
"""Units per layer of the depths insightface publishes."""

_WIDTHS = (64, 128, 256, 512)


class IBasicBlock(nn.Module):
    """BN → conv3×3 → BN → PReLU → conv3×3 (stride) → BN, plus the input or its 1×1 projection.

    Args:
        in_channels: input channels.
        channels: output channels.
        stride: 1 or 2.
        downsample: whether the shortcut is a 1×1 conv + BN (the first unit of a layer).
    """

    def __init__(self, in_channels: int, channels: int, stride: int, downsample: bool):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.prelu = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)
        self.downsample = (
            nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), nn.BatchNorm2d(channels)
            )
            if downsample
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, in_channels, h, w]`` → ``[batch, channels, h / stride, w / stride]``."""
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """``[batch, 3, 112, 112]`` in [-1, 1] → ``[batch, num_features]`` identity features.

    Args:
        layers: units in each of the four layers.
        num_features: embedding width.
    """

    def __init__(self, layers: Sequence[int] = IRESNET_LAYERS["r50"], num_features: int = 512):
        super().__init__()
        self.layers = tuple(layers)
        self.conv1 = nn.Conv2d(3, _WIDTHS[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(_WIDTHS[0])
        self.prelu = nn.PReLU(_WIDTHS[0])
        in_channels = _WIDTHS[0]
        for index, (width, count) in enumerate(zip(_WIDTHS, self.layers, strict=True), start=1):
            units = [IBasicBlock(in_channels, width, 2, True)]
            units += [IBasicBlock(width, width, 1, False) for _ in range(count - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*units))
            in_channels = width
        side = RECOGNITION_SIZE // 16
        self.bn2 = nn.BatchNorm2d(in_channels)
        self.fc = nn.Linear(in_channels * side * side, num_features)
        self.features = nn.BatchNorm1d(num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, 3, 112, 112]`` → ``[batch, num_features]``."""
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.features(self.fc(self.bn2(x).flatten(1)))

    def extra_repr(self) -> str:
        return f"layers={self.layers}"


def layers_from_state(state: Mapping[str, object]) -> tuple[int, int, int, int]:
    """Units per layer of an iresnet state dict, counted from its ``layerK.N.bn1.weight`` tensors."""
    counts = []
    for layer in range(1, 5):
        count = 0
        while f"layer{layer}.{count}.bn1.weight" in state:
            count += 1
        counts.append(count)
    return tuple(counts)


def load_iresnet(
    path: str | Path, device: str | torch.device = "cpu", state: Mapping[str, object] | None = None
) -> TorchRecognizer:
    """Load an ``arcface_torch`` ``backbone.pth`` (r18/r34/r50/r100/r200, told apart by its shapes).

    Raises:
        CheckpointError: unreadable file, or a layout that is none of the published depths (the message
            names the first keys that differ from the nearest one).
    """
    state = read_weights_file(path) if state is None else state
    layers = layers_from_state(state)
    depth = next((name for name, units in IRESNET_LAYERS.items() if units == layers), None)
    if depth is None:
        depth = "r50"  # the strict check below then lists how the file differs from r50
        layers = IRESNET_LAYERS[depth]
    fc = state.get("fc.weight")
    num_features = fc.shape[0] if isinstance(fc, torch.Tensor) and fc.ndim == 2 else 512
    with torch.device("meta"):
        network = IResNet(layers, num_features)
    load_network_state(network, path, f"insightface iresnet ({depth}, arcface_torch backbone.pth)", state)
    return TorchRecognizer("arcface-iresnet", network, arcface_template_crop, None, num_features).to(device)
