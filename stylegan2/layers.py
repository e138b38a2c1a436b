"""Building blocks of StyleGAN2 (config-f), with the parameter names of the official checkpoints.

Equalized learning rate: weights are stored as unit Gaussians (divided by ``lr_mul``) and scaled at run
time, exactly as in the official files, so those files load with ``strict=True``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from jojogan.op import FusedLeakyReLU, fused_leaky_relu, make_kernel, upfirdn2d
from jojogan.op.resample import conv2d_resample, conv_down_padding, conv_up_padding, upsample2d

DEFAULT_BLUR_KERNEL = (1, 3, 3, 1)


def clamp_activations(x: torch.Tensor, limit: float | None, inplace: bool = False) -> torch.Tensor:
    """Clamp a layer's output to ``[-limit, limit]`` (NVIDIA's ``conv_clamp``); ``None`` returns ``x``.

    NVIDIA's stylegan2-ada and stylegan3 networks clamp every synthesis, to-RGB and discriminator conv
    output after bias, activation and gain; models without the setting (the official StyleGAN2 files, the
    product's own) pass ``None`` and run exactly as before.
    """
    if limit is None:
        return x
    if inplace and not (torch.is_grad_enabled() and x.requires_grad):
        return x.clamp_(-limit, limit)
    return x.clamp(-limit, limit)


@contextlib.contextmanager
def frozen(*modules: object) -> Iterator[None]:
    """Use modules as fixed functions: no parameter gradients, eval mode; both restored afterwards.

    Entries that are not ``nn.Module`` (``None``, plain callables) are ignored.
    """
    modules = tuple(m for m in modules if isinstance(m, nn.Module))
    flags = [(p, p.requires_grad) for m in modules for p in m.parameters()]
    modes = [(m, m.training) for m in modules]
    for module in modules:
        module.requires_grad_(False).eval()
    try:
        yield
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)
        for module, mode in modes:
            module.train(mode)


class PixelNorm(nn.Module):
    """Normalise each latent vector to unit root-mean-square."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate.

    Args:
        in_dim: input features.
        out_dim: output features.
        bias: whether to learn a bias.
        bias_init: initial bias value (1 for style modulations).
        lr_mul: learning-rate multiplier (0.01 for the mapping network).
        activation: ``None`` or ``"fused_lrelu"``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: str | None = None,
    ):
        super().__init__()
        if activation not in (None, "fused_lrelu"):
            raise ValueError(f"activation must be None or 'fused_lrelu', got {activation!r}")
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, in_dim]`` → ``[batch, out_dim]``."""
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)

    def extra_repr(self) -> str:
        in_dim, out_dim = self.weight.shape[1], self.weight.shape[0]
        return f"{in_dim}, {out_dim}, lr_mul={self.lr_mul}, activation={self.activation}"


class EqualConv2d(nn.Module):
    """Conv2d with equalized learning rate (parameter names ``weight``, ``bias``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias=True,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.stride = stride
        self.padding = padding

    def scaled_weight(self) -> torch.Tensor:
        """The weight as applied: the stored unit Gaussians times the equalized-lr scale."""
        return self.weight * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.scaled_weight(), self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        out_c, in_c, k, _ = self.weight.shape
        return f"{in_c}, {out_c}, {k}, stride={self.stride}, padding={self.padding}"


class Blur(nn.Module):
    """FIR low-pass filter (buffer ``kernel``), scaled by ``upsample_factor**2`` after up-sampling.

    ``pad`` comes from :mod:`jojogan.op.resample`, which also applies the filter inside the resampling
    convolutions; calling the module filters without resampling.
    """

    def __init__(self, kernel: Sequence[int], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(kernel) * upsample_factor**2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2× FIR up-sampling of the RGB skip path (buffer ``kernel``)."""

    def __init__(self, kernel: Sequence[int], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor**2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample2d(x, self.kernel, self.factor)


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution with optional demodulation and 2× up-sampling.

    The style vector ``s`` (the output of ``modulation``) scales the input channels; demodulation
    rescales each output channel to unit expected variance. For a batch of one the style is folded into
    the weight (as the original does). For larger batches, instead of building a weight per sample and
    running a grouped convolution, the input is scaled, one shared convolution runs over the whole batch,
    and the output is scaled by the demodulation factors: the same arithmetic, one convolution call.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            pad = conv_up_padding(len(blur_kernel), kernel_size)
            self.blur = Blur(blur_kernel, pad=pad, upsample_factor=2)
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Args: x ``[batch, in, h, w]``; style ``[batch, in]`` (already modulated). Returns
        ``[batch, out, h', w']`` with ``h' = 2h`` when up-sampling."""
        batch = x.shape[0]
        weight = self.weight[0] * self.scale
        if batch == 1:
            # One sample: modulating (and demodulating) the small weight is far cheaper than scaling the
            # activations, which at high resolution are millions of values, forward and backward.
            weight = weight * style.view(1, -1, 1, 1)
            if self.demodulate:
                weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
            return self._conv(x, weight)
        out = self._conv(x * style.view(batch, -1, 1, 1), weight)
        if self.demodulate:
            # d[b, o] = 1 / sqrt(sum_i s[b, i]^2 * sum_k w[o, i, k]^2 + eps)
            weight_sq = weight.pow(2).sum(dim=(2, 3))
            # Demodulation stays float32 under bf16 autocast: it normalises every output channel.
            with torch.autocast(x.device.type, enabled=False):
                demod = torch.rsqrt(style.to(weight_sq.dtype).pow(2) @ weight_sq.t() + 1e-8)
            out = out * demod.view(batch, -1, 1, 1)
        return out

    def _conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            return conv2d_resample(x, weight, self.blur.kernel, up=2)
        return conv2d_resample(x, weight)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, {self.kernel_size}, "
            f"demodulate={self.demodulate}, upsample={self.upsample}"
        )


class NoiseInjection(nn.Module):
    """Adds per-pixel noise scaled by a learned scalar (parameter ``weight``)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(
        self, x: torch.Tensor, noise: torch.Tensor | None = None, inplace: bool = False
    ) -> torch.Tensor:
        """``inplace``: add into ``x`` (only for a tensor no gradient flows through)."""
        if noise is None:
            noise = x.new_empty(x.shape[0], 1, x.shape[2], x.shape[3]).normal_()
        if inplace:
            return x.add_(self.weight * noise)
        return x + self.weight * noise


class ConstantInput(nn.Module):
    """The learned 4×4 input of the synthesis network (parameter ``input``)."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated conv → noise → bias + leaky ReLU [→ clamp] (names ``conv``, ``noise``, ``activate``).

    ``conv_clamp``: clamp the output to ``±conv_clamp`` (NVIDIA's setting), ``None`` for no clamp.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        upsample: bool = False,
        blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL,
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.conv = ModulatedConv2d(
            in_channels, out_channels, kernel_size, style_dim, upsample=upsample, blur_kernel=blur_kernel
        )
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels)

    def forward(
        self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        out = self.conv(x, style)
        if out.requires_grad:
            return clamp_activations(self.activate(self.noise(out, noise)), self.conv_clamp)
        # No gradient: ``out`` is this layer's own new tensor, so noise, bias and activation overwrite it
        # instead of allocating three more maps of its size (128 MB each per image at 1024 px).
        out = self.activate(self.noise(out, noise, inplace=True), inplace=True)
        return clamp_activations(out, self.conv_clamp, inplace=True)

    def extra_repr(self) -> str:
        return "" if self.conv_clamp is None else f"conv_clamp={self.conv_clamp}"


class ToRGB(nn.Module):
    """1×1 modulated conv to RGB [clamped to ``±conv_clamp``], plus the up-sampled skip from the previous
    resolution."""

    def __init__(
        self,
        in_channels: int,
        style_dim: int,
        upsample: bool = True,
        blur_kernel=DEFAULT_BLUR_KERNEL,
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.conv_clamp = conv_clamp
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style)
        if out.requires_grad:
            out = clamp_activations(out + self.bias, self.conv_clamp)
            return out if skip is None else out + self.upsample(skip)
        # no gradient: the same sums, in the layer's own new tensor
        out = clamp_activations(out.add_(self.bias), self.conv_clamp, inplace=True)
        return out if skip is None else out.add_(self.upsample(skip))

    def extra_repr(self) -> str:
        return "" if self.conv_clamp is None else f"conv_clamp={self.conv_clamp}"


class ConvLayer(nn.Sequential):
    """Discriminator conv: [blur] → equalized conv → [bias + leaky ReLU] [→ clamp to ``±conv_clamp``],
    indexed like the official files."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        downsample: bool = False,
        blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL,
        bias: bool = True,
        activate: bool = True,
        conv_clamp: float | None = None,
    ):
        layers: list[nn.Module] = []
        if downsample:
            layers.append(Blur(blur_kernel, pad=conv_down_padding(len(blur_kernel), kernel_size)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(
            EqualConv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                bias=bias and not activate,
            )
        )
        if activate:
            layers.append(FusedLeakyReLU(out_channels, bias=bias))
        super().__init__(*layers)
        self.downsample = downsample
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.downsample:
            return clamp_activations(super().forward(x), self.conv_clamp)
        # blur + stride-2 conv as one resampling conv, which owns the pads and the 1×1 fast path
        blur, conv, *rest = self
        x = conv2d_resample(x, conv.scaled_weight(), blur.kernel, down=2, bias=conv.bias)
        for module in rest:
            x = module(x)
        return clamp_activations(x, self.conv_clamp)


class ResBlock(nn.Module):
    """Residual down-sampling block of the discriminator (``conv1``, ``conv2``, ``skip``).

    ``conv_clamp`` clamps the outputs of ``conv1`` and ``conv2`` (not the linear ``skip``), as NVIDIA's
    resnet blocks do.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL,
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3, blur_kernel=blur_kernel, conv_clamp=conv_clamp)
        self.conv2 = ConvLayer(
            in_channels, out_channels, 3, downsample=True, blur_kernel=blur_kernel, conv_clamp=conv_clamp
        )
        self.skip = ConvLayer(
            in_channels, out_channels, 1, downsample=True, blur_kernel=blur_kernel, bias=False, activate=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)
