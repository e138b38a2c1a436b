"""ArcFace IR-SE50: the identity network of pSp, e4e and ReStyle (``model_ir_se50.pth``).

The network is TreB1eN/InsightFace_Pytorch's ``Backbone(112, 50, 'ir_se')`` as pSp vendors it
(``models/encoders/model_irse.py``): the IR-SE stem and body shared with the e4e encoder
(:mod:`jojogan.inversion.ir_se`, the same tensor names as ``e4e_ffhq_encode.encoder.tsv`` up to
``body.23``) followed by ``output_layer``: ``0`` BatchNorm2d(512), ``1`` Dropout, ``2`` Flatten, ``3``
Linear(512·7·7 → 512), ``4`` BatchNorm1d(512); the output is L2-normalised. Names of the output layer are
taken from that file; depths 50/100/152 are told apart from the number of units per stage.

Input: RGB in [-1, 1], 112×112, cropped from FFHQ faces as pSp does
(:func:`~jojogan.identity.crops.psp_crop`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from jojogan.identity.crops import RECOGNITION_SIZE, psp_crop
from jojogan.identity.recognizer import TorchRecognizer, load_network_state
from jojogan.inversion.ir_se import IR_SE_STAGE_CHANNELS, IR_SE_STAGE_UNITS, ir_se_body, ir_se_input_layer
from jojogan.stylegan2.checkpoint import read_weights_file

__all__ = ["IRSEBackbone", "load_arcface_ir_se", "stage_units_from_state"]


class IRSEBackbone(nn.Module):
    """``Backbone(112, num_layers, 'ir_se')``: ``[batch, 3, 112, 112]`` in [-1, 1] → unit ``[batch, 512]``.

    Args:
        stage_units: units per stage (``(3, 4, 14, 3)`` is IR-SE50).
        embedding_dim: width of the embedding.
    """

    def __init__(self, stage_units: Sequence[int] = IR_SE_STAGE_UNITS[50], embedding_dim: int = 512):
        super().__init__()
        self.stage_units = tuple(stage_units)
        top = IR_SE_STAGE_CHANNELS[-1]
        side = RECOGNITION_SIZE // 16
        self.input_layer = ir_se_input_layer(IR_SE_STAGE_CHANNELS[0])
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(top),
            nn.Dropout(0.0),  # the reference trains with dropout; evaluation never drops
            nn.Flatten(),
            nn.Linear(top * side * side, embedding_dim),
            nn.BatchNorm1d(embedding_dim),
        )
        self.body = ir_se_body(IR_SE_STAGE_CHANNELS[0], IR_SE_STAGE_CHANNELS, self.stage_units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, 3, 112, 112]`` → ``[batch, 512]`` with unit L2 norm."""
        return F.normalize(self.output_layer(self.body(self.input_layer(x))), dim=1)

    def extra_repr(self) -> str:
        return f"stage_units={self.stage_units}"


def stage_units_from_state(state: Mapping[str, object]) -> tuple[int, ...]:
    """Units per stage of an IR-SE body, counted from the widths of its ``res_layer.1`` convs."""
    units = [0] * len(IR_SE_STAGE_CHANNELS)
    index = 0
    while isinstance(weight := state.get(f"body.{index}.res_layer.1.weight"), torch.Tensor):
        width = weight.shape[0]
        if width in IR_SE_STAGE_CHANNELS:
            units[IR_SE_STAGE_CHANNELS.index(width)] += 1
        index += 1
    return tuple(units)


def load_arcface_ir_se(
    path: str | Path, device: str | torch.device = "cpu", state: Mapping[str, object] | None = None
) -> TorchRecognizer:
    """Load ``model_ir_se50.pth`` (a plain ``Backbone`` state dict) as a recognizer.

    Raises:
        CheckpointError: unreadable file or another layout.
    """
    state = read_weights_file(path) if state is None else state
    units = stage_units_from_state(state)
    if units not in IR_SE_STAGE_UNITS.values():
        units = IR_SE_STAGE_UNITS[50]  # the strict check below then names what differs from IR-SE50
    with torch.device("meta"):
        network = IRSEBackbone(units)
    depth = next(k for k, v in IR_SE_STAGE_UNITS.items() if v == units)
    load_network_state(network, path, f"ArcFace IR-SE{depth} (Backbone(112, {depth}, 'ir_se'))", state)
    return TorchRecognizer("arcface-ir-se50", network, psp_crop, None, 512).to(device)
