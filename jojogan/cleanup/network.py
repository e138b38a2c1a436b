"""CodeFormer (Zhou et al., NeurIPS 2022, arXiv 2206.11253), written from the paper's description.

Blind face restoration as code prediction. A VQGAN encoder maps a ``[B, 3, 512, 512]`` face to a 16 x 16
grid of 256-d features; a 9-layer pre-norm transformer reads the grid as 256 tokens (512-d, 8 heads, a
learned position embedding added to queries and keys) and predicts, for each cell, one of the 1024 entries
of a learned codebook; the VQGAN decoder turns the chosen entries into a face. The Controllable Feature
Transformation (CFT) blends encoder features into the decoder at 32, 64, 128 and 256 px with a fidelity
weight ``w``: ``out = dec + w * (dec * scale(e) + shift(e))`` where ``e`` is a residual block over the
concatenated encoder and decoder features. ``w = 0`` skips fusion entirely (most restoration, the
codebook's prior alone), ``w = 1`` keeps most of the input.

Inference follows the official ``adain=True`` path: before decoding, the looked-up codebook features get
the channel-wise mean and standard deviation of the encoder's own output (adaptive instance normalisation),
which keeps the input's colours.

Module and parameter names are those of the official ``codeformer.pth`` (``params_ema``), so the official
file loads with ``strict=True``; the flat ``encoder.blocks.N`` / ``generator.blocks.N`` lists are part of
that contract. The code is our own: the official implementation is under a non-commercial licence.

Inference reuses each layer's own output buffer for activations, residual sums and the CFT blend (the
decoder at 512 px moves 64 MiB per activation; allocating fresh ones costs time on the CPU). None of these
in-place updates touches a tensor that autograd needs, so gradients stay correct when they are asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from jojogan.errors import JojoganError

__all__ = [
    "AttentionBlock",
    "CFTBlock",
    "CodeFormer",
    "CodeFormerConfig",
    "CodeFormerInputError",
    "Codebook",
    "ResBlock",
    "SelfAttention",
    "TransformerLayer",
    "adaptive_instance_norm",
]


class CodeFormerInputError(JojoganError, ValueError):
    """The tensor given to CodeFormer (or its fidelity weight) is not what the network takes."""


@dataclass(frozen=True)
class CodeFormerConfig:
    """Architecture of a CodeFormer network; the defaults are the official released model.

    Attributes:
        base_channels: channels of the VQGAN's first level (``nf``).
        channel_multipliers: channels of each level as multiples of ``base_channels``, from the image
            resolution down to the latent grid; there are ``len - 1`` down/upsamplings.
        res_blocks: residual blocks per level.
        attention_resolutions: grid sizes at which the VQGAN has self-attention blocks.
        image_size: side of the input and output images.
        code_dim: dimension of a codebook entry (the VQGAN latent channels).
        codebook_size: number of codebook entries.
        embed_dim: transformer width.
        heads: transformer attention heads.
        layers: transformer layers.
        mlp_dim: hidden width of the transformer's feed-forward part.
        fusion_sizes: resolutions at which CFT blends encoder features into the decoder.
        norm_groups: GroupNorm groups in the VQGAN.
    """

    base_channels: int = 64
    channel_multipliers: tuple[int, ...] = (1, 2, 2, 4, 4, 8)
    res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (16,)
    image_size: int = 512
    code_dim: int = 256
    codebook_size: int = 1024
    embed_dim: int = 512
    heads: int = 8
    layers: int = 9
    mlp_dim: int = 1024
    fusion_sizes: tuple[int, ...] = (32, 64, 128, 256)
    norm_groups: int = 32

    @property
    def latent_size(self) -> int:
        """Side of the code grid (16 for the official model)."""
        return self.image_size // 2 ** (len(self.channel_multipliers) - 1)

    def channels_at(self, size: int) -> int:
        """VQGAN channels at resolution ``size`` (the encoder's and decoder's, which are equal)."""
        level = int(round(math.log2(self.image_size // size)))
        return self.base_channels * self.channel_multipliers[level]


def _group_norm(channels: int, groups: int) -> nn.GroupNorm:
    # The VQGAN's normalisation: eps 1e-6 (not PyTorch's 1e-5), affine.
    return nn.GroupNorm(groups, channels, eps=1e-6, affine=True)


def _conv3(in_channels: int, out_channels: int, stride: int = 1, padding: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=padding)


def _norm_swish(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    # GroupNorm's backward reads its input, not its output, so the swish may overwrite the output.
    return F.silu(norm(x), inplace=True)


class ResBlock(nn.Module):
    """VQGAN residual block: ``x + conv2(swish(norm2(conv1(swish(norm1(x))))))``.

    A 1x1 ``conv_out`` maps the shortcut when the channel count changes.

    Args:
        in_channels: channels of ``x`` ``[B, in_channels, H, W]``.
        out_channels: channels of the result ``[B, out_channels, H, W]``.
        groups: GroupNorm groups.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int = 32) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = _group_norm(in_channels, groups)
        self.conv1 = _conv3(in_channels, out_channels)
        self.norm2 = _group_norm(out_channels, groups)
        self.conv2 = _conv3(out_channels, out_channels)
        if in_channels != out_channels:
            self.conv_out = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(_norm_swish(self.norm2, self.conv1(_norm_swish(self.norm1, x))))
        shortcut = self.conv_out(x) if self.in_channels != self.out_channels else x
        return h.add_(shortcut)  # conv2's output is not needed by its backward

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels}"


