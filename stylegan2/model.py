"""StyleGAN2 generator and discriminator (config-f), state-dict compatible with the official files.

Style space: every modulated convolution reads a style vector ``s = modulation(w)``. At 1024 px there
are 26 of them, in synthesis order ``conv1, to_rgb1`` and then, per resolution 8…1024, the up-sampling
conv, the second conv and its to_rgb. The synthesis plan of :mod:`jojogan.stylegan2.config` lists them
with the W+ entry each one reads, and the generator is built from it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from jojogan.op.shapes import check_shape
from jojogan.stylegan2.config import (
    D_FEATURE_BLOCKS,
    DEFAULT_BLUR_KERNEL,
    LR_MLP,
    MEAN_LATENT_SAMPLES,
    GeneratorConfig,
    StyleLayer,
    default_channels,
    log2_size,
)
from jojogan.stylegan2.layers import (
    ConstantInput,
    ConvLayer,
    EqualLinear,
    PixelNorm,
    ResBlock,
    StyledConv,
    ToRGB,
)


@dataclass(frozen=True)
class SynthesisLayer:
    """One modulated layer of a generator, in synthesis order: its module and the inputs it reads.

    Attributes:
        module: a ``StyledConv`` (reads and replaces the feature map) or a ``ToRGB`` (reads the feature
            map and updates the RGB skip image).
        style: index of its style vector in :meth:`Generator.styles`.
        noise: index of its noise input (``noises.noise_i``), ``None`` for to_rgb layers.
    """

    module: nn.Module
    style: int
    noise: int | None

    @property
    def is_rgb(self) -> bool:
        return self.noise is None


class Generator(nn.Module):
    """StyleGAN2 generator, built from the rows of its :func:`~jojogan.stylegan2.config.synthesis_plan`.

    Args:
        size: output resolution (power of two ≥ 8).
        style_dim: dimension of z, w and W+ entries (512 for the official models).
        n_mlp: mapping-network depth.
        channel_multiplier: 2 for config-f (used when ``channels`` is not given).
        channels: ``{resolution: channels}`` replacing the default table (tests build tiny models).
        lr_mlp: learning-rate multiplier of the mapping network.
        blur_kernel: FIR kernel of the resampling filters.
        conv_clamp: clamp every synthesis and to-RGB layer's output to ``±conv_clamp`` (NVIDIA's
            stylegan2-ada/stylegan3 models use 256); ``None``, the default, clamps nothing.

    Attributes:
        config: the :class:`~jojogan.stylegan2.config.GeneratorConfig` it was built from;
            :meth:`from_config` builds the same architecture again.
    """

    def __init__(
        self,
        size: int,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: int = 2,
        channels: dict[int, int] | None = None,
        lr_mlp: float = LR_MLP,
        blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL,
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.config = GeneratorConfig(
            size,
            style_dim,
            n_mlp,
            lr_mlp,
            channels or default_channels(channel_multiplier),
            blur_kernel,
            conv_clamp,
        )
        plan = self.config.plan
        self.style = nn.Sequential(
            PixelNorm(),
            *[
                EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu")
                for _ in range(n_mlp)
            ],
        )
        self.input = ConstantInput(plan[0].in_channels)
        self.conv1 = self._make_layer(plan[0])
        self.to_rgb1 = self._make_layer(plan[1])
        self.convs = nn.ModuleList()
        self.upsamples = nn.ModuleList()  # empty; kept so module names match the official layout
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        # The creation order (noise maps before the later layers) keeps seeded initialisations unchanged.
        for row in plan:
            if row.noise is not None:
                self.noises.register_buffer(
                    f"noise_{row.noise}", torch.randn(1, 1, row.resolution, row.resolution)
                )
        for row in plan[2:]:
            (self.to_rgbs if row.is_rgb else self.convs).append(self._make_layer(row))

    def _make_layer(self, row: StyleLayer) -> nn.Module:
        settings = {
            "upsample": row.upsample,
            "blur_kernel": self.config.blur_kernel,
            "conv_clamp": self.conv_clamp,
        }
        if row.is_rgb:
            return ToRGB(row.in_channels, self.style_dim, **settings)
        return StyledConv(row.in_channels, row.out_channels, 3, self.style_dim, **settings)

    @classmethod
    def from_config(cls, config: GeneratorConfig) -> Generator:
        """A freshly initialised generator of the architecture ``config`` describes."""
        return cls(
            config.size,
            config.style_dim,
            config.n_mlp,
            channels=config.channel_table,
            lr_mlp=config.lr_mlp,
            blur_kernel=config.blur_kernel,
            conv_clamp=config.conv_clamp,
        )

    # ----------------------------------------------------------------- structure (views of the config)
    @property
    def size(self) -> int:
        return self.config.size

    @property
    def style_dim(self) -> int:
        return self.config.style_dim

    @property
    def n_mlp(self) -> int:
        return self.config.n_mlp

    @property
    def lr_mlp(self) -> float:
        return self.config.lr_mlp

    @property
    def conv_clamp(self) -> float | None:
        return self.config.conv_clamp

    @property
    def channels(self) -> dict[int, int]:
        """``{resolution: channels}`` for the resolutions 4 … size."""
        return self.config.channel_table

    @property
    def n_latent(self) -> int:
        """Number of W+ entries (18 at 1024 px)."""
        return self.config.n_latent

    @property
    def plan(self) -> tuple[StyleLayer, ...]:
        """Every modulated layer in synthesis order (:func:`~jojogan.stylegan2.config.synthesis_plan`)."""
        return self.config.plan

    @property
    def num_layers(self) -> int:
        """Number of noise inputs (one per conv layer)."""
        return sum(not row.is_rgb for row in self.plan)

    @property
    def num_styles(self) -> int:
        """Number of modulated layers (26 at 1024 px)."""
        return len(self.plan)

    @property
    def style_latent_index(self) -> list[int]:
        return [row.w_index for row in self.plan]

    def modulated_convs(self) -> list[nn.Module]:
        """The ``ModulatedConv2d`` of every modulated layer, in synthesis order."""
        return [layer.module.conv for layer in self.synthesis_layers()]

    def noise_buffers(self) -> list[torch.Tensor]:
        """The stored noise inputs ``noises.noise_i`` in order."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    def make_noise(self, batch: int = 1, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Fresh Gaussian noise inputs ``[batch, 1, res, res]``, one per noise layer."""
        device = self.input.input.device
        return [
            torch.randn(batch, 1, buf.shape[2], buf.shape[3], device=device, generator=generator)
            for buf in self.noise_buffers()
        ]

    # ----------------------------------------------------------------- latent spaces
    def get_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Mapping network: z ``[batch, style_dim]`` → w ``[batch, style_dim]``."""
        check_shape(z, "batch style_dim", "z", style_dim=self.style_dim)
        return self.style(z)

    @torch.no_grad()
    def sample_latents(self, n: int, seed: int = 0, batch: int = 2048) -> Iterator[torch.Tensor]:
        """w = mapping(z) of ``n`` seeded z, in chunks ``[<= batch, style_dim]`` (no gradients).

        z is drawn on the CPU, so the samples do not depend on the device.
        """
        if n < 1 or batch < 1:
            raise ValueError(f"n and batch must be >= 1, got n={n}, batch={batch}")
        rng = torch.Generator().manual_seed(seed)
        for start in range(0, n, batch):
            z = torch.randn(min(batch, n - start), self.style_dim, generator=rng)
            yield self.style(z.to(self.input.input.device))

    def latent_statistics(
        self,
        n: int = MEAN_LATENT_SAMPLES,
        seed: int = 0,
        batch: int = 2048,
        center: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, float]:
        """Mean w ``[1, style_dim]`` of ``n`` seeded mapped z, and their spread around ``center``.

        The only place the mean latent is computed: sums are accumulated in float64 chunk by chunk, so
        the result does not depend on ``batch``.

        Args:
            n: how many z.
            seed: seeds z (drawn on the CPU).
            batch: z per mapping pass.
            center: ``[style_dim]`` point the spread is measured from; ``None``: the mean itself.

        Returns:
            ``(mean, spread)``: spread is the root mean squared distance of the samples from ``center``.
        """
        total = torch.zeros(self.style_dim, dtype=torch.float64, device=self.input.input.device)
        total_sq = torch.zeros((), dtype=torch.float64, device=total.device)
        for w in self.sample_latents(n, seed, batch):
            w = w.double()
            total += w.sum(0)
            total_sq += w.square().sum()
        mean = total / n
        c = mean if center is None else center.reshape(-1).to(mean)
        # E|w - c|^2 = E|w|^2 - 2 c.E[w] + |c|^2
        spread = (total_sq / n - 2 * (c @ mean) + c @ c).clamp(min=0).sqrt().item()
        return mean.float().unsqueeze(0), spread

    def mean_latent(self, n: int = MEAN_LATENT_SAMPLES, seed: int = 0, batch: int = 2048) -> torch.Tensor:
        """Mean w of ``n`` seeded mapped z, ``[1, style_dim]`` (truncation centre, "mean" reference code)."""
        return self.latent_statistics(n, seed, batch)[0]

    def to_w_plus(self, w: torch.Tensor) -> torch.Tensor:
        """Broadcast w ``[batch, style_dim]`` to W+ ``[batch, n_latent, style_dim]`` (W+ passes through)."""
        if isinstance(w, torch.Tensor) and w.ndim == 2:
            check_shape(w, "batch style_dim", "w", style_dim=self.style_dim)
            return w.unsqueeze(1).expand(-1, self.n_latent, -1)
        check_shape(w, "batch n_latent style_dim", "W+", n_latent=self.n_latent, style_dim=self.style_dim)
        return w

    def styles(self, w_plus: torch.Tensor) -> list[torch.Tensor]:
        """Style vector of every modulated layer, in synthesis order.

        Args:
            w_plus: ``[batch, n_latent, style_dim]`` (or w ``[batch, style_dim]``).

        Returns:
            ``num_styles`` tensors ``[batch, in_channels_of_layer]``.
        """
        w_plus = self.to_w_plus(w_plus)
        return [
            conv.modulation(w_plus[:, idx])
            for conv, idx in zip(self.modulated_convs(), self.style_latent_index, strict=True)
        ]

    # ----------------------------------------------------------------- synthesis
    def synthesis(self, w_plus: torch.Tensor, noise: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Image ``[batch, 3, size, size]`` from W+ ``[batch, n_latent, style_dim]``.

        Args:
            noise: per-layer noise ``[batch or 1, 1, res, res]`` in ``noises.noise_i`` order; ``None`` uses
                the stored buffers (deterministic).
        """
        return self.synthesis_from_styles(self.styles(w_plus), noise)

    def synthesis_layers(self) -> list[SynthesisLayer]:
        """Every modulated layer in synthesis order with the style and noise inputs it reads."""
        return list(self._synthesis_layers)

    @functools.cached_property
    def _synthesis_layers(self) -> tuple[SynthesisLayer, ...]:
        # looked up once: the modules stay the same objects through .to(), load_state_dict and deepcopy
        return tuple(
            SynthesisLayer(self.get_submodule(row.module), k, row.noise) for k, row in enumerate(self.plan)
        )

    def check_synthesis_inputs(
        self, styles: Sequence[torch.Tensor], noise: Sequence[torch.Tensor] | None
    ) -> list[torch.Tensor]:
        """Check the style count; return the noise inputs (the stored buffers when ``noise`` is ``None``)."""
        if len(styles) != self.num_styles:
            raise ValueError(f"expected {self.num_styles} style vectors, got {len(styles)}")
        if noise is None:
            return self.noise_buffers()
        noise = list(noise)
        if len(noise) != self.num_layers:
            raise ValueError(
                f"expected {self.num_layers} noise tensors (noises.noise_i order), got {len(noise)}"
            )
        return noise

    def synthesis_from_styles(
        self, styles: Sequence[torch.Tensor], noise: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Image ``[batch, 3, size, size]`` from the ``num_styles`` style vectors ``[batch, channels_k]``
        of :meth:`styles`; noise as in :meth:`synthesis`."""
        noise = self.check_synthesis_inputs(styles, noise)
        x = self.input(styles[0].shape[0])
        skip = None
        for layer in self.synthesis_layers():
            if layer.is_rgb:
                skip = layer.module(x, styles[layer.style], skip)
            else:
                x = layer.module(x, styles[layer.style], noise[layer.noise])
        return skip

    def forward(
        self,
        latent: torch.Tensor,
        input_is_latent: bool = False,
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
        noise: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Convenience: z (or w / W+ with ``input_is_latent``) → image ``[batch, 3, size, size]``."""
        w = latent if input_is_latent else self.get_latent(latent)
        if truncation != 1.0:
            if truncation_latent is None:
                raise ValueError("truncation needs truncation_latent (e.g. the checkpoint's latent_avg)")
            w = truncation_latent + truncation * (w - truncation_latent)
        return self.synthesis(w, noise)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator.

    Args:
        size: input resolution.
        channel_multiplier: 2 for config-f.
        channels: ``{resolution: channels}`` replacing the default table.
        blur_kernel: FIR kernel of the down-sampling filters.
        conv_clamp: clamp the from-RGB, residual-block and final conv outputs to ``±conv_clamp`` (NVIDIA's
            stylegan2-ada/stylegan3 models); ``None``, the default, clamps nothing.
        stddev_group: minibatch-stddev group size (4 in the official models, 8 in some of NVIDIA's);
            ``None``: the whole batch is one group.
        stddev_feat: minibatch-stddev feature channels appended before the final conv.
    """

    def __init__(
        self,
        size: int,
        channel_multiplier: int = 2,
        channels: dict[int, int] | None = None,
        blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL,
        conv_clamp: float | None = None,
        stddev_group: int | None = 4,
        stddev_feat: int = 1,
    ):
        super().__init__()
        self.size = size
        self.conv_clamp = conv_clamp
        self.stddev_group = stddev_group
        self.stddev_feat = stddev_feat
        log_size = log2_size(size)
        self.channels = {
            int(k): int(v) for k, v in (channels or default_channels(channel_multiplier)).items()
        }
        ch = self.channels
        convs: list[nn.Module] = [ConvLayer(3, ch[size], 1, conv_clamp=conv_clamp)]
        in_ch = ch[size]
        for i in range(log_size, 2, -1):
            out_ch = ch[2 ** (i - 1)]
            convs.append(ResBlock(in_ch, out_ch, blur_kernel, conv_clamp=conv_clamp))
            in_ch = out_ch
        self.convs = nn.Sequential(*convs)
        self.final_conv = ConvLayer(in_ch + stddev_feat, ch[4], 3, conv_clamp=conv_clamp)
        self.final_linear = nn.Sequential(
            EqualLinear(ch[4] * 4 * 4, ch[4], activation="fused_lrelu"), EqualLinear(ch[4], 1)
        )

    @property
    def config(self) -> dict:
        """The keyword arguments that rebuild this architecture (``blur_kernel`` is always the default)."""
        return {
            "size": self.size,
            "channels": {res: ch for res, ch in sorted(self.channels.items()) if res <= self.size},
            "conv_clamp": self.conv_clamp,
            "stddev_group": self.stddev_group,
            "stddev_feat": self.stddev_feat,
        }

    def _check_input(self, x: torch.Tensor) -> None:
        check_shape(x, "batch 3 size size", "images", size=self.size)

    def features(self, x: torch.Tensor, blocks: Sequence[int] = D_FEATURE_BLOCKS) -> list[torch.Tensor]:
        """Outputs of ``convs[i]`` for each ``i`` in ``blocks`` (JoJoGAN's loss reads blocks 1, 3, 4, 5).

        Computation stops after the last block asked for.

        Args:
            x: images ``[batch, 3, size, size]`` in [-1, 1].
            blocks: indices into ``convs`` (0 is the 1×1 from-RGB layer).
        """
        self._check_input(x)
        wanted = sorted(set(blocks))
        if not wanted or wanted[0] < 0 or wanted[-1] >= len(self.convs):
            raise ValueError(f"blocks must be indices in [0, {len(self.convs) - 1}], got {list(blocks)}")
        found: dict[int, torch.Tensor] = {}
        out = x
        for i in range(wanted[-1] + 1):
            out = self.convs[i](out)
            if i in wanted:
                found[i] = out
        return [found[i] for i in blocks]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Realness logits ``[batch, 1]`` for images ``[batch, 3, size, size]``."""
        self._check_input(x)
        out = self.convs(x)
        batch, channels, height, width = out.shape
        group = batch if self.stddev_group is None else min(batch, self.stddev_group)
        if batch % group:
            raise ValueError(f"batch {batch} must be a multiple of the minibatch-stddev group {group}")
        stddev = out.view(group, -1, self.stddev_feat, channels // self.stddev_feat, height, width)
        stddev = torch.sqrt(stddev.var(0, unbiased=False) + 1e-8)
        stddev = stddev.mean([2, 3, 4], keepdim=True).squeeze(2)
        stddev = stddev.repeat(group, 1, height, width)
        out = self.final_conv(torch.cat([out, stddev], 1))
        return self.final_linear(out.view(batch, -1))
