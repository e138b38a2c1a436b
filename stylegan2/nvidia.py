"""NVIDIA's StyleGAN2 networks (stylegan2-ada-pytorch, stylegan3's ``networks_stylegan2``, and the TF era's
NVlabs/stylegan2 through :mod:`~jojogan.stylegan2.nvidia_tf`) in the official layout.

:func:`convert_records` maps the persistence records that :mod:`~jojogan.stylegan2.nvidia_pickle` reads to
the product's own modules under the official (rosinality) names, so fine-tuning and stylizing use them
unchanged. The correspondence, per part of NVIDIA's network:

* mapping ``fc{i}`` (``weight`` stored divided by the learning-rate multiplier, gains ``lr/sqrt(in)`` and
  ``lr`` applied at run time) → ``style.{i+1}``, the same convention (``lr_mlp`` = the bias gain);
  the z normalisation is the same second-moment normalisation (``PixelNorm``); ``w_avg`` → ``latent_avg``.
* synthesis block ``b4``: ``const`` → ``input.input``; ``conv1`` → ``conv1``; ``torgb`` → ``to_rgb1``.
  Block ``b{2^(j+3)}``: ``conv0`` (2× up) → ``convs.{2j}``, ``conv1`` → ``convs.{2j+1}``, ``torgb`` →
  ``to_rgbs.{j}`` (the ``skip`` architecture: every block's RGB output is added to the up-sampled image).
* a synthesis layer: ``affine`` → ``conv.modulation``; ``weight`` [out, in, 3, 3] → ``conv.weight``
  [1, out, in, 3, 3] (NVIDIA demodulates the unscaled weight, the product the weight times
  ``1/sqrt(in·9)``: demodulation cancels any constant factor, up to its 1e-8 epsilon); ``bias`` →
  ``activate.bias``; ``noise_strength`` → ``noise.weight``; ``noise_const`` → ``noises.noise_i``.
* to-RGB: NVIDIA scales the style by ``1/sqrt(in)``, the product the weight: the same product.
* ``conv_clamp``: NVIDIA clamps after bias, activation and gain in every synthesis and to-RGB layer; the
  product's layers take the same optional clamp.
* discriminator (``resnet``): ``b{size}.fromrgb`` → ``convs.0``; block ``b{r}``: ``conv0`` →
  ``convs.i.conv1``, ``conv1`` (down, gain √½, clamp·√½) → ``convs.i.conv2``, ``skip`` (down, linear, gain √½)
  → ``convs.i.skip``: NVIDIA's ``√½·skip + √½·clamp(act(conv))`` is the product's ``(skip + conv)/√2`` with a
  clamped conv. Epilogue ``b4``: minibatch stddev (group, channels), ``conv`` → ``final_conv``, ``fc`` and
  ``out`` → ``final_linear.0/1``.

fp16 flags (``use_fp16``, ``num_fp16_res``) only choose NVIDIA's GPU precision; the product computes in
float32 and records them as provenance. What the product cannot run is refused in one line: StyleGAN3's
alias-free synthesis, conditional models (``c_dim > 0``), other architectures, filters and activations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from jojogan.errors import CheckpointError
from jojogan.op import make_kernel
from jojogan.stylegan2.layers import DEFAULT_BLUR_KERNEL
from jojogan.stylegan2.model import Discriminator, Generator
from jojogan.stylegan2.nvidia_pickle import NetworkRecord
from jojogan.stylegan2.nvidia_tf import is_tf_pickle, tf_records

__all__ = ["NvidiaConversion", "convert_records"]

_SQRT2 = math.sqrt(2.0)
_GAIN_TOLERANCE = 1e-6


@dataclass
class NvidiaConversion:
    """An NVIDIA network pickle in the official layout.

    Attributes:
        g_ema: generator state dict (official names).
        d: discriminator state dict, or ``None`` when the file has no ``D``.
        latent_avg: NVIDIA's tracked mean w (``w_avg``) ``[style_dim]``.
        generator_config: :class:`Generator` keyword arguments (``size``, ``style_dim``, ``n_mlp``,
            ``channels``, ``lr_mlp``, ``conv_clamp``).
        discriminator_config: :class:`Discriminator` keyword arguments (``size``, ``channels``,
            ``conv_clamp``, ``stddev_group``, ``stddev_feat``), or ``None``.
        source: provenance (NVIDIA's class names, fp16 resolutions, mapping depth, ...).
    """

    g_ema: dict
    d: dict | None
    latent_avg: torch.Tensor
    generator_config: dict
    discriminator_config: dict | None
    source: dict = field(default_factory=dict)

    def generator(self) -> Generator:
        """The converted generator (eval mode)."""
        gen = Generator(**self.generator_config)
        gen.load_state_dict(self.g_ema, strict=True)
        return gen.eval()

    def discriminator(self) -> Discriminator | None:
        """The converted discriminator (eval mode), or ``None``."""
        if self.d is None or self.discriminator_config is None:
            return None
        disc = Discriminator(**self.discriminator_config)
        disc.load_state_dict(self.d, strict=True)
        return disc.eval()


# ---------------------------------------------------------------------------------------------- checks
def _fail(record: NetworkRecord, what: str) -> CheckpointError:
    return CheckpointError(f"{record.path or record.class_name}: {what}")


def _expect_class(record: NetworkRecord, *names: str) -> None:
    if record.class_name not in names:
        raise _fail(record, f"expected NVIDIA's {' or '.join(names)}, found a {record.class_name}")


def _expect_attr(record: NetworkRecord, name: str, wanted: object, meaning: str = "") -> None:
    found = record.attr(name)
    if isinstance(wanted, float):
        ok = isinstance(found, int | float) and math.isclose(found, wanted, rel_tol=_GAIN_TOLERANCE)
    else:
        ok = found == wanted
    if not ok:
        extra = f" ({meaning})" if meaning else ""
        raise _fail(record, f"{name} is {found!r}, jojogan's StyleGAN2 supports {wanted!r}{extra}")


def _expect_shape(record: NetworkRecord, name: str, shape: tuple) -> torch.Tensor:
    tensor = record.tensor(name)
    if tuple(tensor.shape) != tuple(shape):
        raise _fail(record, f"'{name}' has shape {list(tensor.shape)}, expected {list(shape)}")
    if tensor.is_floating_point() and not torch.isfinite(tensor).all():
        raise _fail(record, f"'{name}' holds NaN or infinite values")
    return tensor.detach().to(torch.float32).clone()


def _expect_filter(record: NetworkRecord) -> None:
    """NVIDIA stores its resampling filter normalised to sum 1, as :func:`make_kernel` builds it."""
    found = record.tensor("resample_filter").to(torch.float32)
    if found.shape != (4, 4) or not torch.allclose(found, make_kernel(DEFAULT_BLUR_KERNEL), atol=1e-7):
        raise _fail(record, "the resampling filter is not [1, 3, 3, 1], the only one jojogan supports")


def _dense(record: NetworkRecord, in_dim: int, out_dim: int, activation: str, lr: float = 1.0) -> list:
    """A ``FullyConnectedLayer``'s ``[weight, bias]``; checks its gains are the equalized-lr ones."""
    _expect_class(record, "FullyConnectedLayer")
    _expect_attr(record, "activation", activation)
    _expect_attr(record, "bias_gain", float(lr), "the learning-rate multiplier")
    _expect_attr(record, "weight_gain", lr / math.sqrt(in_dim), "equalized learning rate")
    return [_expect_shape(record, "weight", (out_dim, in_dim)), _expect_shape(record, "bias", (out_dim,))]


def _clamp_of(records: list[NetworkRecord], what: str) -> float | None:
    """The one ``conv_clamp`` shared by ``records`` (``None``: no clamp)."""
    found = {rec.attr("conv_clamp") for rec in records}
    if len(found) != 1:
        raise CheckpointError(f"the {what} layers use different conv_clamp values {sorted(map(str, found))}")
    clamp = found.pop()
    if clamp is not None and (not isinstance(clamp, int | float) or not 0 < clamp < math.inf):
        raise CheckpointError(f"the {what} conv_clamp {clamp!r} is not a positive number")
    return None if clamp is None else float(clamp)


# ---------------------------------------------------------------------------------------------- generator
def _refuse_unsupported_generator(G: NetworkRecord) -> None:
    synthesis = G.child("synthesis")
    if "input" in synthesis.modules or any(
        isinstance(c, NetworkRecord) and c.class_name == "SynthesisInput" for c in synthesis.modules.values()
    ):
        raise _fail(
            G,
            "this is StyleGAN3's alias-free synthesis network (SynthesisInput and L-layers), not a "
            "StyleGAN2; jojogan fine-tunes StyleGAN2 generators only",
        )
    _expect_class(G, "Generator")
    c_dim = G.attr("c_dim", 0)
    if c_dim:
        raise _fail(G, f"a conditional model (c_dim={c_dim}): jojogan supports unconditional generators only")
    _expect_attr(G, "img_channels", 3, "RGB images")
    if G.attr("z_dim") != G.attr("w_dim"):
        raise _fail(
            G, f"z_dim {G.attr('z_dim')} differs from w_dim {G.attr('w_dim')}; jojogan needs them equal"
        )


def _mapping(mapping: NetworkRecord, style_dim: int) -> tuple[dict, int, float, torch.Tensor]:
    """``style.*`` tensors, the number of layers, ``lr_mlp`` and ``w_avg``."""
    _expect_class(mapping, "MappingNetwork")
    n_layers = mapping.attr("num_layers")
    if not isinstance(n_layers, int) or n_layers < 1:
        raise _fail(mapping, f"num_layers is {n_layers!r}, expected a positive number")
    first = mapping.child("fc0")
    lr = first.attr("bias_gain")
    if not isinstance(lr, int | float) or not 0 < lr < math.inf:
        raise _fail(first, f"bias_gain {lr!r} is not a learning-rate multiplier")
    state = {}
    for i in range(n_layers):
        weight, bias = _dense(mapping.child(f"fc{i}"), style_dim, style_dim, "lrelu", lr)
        state[f"style.{i + 1}.weight"], state[f"style.{i + 1}.bias"] = weight, bias
    return state, n_layers, float(lr), _expect_shape(mapping, "w_avg", (style_dim,))


def _synthesis_layer(layer: NetworkRecord, prefix: str, shape: tuple, up: int, style_dim: int) -> dict:
    """One ``SynthesisLayer`` as the tensors of a ``StyledConv`` named ``prefix``; ``shape`` = [out, in]."""
    _expect_class(layer, "SynthesisLayer")
    _expect_attr(layer, "activation", "lrelu")
    _expect_attr(layer, "act_gain", _SQRT2)
    _expect_attr(layer, "up", up)
    _expect_attr(layer, "padding", 1)
    if up > 1:
        _expect_filter(layer)
    out_ch, in_ch = shape
    res = layer.attr("resolution")
    modulation = _dense(layer.child("affine"), style_dim, in_ch, "linear")
    state = {
        f"{prefix}.conv.weight": _expect_shape(layer, "weight", (out_ch, in_ch, 3, 3)).unsqueeze(0),
        f"{prefix}.conv.modulation.weight": modulation[0],
        f"{prefix}.conv.modulation.bias": modulation[1],
        f"{prefix}.activate.bias": _expect_shape(layer, "bias", (out_ch,)),
    }
    if layer.attr("use_noise", True):
        state[f"{prefix}.noise.weight"] = _expect_shape(layer, "noise_strength", ()).reshape(1)
        noise = _expect_shape(layer, "noise_const", (res, res))
    else:  # no noise input: strength 0 reproduces it
        state[f"{prefix}.noise.weight"] = torch.zeros(1)
        noise = torch.zeros(res, res)
    return {**state, "noise": noise[None, None]}


def _to_rgb(torgb: NetworkRecord, prefix: str, channels: int, style_dim: int) -> dict:
    _expect_class(torgb, "ToRGBLayer")
    _expect_attr(torgb, "weight_gain", 1 / math.sqrt(channels), "equalized learning rate")
    modulation = _dense(torgb.child("affine"), style_dim, channels, "linear")
    return {
        f"{prefix}.conv.weight": _expect_shape(torgb, "weight", (3, channels, 1, 1)).unsqueeze(0),
        f"{prefix}.conv.modulation.weight": modulation[0],
        f"{prefix}.conv.modulation.bias": modulation[1],
        f"{prefix}.bias": _expect_shape(torgb, "bias", (3,)).view(1, 3, 1, 1),
    }


def _block_channels(block: NetworkRecord) -> int:
    conv = block.child("conv1")
    return int(conv.tensor("weight").shape[0])


def _synthesis(synthesis: NetworkRecord, style_dim: int) -> tuple[dict, dict, list, list]:
    """Tensors of the synthesis network, its channel table, its layers (for the clamp) and fp16 flags."""
    _expect_class(synthesis, "SynthesisNetwork")
    size = synthesis.attr("img_resolution")
    if not isinstance(size, int) or size < 8 or size > 4096 or size & (size - 1):
        raise _fail(synthesis, f"img_resolution {size!r} is not a power of two from 8 to 4096")
    resolutions = [2**i for i in range(2, int(math.log2(size)) + 1)]
    blocks = {res: synthesis.child(f"b{res}") for res in resolutions}
    channels = {res: _block_channels(block) for res, block in blocks.items()}
    state: dict = {}
    noises: list[torch.Tensor] = []
    layers: list[NetworkRecord] = []
    for j, (res, block) in enumerate(blocks.items()):
        _expect_class(block, "SynthesisBlock")
        _expect_attr(block, "architecture", "skip", "the skip generator of StyleGAN2 config-f")
        if res == 4:
            state["input.input"] = _expect_shape(block, "const", (channels[4], 4, 4)).unsqueeze(0)
            convs = [("conv1", "conv1", 1, channels[4])]
            rgb_prefix = "to_rgb1"
        else:
            _expect_filter(block)  # the RGB skip path's up-sampling
            convs = [
                ("conv0", f"convs.{2 * j - 2}", 2, channels[res // 2]),
                ("conv1", f"convs.{2 * j - 1}", 1, None),
            ]
            rgb_prefix = f"to_rgbs.{j - 1}"
        for name, prefix, up, in_ch in convs:
            layer = block.child(name)
            found = _synthesis_layer(layer, prefix, (channels[res], in_ch or channels[res]), up, style_dim)
            noises.append(found.pop("noise"))
            state.update(found)
            layers.append(layer)
        torgb = block.child("torgb")
        state.update(_to_rgb(torgb, rgb_prefix, channels[res], style_dim))
        layers.append(torgb)
    state.update({f"noises.noise_{i}": noise for i, noise in enumerate(noises)})
    fp16 = [res for res, block in blocks.items() if block.attr("use_fp16")]
    return state, channels, layers, fp16


def _generator(G: NetworkRecord) -> tuple[dict, dict, torch.Tensor, dict]:
    _refuse_unsupported_generator(G)
    style_dim = G.attr("w_dim")
    if not isinstance(style_dim, int) or style_dim < 1:
        raise _fail(G, f"w_dim {style_dim!r} is not a positive number")
    mapping_state, n_mlp, lr_mlp, w_avg = _mapping(G.child("mapping"), style_dim)
    synthesis_state, channels, layers, fp16 = _synthesis(G.child("synthesis"), style_dim)
    config = {
        "size": max(channels),
        "style_dim": style_dim,
        "n_mlp": n_mlp,
        "channels": channels,
        "lr_mlp": lr_mlp,
        "conv_clamp": _clamp_of(layers, "generator"),
    }
    info = {"generator_class": G.class_name, "mapping_layers": n_mlp, "generator_fp16_resolutions": fp16}
    return {**mapping_state, **synthesis_state}, config, w_avg, info


# ---------------------------------------------------------------------------------------------- discriminator
def _conv(layer: NetworkRecord, shape: tuple, down: int, activation: str = "lrelu") -> list[torch.Tensor]:
    """A ``Conv2dLayer``'s ``[weight(, bias)]``; ``shape`` = [out, in, k]."""
    _expect_class(layer, "Conv2dLayer")
    out_ch, in_ch, k = shape
    _expect_attr(layer, "activation", activation)
    _expect_attr(layer, "act_gain", _SQRT2 if activation == "lrelu" else 1.0)
    _expect_attr(layer, "down", down)
    _expect_attr(layer, "up", 1)
    _expect_attr(layer, "padding", k // 2)
    _expect_attr(layer, "weight_gain", 1 / math.sqrt(in_ch * k * k), "equalized learning rate")
    if down > 1:
        _expect_filter(layer)
    found = [_expect_shape(layer, "weight", (out_ch, in_ch, k, k))]
    if activation == "lrelu":
        found.append(_expect_shape(layer, "bias", (out_ch,)))
    elif layer.parameters.get("bias") is not None:
        raise _fail(layer, "the residual skip conv has a bias, which StyleGAN2's has not")
    return found


def _d_block(block: NetworkRecord, i: int, in_ch: int, out_ch: int) -> tuple[dict, list]:
    _expect_class(block, "DiscriminatorBlock")
    _expect_attr(block, "architecture", "resnet", "the residual discriminator of StyleGAN2 config-f")
    conv0, conv1, skip = block.child("conv0"), block.child("conv1"), block.child("skip")
    w0, b0 = _conv(conv0, (in_ch, in_ch, 3), 1)
    w1, b1 = _conv(conv1, (out_ch, in_ch, 3), 2)
    (ws,) = _conv(skip, (out_ch, in_ch, 1), 2, activation="linear")
    if skip.attr("conv_clamp") is not None:
        raise _fail(skip, "the residual skip conv is clamped, which NVIDIA's StyleGAN2 never does")
    state = {
        f"convs.{i}.conv1.0.weight": w0,
        f"convs.{i}.conv1.1.bias": b0,
        f"convs.{i}.conv2.1.weight": w1,
        f"convs.{i}.conv2.2.bias": b1,
        f"convs.{i}.skip.1.weight": ws,
    }
    return state, [conv0, conv1]


def _epilogue(epilogue: NetworkRecord, channels: int) -> tuple[dict, list, dict]:
    _expect_class(epilogue, "DiscriminatorEpilogue")
    _expect_attr(epilogue, "architecture", "resnet")
    _expect_attr(epilogue, "cmap_dim", 0, "an unconditional discriminator")
    mbstd = epilogue.modules.get("mbstd")
    if not isinstance(mbstd, NetworkRecord):
        raise _fail(epilogue, "has no minibatch-stddev layer, which jojogan's StyleGAN2 discriminator needs")
    _expect_class(mbstd, "MinibatchStdLayer")
    group, feat = mbstd.attr("group_size"), mbstd.attr("num_channels")
    if not (group is None or (isinstance(group, int) and group >= 1)) or not (
        isinstance(feat, int) and feat >= 1
    ):
        raise _fail(mbstd, f"group_size {group!r} / num_channels {feat!r} are not supported")
    conv = epilogue.child("conv")
    w, b = _conv(conv, (channels, channels + feat, 3), 1)
    fc = _dense(epilogue.child("fc"), channels * 16, channels, "lrelu")
    out = _dense(epilogue.child("out"), channels, 1, "linear")
    state = {
        "final_conv.0.weight": w,
        "final_conv.1.bias": b,
        "final_linear.0.weight": fc[0],
        "final_linear.0.bias": fc[1],
        "final_linear.1.weight": out[0],
        "final_linear.1.bias": out[1],
    }
    return state, [conv], {"stddev_group": group, "stddev_feat": feat}


def _discriminator(D: NetworkRecord, size: int) -> tuple[dict, dict, dict]:
    _expect_class(D, "Discriminator")
    c_dim = D.attr("c_dim", 0)
    if c_dim:
        raise _fail(
            D, f"a conditional discriminator (c_dim={c_dim}): jojogan supports unconditional models only"
        )
    _expect_attr(D, "img_resolution", size, "the generator's resolution")
    _expect_attr(D, "img_channels", 3)
    resolutions = [2**i for i in range(int(math.log2(size)), 2, -1)]
    blocks = [D.child(f"b{res}") for res in resolutions]
    fromrgb = blocks[0].child("fromrgb")
    first = int(fromrgb.tensor("weight").shape[0])
    channels = {size: first}
    state = dict(zip(("convs.0.0.weight", "convs.0.1.bias"), _conv(fromrgb, (first, 3, 1), 1), strict=True))
    clamped = [fromrgb]
    for i, (res, block) in enumerate(zip(resolutions, blocks, strict=True), start=1):
        out_ch = int(block.child("conv1").tensor("weight").shape[0])
        found, layers = _d_block(block, i, channels[res], out_ch)
        channels[res // 2] = out_ch
        state.update(found)
        clamped += layers
    found, layers, mbstd = _epilogue(D.child("b4"), channels[4])
    state.update(found)
    config = {"size": size, "channels": channels, "conv_clamp": _clamp_of(clamped + layers, "discriminator")}
    fp16 = [res for res, block in zip(resolutions, blocks, strict=True) if block.attr("use_fp16")]
    return state, {**config, **mbstd}, {"discriminator_fp16_resolutions": fp16}


# ---------------------------------------------------------------------------------------------- entry point
def _top_level(data: object, name: str) -> tuple[NetworkRecord, NetworkRecord | None]:
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{name} holds a {type(data).__name__}, not NVIDIA's {{'G_ema', 'D', ...}} dict"
        )
    gen = data.get("G_ema")
    if not isinstance(gen, NetworkRecord):
        found = ", ".join(
            f"{k} ({v.class_name})" if isinstance(v, NetworkRecord) else str(k) for k, v in data.items()
        )
        raise CheckpointError(
            f"{name} holds no StyleGAN2 generator 'G_ema' (found: {found[:200] or 'nothing'}): not a pickle "
            "of NVIDIA's StyleGAN2 networks"
        )
    disc = data.get("D")
    return gen, disc if isinstance(disc, NetworkRecord) else None


def convert_records(data: object, name: str = "network pickle") -> NvidiaConversion:
    """Map what :func:`~jojogan.stylegan2.nvidia_pickle.read_network_pickle` read to the official layout.

    Args:
        data: the pickle's contents (``{"G_ema": ..., "D": ..., ...}``).
        name: the file's name, for messages.

    Raises:
        CheckpointError: one line naming what is not a supported StyleGAN2 (StyleGAN3, conditional, another
            network, other architecture settings) or which tensor is missing or misshapen.
    """
    source_format = "stylegan2-ada-pytorch"
    try:
        if is_tf_pickle(data):
            if min(net.version for net in data) < 4:
                raise CheckpointError("a TF network pickle older than StyleGAN2's (format version < 4)")
            data, source_format = tf_records(data), "stylegan2-tf"
    except CheckpointError as error:
        raise CheckpointError(f"{name}: {error}") from None
    gen_record, disc_record = _top_level(data, name)
    try:
        g_state, g_config, w_avg, info = _generator(gen_record)
        d_state = d_config = None
        if disc_record is not None:
            d_state, d_config, d_info = _discriminator(disc_record, g_config["size"])
            info.update(d_info)
    except CheckpointError as error:
        raise CheckpointError(f"{name}: {error}") from None
    conversion = NvidiaConversion(
        g_state, d_state, w_avg, g_config, d_config, {"format": source_format, **info}
    )
    _check_layout(conversion, name)
    return conversion


def _check_layout(conversion: NvidiaConversion, name: str) -> None:
    """Every tensor of the product's modules is filled (the fixed resampling kernels come from them)."""
    from jojogan.stylegan2.checkpoint import layout_problems

    pairs = [(Generator(**conversion.generator_config), conversion.g_ema, "generator")]
    if conversion.d is not None:
        pairs.append((Discriminator(**conversion.discriminator_config), conversion.d, "discriminator"))
    for module, state, what in pairs:
        expected = module.state_dict()
        kernels = {k: v for k, v in expected.items() if k.endswith(".kernel")}
        problems = layout_problems({**kernels, **state}, expected)
        if problems:
            raise CheckpointError(
                f"{name}: the converted {what} does not fit the layout: " + "; ".join(problems)
            )
        state.update(kernels)
        for key in list(state):
            state[key] = state[key].contiguous()
        ordered = {key: state[key] for key in expected}
        state.clear()
        state.update(ordered)