class AttentionBlock(nn.Module):
    """VQGAN single-head spatial self-attention: ``x + proj_out(softmax(q^T k / sqrt(C)) v)``.

    Args:
        channels: channels ``C`` of ``x`` ``[B, C, H, W]``; every pixel attends to all ``H * W``.
        groups: GroupNorm groups.
    """

    def __init__(self, channels: int, groups: int = 32) -> None:
        super().__init__()
        self.norm = _group_norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        normed = self.norm(x)

        def tokens(conv: nn.Conv2d) -> torch.Tensor:  # [B, 1, H*W, C]: one head
            return conv(normed).reshape(b, 1, c, h * w).transpose(2, 3)

        attended = F.scaled_dot_product_attention(tokens(self.q), tokens(self.k), tokens(self.v))
        attended = attended.transpose(2, 3).reshape(b, c, h, w)
        return self.proj_out(attended).add_(x)


class Downsample(nn.Module):
    """Stride-2 3x3 convolution after padding one zero row and column at the bottom and right."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = _conv3(channels, channels, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour 2x upsampling followed by a 3x3 convolution.

    (Computing the four output phases as 2x2 convolutions of the small image needs 16 instead of 36
    multiply-adds per input pixel, but measured no faster on the CPU here: oneDNN runs 3x3 convolutions
    more efficiently than 2x2 ones, and the phases must be interleaved.)
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = _conv3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Blocks(nn.Module):
    """Holds the flat ``blocks`` list whose indices are the official parameter names."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)


def _encoder(cfg: CodeFormerConfig) -> tuple[_Blocks, dict[int, int]]:
    """The VQGAN encoder, and for each resolution the index of its last block there (the CFT input)."""
    g, nf, mult = cfg.norm_groups, cfg.base_channels, cfg.channel_multipliers
    blocks: list[nn.Module] = [_conv3(3, nf)]
    taps: dict[int, int] = {}
    size, channels = cfg.image_size, nf
    for level, m in enumerate(mult):
        for _ in range(cfg.res_blocks):
            blocks.append(ResBlock(channels, nf * m, g))
            channels = nf * m
            if size in cfg.attention_resolutions:
                blocks.append(AttentionBlock(channels, g))
        if level != len(mult) - 1:
            taps[size] = len(blocks) - 1
            blocks.append(Downsample(channels))
            size //= 2
    blocks += [ResBlock(channels, channels, g), AttentionBlock(channels, g), ResBlock(channels, channels, g)]
    blocks += [_group_norm(channels, g), _conv3(channels, cfg.code_dim)]
    return _Blocks(blocks), taps


def _generator(cfg: CodeFormerConfig) -> tuple[_Blocks, dict[int, int]]:
    """The VQGAN decoder, and for each resolution the index of its first block there (CFT output).

    Unlike the residual blocks, the final GroupNorm goes straight into the last convolution (no swish).
    """
    g, nf, mult = cfg.norm_groups, cfg.base_channels, cfg.channel_multipliers
    channels = nf * mult[-1]
    blocks: list[nn.Module] = [_conv3(cfg.code_dim, channels)]
    blocks += [ResBlock(channels, channels, g), AttentionBlock(channels, g), ResBlock(channels, channels, g)]
    taps: dict[int, int] = {}
    size = cfg.latent_size
    for level in reversed(range(len(mult))):
        for _ in range(cfg.res_blocks):
            blocks.append(ResBlock(channels, nf * mult[level], g))
            channels = nf * mult[level]
            if size in cfg.attention_resolutions:
                blocks.append(AttentionBlock(channels, g))
        if level != 0:
            blocks.append(Upsample(channels))
            size *= 2
            taps[size] = len(blocks)  # the first residual block at the new resolution
    blocks += [_group_norm(channels, g), _conv3(channels, 3)]
    return _Blocks(blocks), taps


