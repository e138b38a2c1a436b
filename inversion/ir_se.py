"""IR-SE building blocks shared by the e4e and ReStyle encoders and the IR-SE ArcFace recognizer.

The improved-residual network with squeeze-and-excitation gates (Deng et al., ArcFace; the PyTorch
port ``Backbone(112, 50, 'ir_se')`` of TreB1eN/InsightFace_Pytorch) is the body of several official files:
the e4e encoder (``encoder.input_layer``/``encoder.body`` of ``e4e_ffhq_encode.pt``), the FFHQ ReStyle
encoders (``restyle_psp_ffhq_encode.pt``, ``restyle_e4e_ffhq_encode.pt``: the same names, with a 6-channel
stem) and the identity network ``model_ir_se50.pth`` that pSp, e4e and ReStyle use in their identity loss.
All name their tensors the same way, so one implementation serves them all and loads each file strictly:

* ``input_layer.{0,1,2}``: conv 3×3 (no bias), BatchNorm, PReLU;
* ``body.{i}``: :class:`IRSEBottleneck` units, ``stage_units`` of them per stage, the first unit of every
  stage halving the resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "IRSEBottleneck",
    "IR_SE_STAGE_CHANNELS",
    "IR_SE_STAGE_UNITS",
    "SqueezeExcitation",
    "ir_se_body",
    "ir_se_input_layer",
]

IR_SE_STAGE_CHANNELS = (64, 128, 256, 512)
"""Output channels of the four stages of every IR-SE depth."""

IR_SE_STAGE_UNITS: dict[int, tuple[int, int, int, int]] = {
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    152: (3, 8, 36, 3),
}
"""Units per stage for the depths the reference code defines (``get_blocks(num_layers)``)."""


class SqueezeExcitation(nn.Module):
    """Channel gate: global average → 1×1 conv → ReLU → 1×1 conv → sigmoid, times the input.

    Parameters ``fc1.weight`` ``[channels // reduction, channels, 1, 1]`` and ``fc2.weight``
    ``[channels, channels // reduction, 1, 1]``, both without bias.
    """

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, channels, h, w]`` → same shape."""
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))
        return x * gate


class IRSEBottleneck(nn.Module):
    """Improved-residual unit with a squeeze-and-excitation gate (``bottleneck_IR_SE`` in the original).

    ``res_layer`` is BN → conv3×3 → PReLU → conv3×3 (carrying the stride) → BN → SE. The shortcut is a
    1×1 conv + BN when the width changes (``shortcut_layer.0``, ``shortcut_layer.1``) and otherwise a plain
    subsampling by ``stride`` (parameter-free; the original's ``MaxPool2d(1, stride)``).

    Args:
        in_channels: input channels.
        depth: output channels.
        stride: 1, or 2 to halve the resolution.
        se_reduction: channel reduction of the SE gate.
    """

    def __init__(self, in_channels: int, depth: int, stride: int, se_reduction: int = 16):
        super().__init__()
        self.in_channels = in_channels
        self.depth = depth
        self.stride = stride
        # Defined before res_layer: state-dict order must follow the official file.
        if in_channels == depth:
            # A 1×1 max pool with stride s is a strided subsample; with stride 1 it would only copy.
            self.shortcut_layer = nn.MaxPool2d(1, stride) if stride > 1 else nn.Identity()
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(depth),
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, kernel_size=3, stride=1, padding=1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(depth),
            SqueezeExcitation(depth, se_reduction),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, in_channels, h, w]`` → ``[batch, depth, h / stride, w / stride]``."""
        return self.res_layer(x) + self.shortcut_layer(x)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.depth}, stride={self.stride}"


def ir_se_input_layer(channels: int = 64, in_channels: int = 3) -> nn.Sequential:
    """The stem, ``input_layer``: ``[batch, in_channels, h, w]`` → ``[batch, channels, h, w]``.

    ``in_channels`` is 3 (RGB) for e4e and the recognizer, 6 for ReStyle (photo + reconstruction).
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, kernel_size=3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(channels),
        nn.PReLU(channels),
    )


def ir_se_body(
    stem_channels: int,
    stage_channels: Sequence[int] = IR_SE_STAGE_CHANNELS,
    stage_units: Sequence[int] = IR_SE_STAGE_UNITS[50],
    se_reduction: int = 16,
) -> nn.Sequential:
    """The ``body``: the stages' units in one flat sequence, as the official files number them.

    Args:
        stem_channels: channels coming out of the input layer.
        stage_channels: output channels of each stage.
        stage_units: units per stage; the first unit of each stage has stride 2.
        se_reduction: channel reduction of the SE gates.

    Returns:
        ``nn.Sequential`` mapping ``[batch, stem_channels, h, w]`` to
        ``[batch, stage_channels[-1], h / 2**stages, w / 2**stages]``.
    """
    units: list[nn.Module] = []
    in_channels = stem_channels
    for depth, n_units in zip(stage_channels, stage_units, strict=True):
        for unit in range(n_units):
            units.append(IRSEBottleneck(in_channels, depth, 2 if unit == 0 else 1, se_reduction))
            in_channels = depth
    return nn.Sequential(*units)