class Codebook(nn.Module):
    """The VQGAN codebook ``embedding.weight`` ``[codebook_size, code_dim]``.

    Args:
        size: number of entries.
        dim: dimension of an entry.
    """

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        # nn.Embedding's N(0, 1) initialisation, skipped on the meta device (load_codeformer builds there):
        # on meta tensors torch's normal_ runs its Python reference, whose first call imports torch._dynamo,
        # about a CPU-second, for values that are never made.
        weight = torch.empty(size, dim)
        if weight.device.type != "meta":
            weight.normal_()
        self.embedding = nn.Embedding(size, dim, _weight=weight)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Entries for a grid of indices ``[B, H, W]`` (int64), as features ``[B, code_dim, H, W]``."""
        return self.embedding(indices).permute(0, 3, 1, 2)


class SelfAttention(nn.Module):
    """Multi-head self-attention with the parameter layout of ``torch.nn.MultiheadAttention``.

    ``in_proj_weight`` ``[3 * dim, dim]`` stacks the query, key and value projections; queries and keys
    read ``x + pos``, values read ``x``.

    Args:
        dim: token width.
        heads: number of heads (``dim`` must be divisible by it).
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, L, dim]``, ``pos`` ``[L, dim]`` (or broadcastable) -> ``[B, L, dim]``."""
        b, length, dim = x.shape
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        with_pos = x + pos

        def split(t: torch.Tensor) -> torch.Tensor:  # [B, heads, L, dim / heads]
            return t.reshape(b, length, self.heads, dim // self.heads).transpose(1, 2)

        q = split(F.linear(with_pos, w_q, b_q))
        k = split(F.linear(with_pos, w_k, b_k))
        v = split(F.linear(x, w_v, b_v))
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, length, dim)
        return self.out_proj(attended)

    def extra_repr(self) -> str:
        return f"heads={self.heads}"


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer: ``x += attn(norm1(x)); x += linear2(gelu(linear1(norm2(x))))``.

    Args:
        dim: token width.
        heads: attention heads.
        mlp_dim: hidden width of the feed-forward part.
    """

    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.self_attn = SelfAttention(dim, heads)
        self.linear1 = nn.Linear(dim, mlp_dim)
        self.linear2 = nn.Linear(mlp_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, L, dim]``, ``pos`` ``[L, dim]`` -> ``[B, L, dim]``."""
        x = x + self.self_attn(self.norm1(x), pos)
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))


class CFTBlock(nn.Module):
    """Controllable Feature Transformation: ``dec + w * (dec * scale(e) + shift(e))``.

    ``e = encode_enc(cat(enc, dec))``; ``scale`` and ``shift`` are conv-leaky ReLU(0.2)-conv stacks.

    Args:
        channels: channels of both the encoder and decoder features ``[B, channels, H, W]``.
        groups: GroupNorm groups of the residual block.
    """

    def __init__(self, channels: int, groups: int = 32) -> None:
        super().__init__()
        self.encode_enc = ResBlock(2 * channels, channels, groups)
        self.scale = nn.Sequential(_conv3(channels, channels), nn.LeakyReLU(0.2), _conv3(channels, channels))
        self.shift = nn.Sequential(_conv3(channels, channels), nn.LeakyReLU(0.2), _conv3(channels, channels))

    def forward(self, enc: torch.Tensor, dec: torch.Tensor, w: float) -> torch.Tensor:
        e = self.encode_enc(torch.cat([enc, dec], dim=1))
        # addcmul's result is a new tensor that no backward reads: scale and blend it in place.
        return torch.addcmul(self.shift(e), dec, self.scale(e)).mul_(w).add_(dec)


def adaptive_instance_norm(content: torch.Tensor, style: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Give ``content`` ``[B, C, H, W]`` the per-channel mean and standard deviation of ``style``.

    Standard deviations are ``sqrt(unbiased variance + eps)`` over each channel's pixels, as in the
    official inference. ``style`` may have a different spatial size.
    """
    b, c = content.shape[:2]

    def stats(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = t.reshape(b, c, -1)
        return flat.mean(2).reshape(b, c, 1, 1), (flat.var(2) + eps).sqrt().reshape(b, c, 1, 1)

    content_mean, content_std = stats(content)
    style_mean, style_std = stats(style)
    return (content - content_mean) / content_std * style_std + style_mean


class CodeFormer(nn.Module):
    """CodeFormer face restoration network (official layout; see the module docstring).

    Args:
        config: architecture; the default is the released model's.
    """

    def __init__(self, config: CodeFormerConfig | None = None) -> None:
        super().__init__()
        cfg = self.config = config or CodeFormerConfig()
        tokens = cfg.latent_size**2
        # Registration order is the official state-dict order (a direct parameter first).
        self.position_emb = nn.Parameter(torch.zeros(tokens, cfg.embed_dim))
        self.encoder, self.encoder_taps = _encoder(cfg)
        self.quantize = Codebook(cfg.codebook_size, cfg.code_dim)
        self.generator, self.generator_taps = _generator(cfg)
        self.feat_emb = nn.Linear(cfg.code_dim, cfg.embed_dim)
        self.ft_layers = nn.Sequential(
            *(TransformerLayer(cfg.embed_dim, cfg.heads, cfg.mlp_dim) for _ in range(cfg.layers))
        )
        self.idx_pred_layer = nn.Sequential(
            nn.LayerNorm(cfg.embed_dim), nn.Linear(cfg.embed_dim, cfg.codebook_size, bias=False)
        )
        self.fuse_convs_dict = nn.ModuleDict(
            {str(s): CFTBlock(cfg.channels_at(s), cfg.norm_groups) for s in cfg.fusion_sizes}
        )

    def check_input(self, x: torch.Tensor, w: float) -> None:
        """Raise :class:`CodeFormerInputError` unless ``x`` is ``[B, 3, S, S]`` at the configured size."""
        size = self.config.image_size
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != size or x.shape[3] != size:
            raise CodeFormerInputError(
                f"CodeFormer takes images [batch, 3, {size}, {size}] in [-1, 1], got {list(x.shape)}; "
                "resize the face first (jojogan.cleanup.cleanup_face does)"
            )
        if not 0.0 <= float(w) <= 1.0:
            raise CodeFormerInputError(f"the fidelity weight w must lie in [0, 1], got {w}")

    def encode(self, x: torch.Tensor, keep: tuple[int, ...] = ()) -> tuple[torch.Tensor, dict]:
        """Encoder features ``[B, code_dim, 16, 16]`` and the intermediate ones at resolutions ``keep``."""
        kept = {}
        wanted = {self.encoder_taps[s]: s for s in keep}
        for i, block in enumerate(self.encoder.blocks):
            x = block(x)
            if i in wanted:
                kept[wanted[i]] = x  # later blocks never write into their input
        return x, kept

    def predict_codes(self, latent: torch.Tensor) -> torch.Tensor:
        """Codebook indices ``[B, 16, 16]`` the transformer predicts from encoder features ``latent``."""
        b, _, h, w = latent.shape
        query = self.feat_emb(latent.flatten(2).transpose(1, 2))  # [B, 256, embed_dim]
        for layer in self.ft_layers:
            query = layer(query, self.position_emb)
        # The official code takes the top-1 of a softmax over the logits: the same index as the argmax.
        return self.idx_pred_layer(query).argmax(-1).reshape(b, h, w)

    def decode(self, codes: torch.Tensor, fused: dict | None = None, w: float = 0.0) -> torch.Tensor:
        """Decoder image ``[B, 3, S, S]`` from features ``[B, code_dim, 16, 16]``, with CFT when ``fused``."""
        x = codes
        where = {self.generator_taps[s]: s for s in (fused or {})}
        for i, block in enumerate(self.generator.blocks):
            x = block(x)
            if i in where:
                size = where[i]
                x = self.fuse_convs_dict[str(size)](fused[size], x, w)
        return x

    def forward(self, x: torch.Tensor, w: float) -> torch.Tensor:
        """Restore faces.

        Args:
            x: aligned faces ``[B, 3, 512, 512]``, RGB in [-1, 1].
            w: fidelity weight in [0, 1]: 0 = most restoration (no fusion at all), 1 = most fidelity.

        Returns:
            Restored faces ``[B, 3, 512, 512]``, roughly in [-1, 1] (not clamped).

        Raises:
            CodeFormerInputError: ``x`` is not ``[B, 3, 512, 512]`` or ``w`` is outside [0, 1].
        """
        self.check_input(x, w)
        fusion = self.config.fusion_sizes if w > 0 else ()
        latent, enc_feats = self.encode(x, keep=fusion)
        codes = self.predict_codes(latent)
        quant = adaptive_instance_norm(self.quantize.lookup(codes), latent)
        return self.decode(quant, enc_feats if fusion else None, float(w))
