"""Tiny pickles in NVIDIA's stylegan2-ada-pytorch format, written by the tests from our reading of it.

NVIDIA's ``torch_utils.persistence`` pickles every network object as a call of
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with ``meta = {type, version, module_src,
class_name, state}``, ``state`` being the module's ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``,
``_init_args``, ``_init_kwargs`` and plain attributes). :class:`Record` pickles the same way (the function
is registered under NVIDIA's module name only while writing); tensors are pickled by torch itself, i.e.
with ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` and ``torch.storage._load_from_bytes``,
as in NVIDIA's files. Every record's ``module_src`` is code that would create :data:`PAYLOAD_NAME` in a
folder if anyone ran it, so a test can prove nobody did.

:func:`build_networks` makes a seeded G/G_ema/D dict with the attributes NVIDIA's constructors set, and
:func:`reference_*` compute NVIDIA's forward pass straight from the records (a second reading of the
maths, checked against NVIDIA's own outputs in ``test_nvidia_pickle.py``).
"""

from __future__ import annotations

import contextlib
import math
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from jojogan.op import upfirdn2d

PAYLOAD_NAME = "payload-ran"
SQRT2 = math.sqrt(2)
FILTER = torch.tensor([1.0, 3.0, 3.0, 1.0])


def _reconstruct_persistent_obj(meta):  # pragma: no cover - only its name is pickled
    raise AssertionError("the test writer's stand-in is never called")


def _easydict():  # pragma: no cover - only its name is pickled
    raise AssertionError("never called")


@contextlib.contextmanager
def nvidia_module_names():
    """Register our stand-ins under NVIDIA's module names while pickling (pickle checks they resolve)."""
    names = {
        "torch_utils": types.ModuleType("torch_utils"),
        "torch_utils.persistence": types.ModuleType("torch_utils.persistence"),
        "dnnlib": types.ModuleType("dnnlib"),
        "dnnlib.util": types.ModuleType("dnnlib.util"),
    }
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    names["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    names["dnnlib.util"].EasyDict = EasyDict
    EasyDict.__module__ = "dnnlib.util"
    saved = {name: sys.modules.get(name) for name in names}
    sys.modules.update(names)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class EasyDict(dict):
    """Pickles as ``dnnlib.util.EasyDict`` (NVIDIA's kwargs containers)."""


def payload_source(folder: Path) -> str:
    """Module source that would create ``folder/PAYLOAD_NAME`` if it were ever executed."""
    return f"open({str(folder / PAYLOAD_NAME)!r}, 'w').write('NVIDIA source text was executed')\n"


class Record:
    """One of NVIDIA's persistent objects, as its pickle stores it."""

    def __init__(self, class_name, *, params=None, buffers=None, modules=None, args=(), kwargs=None, **attrs):
        self.class_name = class_name
        self.params = {k: torch.nn.Parameter(v) if v is not None else None for k, v in (params or {}).items()}
        self.buffers = dict(buffers or {})
        self.modules = dict(modules or {})
        self.args, self.kwargs, self.attrs = args, dict(kwargs or {}), attrs
        self.source = "raise SystemExit('never run')\n"

    def walk(self):
        yield self
        for child in self.modules.values():
            yield from child.walk()

    def __reduce__(self):
        state = {
            "training": False,
            "_parameters": self.params,
            "_buffers": self.buffers,
            "_non_persistent_buffers_set": set(),
            "_forward_hooks": {},
            "_modules": self.modules,
            **self.attrs,
            "_init_args": self.args,
            "_init_kwargs": self.kwargs,
        }
        meta = {"type": "class", "version": 6, "module_src": self.source, "class_name": self.class_name}
        return (_reconstruct_persistent_obj, ({**meta, "state": state},))


def dumps(obj, payload_folder: Path | None = None) -> bytes:
    """Pickle ``obj`` as NVIDIA's training code would (records, torch tensors, numpy scalars)."""
    if payload_folder is not None:
        for value in obj.values() if isinstance(obj, dict) else [obj]:
            if isinstance(value, Record):
                for record in value.walk():
                    record.source = payload_source(payload_folder)
    with nvidia_module_names():
        return pickle.dumps(obj, protocol=4)


# ---------------------------------------------------------------------------------------------- builders
class _Rng:
    def __init__(self, seed: int):
        self.gen = torch.Generator().manual_seed(seed)

    def randn(self, *shape, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=self.gen) * scale


def _filter() -> torch.Tensor:
    kernel = FILTER[:, None] * FILTER[None, :]
    return kernel / kernel.sum()


def _fc(rng, in_dim, out_dim, activation="linear", lr=1.0, bias_init=0.0):
    return Record(
        "FullyConnectedLayer",
        params={
            "weight": rng.randn(out_dim, in_dim) / lr,
            "bias": bias_init + rng.randn(out_dim, scale=0.1) / lr,
        },
        args=(in_dim, out_dim),
        kwargs={"activation": activation, "lr_multiplier": lr, "bias_init": bias_init},
        activation=activation,
        weight_gain=np.float64(lr / np.sqrt(in_dim)),
        bias_gain=lr,
    )


def _synthesis_layer(rng, in_ch, out_ch, w_dim, res, up, clamp, use_noise=True):
    params = {"weight": rng.randn(out_ch, in_ch, 3, 3), "bias": rng.randn(out_ch, scale=0.2)}
    buffers = {"resample_filter": _filter()}
    if use_noise:
        params["noise_strength"] = rng.randn(1, scale=0.3).reshape(())
        buffers["noise_const"] = rng.randn(res, res)
    return Record(
        "SynthesisLayer",
        params=params,
        buffers=buffers,
        modules={"affine": _fc(rng, w_dim, in_ch, bias_init=1.0)},
        args=(in_ch, out_ch),
        kwargs={"w_dim": w_dim, "resolution": res, "up": up, "conv_clamp": clamp},
        resolution=res,
        up=up,
        use_noise=use_noise,
        activation="lrelu",
        conv_clamp=clamp,
        padding=1,
        act_gain=SQRT2,
    )


def _torgb(rng, in_ch, w_dim, clamp):
    return Record(
        "ToRGBLayer",
        params={"weight": rng.randn(3, in_ch, 1, 1), "bias": rng.randn(3, scale=0.2)},
        modules={"affine": _fc(rng, w_dim, in_ch, bias_init=1.0)},
        args=(in_ch, 3),
        kwargs={"w_dim": w_dim, "conv_clamp": clamp},
        conv_clamp=clamp,
        weight_gain=np.float64(1 / np.sqrt(in_ch)),
    )


def _generator(rng, size, z_dim, n_mlp, channels, clamp, lr=0.01):
    resolutions = [2**i for i in range(2, int(math.log2(size)) + 1)]
    blocks = {}
    for res in resolutions:
        modules = {}
        params = {}
        if res == 4:
            params["const"] = rng.randn(channels[4], 4, 4)
        else:
            modules["conv0"] = _synthesis_layer(rng, channels[res // 2], channels[res], z_dim, res, 2, clamp)
        modules["conv1"] = _synthesis_layer(rng, channels[res], channels[res], z_dim, res, 1, clamp)
        modules["torgb"] = _torgb(rng, channels[res], z_dim, clamp)
        blocks[f"b{res}"] = Record(
            "SynthesisBlock",
            params=params,
            buffers={"resample_filter": _filter()},
            modules=modules,
            in_channels=0 if res == 4 else channels[res // 2],
            resolution=res,
            architecture="skip",
            use_fp16=res >= 16,
            is_last=res == size,
        )
    num_ws = 2 * len(resolutions)
    synthesis = Record(
        "SynthesisNetwork", modules=blocks, w_dim=z_dim, img_resolution=size, img_channels=3, num_ws=num_ws
    )
    mapping = Record(
        "MappingNetwork",
        buffers={"w_avg": rng.randn(z_dim, scale=0.5)},
        modules={f"fc{i}": _fc(rng, z_dim, z_dim, "lrelu", lr) for i in range(n_mlp)},
        kwargs=EasyDict(num_layers=n_mlp),
        z_dim=z_dim,
        c_dim=0,
        w_dim=z_dim,
        num_ws=num_ws,
        num_layers=n_mlp,
        w_avg_beta=0.995,
    )
    kwargs = {"z_dim": z_dim, "c_dim": 0, "w_dim": z_dim, "mapping_kwargs": EasyDict(num_layers=n_mlp)}
    return Record(
        "Generator",
        modules={"synthesis": synthesis, "mapping": mapping},
        kwargs=kwargs,
        z_dim=z_dim,
        c_dim=0,
        w_dim=z_dim,
        img_resolution=size,
        img_channels=3,
    )


def _conv(rng, in_ch, out_ch, k, activation="lrelu", down=1, clamp=None, bias=True):
    return Record(
        "Conv2dLayer",
        params={
            "weight": rng.randn(out_ch, in_ch, k, k),
            **({"bias": rng.randn(out_ch, scale=0.2)} if bias else {}),
        },
        buffers={"resample_filter": _filter()},
        args=(in_ch, out_ch),
        kwargs={"kernel_size": k, "activation": activation, "down": down, "conv_clamp": clamp},
        activation=activation,
        up=1,
        down=down,
        conv_clamp=clamp,
        padding=k // 2,
        weight_gain=np.float64(1 / np.sqrt(in_ch * k * k)),
        act_gain=SQRT2 if activation == "lrelu" else 1,
        **({} if bias else {"bias": None}),
    )


def _discriminator(rng, size, channels, clamp, mbstd_group):
    modules = {}
    for res in [2**i for i in range(int(math.log2(size)), 2, -1)]:
        tmp, out = channels[res], channels[res // 2]
        block = {}
        if res == size:
            block["fromrgb"] = _conv(rng, 3, tmp, 1, clamp=clamp)
        block["conv0"] = _conv(rng, tmp, tmp, 3, clamp=clamp)
        block["conv1"] = _conv(rng, tmp, out, 3, down=2, clamp=clamp)
        block["skip"] = _conv(rng, tmp, out, 1, activation="linear", down=2, bias=False)
        modules[f"b{res}"] = Record(
            "DiscriminatorBlock",
            buffers={"resample_filter": _filter()},
            modules=block,
            in_channels=0 if res == size else tmp,
            resolution=res,
            architecture="resnet",
            use_fp16=res >= 16,
        )
    ch = channels[4]
    modules["b4"] = Record(
        "DiscriminatorEpilogue",
        modules={
            "mbstd": Record("MinibatchStdLayer", group_size=mbstd_group, num_channels=1),
            "conv": _conv(rng, ch + 1, ch, 3, clamp=clamp),
            "fc": _fc(rng, ch * 16, ch, "lrelu"),
            "out": _fc(rng, ch, 1),
        },
        in_channels=ch,
        cmap_dim=0,
        resolution=4,
        architecture="resnet",
    )
    return Record("Discriminator", modules=modules, c_dim=0, img_resolution=size, img_channels=3)


def tiny_channels(size: int) -> dict[int, int]:
    """A channel table like NVIDIA's ``min(channel_base // res, channel_max)`` with a tiny base."""
    return {2**i: min(256 // 2**i, 16) or 2 for i in range(2, int(math.log2(size)) + 1)}


def build_networks(
    size=32, z_dim=16, n_mlp=2, clamp=256, seed=0, mbstd_group=4, channels=None
) -> dict[str, Record | None]:
    """``{"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}`` as NVIDIA's training loop pickles it."""
    rng = _Rng(seed)
    channels = channels or tiny_channels(size)
    g_ema = _generator(rng, size, z_dim, n_mlp, channels, clamp)
    return {
        "G": _generator(_Rng(seed + 1), size, z_dim, n_mlp, channels, clamp),
        "D": _discriminator(rng, size, channels, clamp, mbstd_group),
        "G_ema": g_ema,
        "augment_pipe": None,
        "training_set_kwargs": EasyDict(resolution=size, use_labels=False, xflip=np.bool_(True)),
    }


def stylegan3_networks(size: int = 16) -> dict:
    """As :func:`build_networks`, with StyleGAN3's alias-free synthesis (SynthesisInput, L-layers)."""
    networks = build_networks(size=size)
    rng = _Rng(7)
    layer = Record("SynthesisLayer", params={"weight": rng.randn(8, 8, 3, 3)}, is_torgb=False, use_fp16=False)
    networks["G_ema"].modules["synthesis"] = Record(
        "SynthesisNetwork",
        modules={
            "input": Record(
                "SynthesisInput", params={"weight": rng.randn(8, 8)}, buffers={"freqs": rng.randn(8, 2)}
            ),
            "L0_36_8": layer,
        },
        w_dim=16,
        img_resolution=size,
        num_ws=16,
        num_critical=2,
    )
    return networks


def conditional_networks(c_dim: int = 5, size: int = 16) -> dict:
    """As :func:`build_networks`, with a class label (``c_dim > 0``) and its embedding."""
    networks = build_networks(size=size)
    g_ema = networks["G_ema"]
    g_ema.attrs["c_dim"] = c_dim
    mapping = g_ema.modules["mapping"]
    mapping.attrs["c_dim"] = c_dim
    mapping.modules["embed"] = _fc(_Rng(8), c_dim, 16)
    return networks


# ---------------------------------------------------------------------------------------------- reference
# NVIDIA's forward pass computed from the records read back (our reader's NetworkRecord), written from
# NVIDIA's formulas in its generic form (pad, up-sample by zero insertion, convolve, filter), not the
# product's layers.
def _fc_ref(rec, x):
    x = x @ (rec.tensor("weight") * rec.attr("weight_gain")).t() + rec.tensor("bias") * rec.attr("bias_gain")
    return F.leaky_relu(x, 0.2) * SQRT2 if rec.attr("activation") == "lrelu" else x


def reference_mapping(G, z):
    """w ``[batch, w_dim]`` of z under NVIDIA's mapping network."""
    mapping = G.child("mapping")
    x = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
    for i in range(mapping.attr("num_layers")):
        x = _fc_ref(mapping.child(f"fc{i}"), x)
    return x


def _bias_act_clamp(x, bias, gain, clamp):
    x = F.leaky_relu(x + bias.view(1, -1, 1, 1), 0.2) * gain
    return x if clamp is None else x.clamp(-clamp, clamp)


def _resample_conv(x, weight, f, up, down, padding):
    """NVIDIA's generic conv2d_resample: pad/up-sample, correlate (flipped for up), filter/down-sample."""
    k = weight.shape[-1]
    if up == 1 and down == 1:
        return F.conv2d(x, weight, padding=k // 2)
    fw = f.shape[0]
    p0 = p1 = padding
    if up > 1:
        p0, p1 = p0 + (fw + up - 1) // 2, p1 + (fw - up) // 2
        x = upfirdn2d(x, f * up**2, up=up, pad=(p0, p1, p0, p1))
        return F.conv2d(x, weight.flip([2, 3]))
    p0, p1 = p0 + (fw - down + 1) // 2, p1 + (fw - down) // 2
    x = F.conv2d(F.pad(x, (p0, p1, p0, p1)), weight)
    return upfirdn2d(x, f, down=down)


def _modconv_ref(layer, x, w, noise, demodulate=True, style_gain=1.0):
    styles = _fc_ref(layer.child("affine"), w) * style_gain
    outs = []
    for b in range(x.shape[0]):
        weight = layer.tensor("weight") * styles[b].view(1, -1, 1, 1)
        if demodulate:
            weight = weight * (weight.square().sum([1, 2, 3], keepdim=True) + 1e-8).rsqrt()
        up = layer.attr("up", 1)
        outs.append(
            _resample_conv(
                x[b : b + 1],
                weight,
                layer.tensor("resample_filter") if up > 1 else None,
                up,
                1,
                1 if up > 1 else 0,
            )
        )
    out = torch.cat(outs)
    return out if noise is None else out + noise


def reference_synthesis(G, ws, noise_mode="const"):
    """Image of W+ ``[batch, num_ws, w_dim]`` with noise ``"const"`` or ``"none"``."""
    synthesis = G.child("synthesis")
    size = synthesis.attr("img_resolution")
    x = img = None
    w_idx = 0
    for res in [2**i for i in range(2, int(math.log2(size)) + 1)]:
        block = synthesis.child(f"b{res}")
        names = ["conv1"] if res == 4 else ["conv0", "conv1"]
        if res == 4:
            x = block.tensor("const").unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
        for k, name in enumerate(names):
            layer = block.child(name)
            noise = (
                layer.tensor("noise_const") * layer.tensor("noise_strength")
                if noise_mode == "const"
                else None
            )
            x = _modconv_ref(layer, x, ws[:, w_idx + k], noise)
            x = _bias_act_clamp(x, layer.tensor("bias"), layer.attr("act_gain"), layer.attr("conv_clamp"))
        if img is not None:
            img = upfirdn2d(img, block.tensor("resample_filter") * 4, up=2, pad=(2, 1, 2, 1))
        torgb = block.child("torgb")
        y = _modconv_ref(
            torgb, x, ws[:, w_idx + len(names)], None, demodulate=False, style_gain=torgb.attr("weight_gain")
        )
        y = y + torgb.tensor("bias").view(1, -1, 1, 1)
        y = (
            y
            if torgb.attr("conv_clamp") is None
            else y.clamp(-torgb.attr("conv_clamp"), torgb.attr("conv_clamp"))
        )
        img = y if img is None else img + y
        w_idx += len(names)
    return img


def _conv_layer_ref(layer, x, gain=1.0):
    weight = layer.tensor("weight") * layer.attr("weight_gain")
    k = weight.shape[-1]
    down = layer.attr("down")
    x = _resample_conv(x, weight, layer.tensor("resample_filter"), 1, down, k // 2 if down > 1 else 0)
    bias = layer.parameters.get("bias")
    clamp = layer.attr("conv_clamp")
    if layer.attr("activation") == "lrelu":
        x = F.leaky_relu(x + bias.view(1, -1, 1, 1), 0.2)
    x = x * layer.attr("act_gain") * gain
    return x if clamp is None else x.clamp(-clamp * gain, clamp * gain)


def reference_discriminator(D, img):
    """``(logits [batch, 1], {resolution: block output})`` of NVIDIA's resnet discriminator."""
    size = D.attr("img_resolution")
    x = None
    blocks = {}
    for res in [2**i for i in range(int(math.log2(size)), 2, -1)]:
        block = D.child(f"b{res}")
        if x is None:
            x = _conv_layer_ref(block.child("fromrgb"), img)
        y = _conv_layer_ref(block.child("skip"), x, gain=math.sqrt(0.5))
        x = _conv_layer_ref(
            block.child("conv1"), _conv_layer_ref(block.child("conv0"), x), gain=math.sqrt(0.5)
        )
        x = y + x
        blocks[res] = x
    epilogue = D.child("b4")
    mbstd = epilogue.child("mbstd")
    n, c, h, w = x.shape
    group = min(mbstd.attr("group_size") or n, n)
    y = x.reshape(group, -1, 1, c, h, w)
    y = (
        ((y - y.mean(0)).square().mean(0) + 1e-8)
        .sqrt()
        .mean([2, 3, 4])
        .reshape(-1, 1, 1, 1)
        .repeat(group, 1, h, w)
    )
    x = _conv_layer_ref(epilogue.child("conv"), torch.cat([x, y], 1))
    x = _fc_ref(epilogue.child("out"), _fc_ref(epilogue.child("fc"), x.flatten(1)))
    return x, blocks


# ---------------------------------------------------------------------------------------------- TF era
class TFNetwork:
    """Pickles as ``dnnlib.tflib.network.Network``: the state NVIDIA's TF code writes (``__getstate__``)."""

    def __init__(self, name, static_kwargs, variables, components=None):
        self.name, self.static_kwargs, self.variables = name, static_kwargs, variables
        self.components = components or {}
        self.source = "raise SystemExit('never run')\n"

    def __getstate__(self):
        return {
            "version": 4,
            "name": self.name,
            "static_kwargs": self.static_kwargs,
            "components": self.components,
            "build_module_src": self.source,
            "build_func_name": f"training.networks_stylegan2.{self.name}",
            "variables": list(self.variables.items()),
        }


def _np(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().numpy().astype(np.float32).copy()


def _tf_conv(weight: torch.Tensor, flip: bool = False) -> np.ndarray:
    """``[out, in, kh, kw]`` → TF's ``[kh, kw, in, out]`` (spatially flipped for a TF transposed conv)."""
    tf = weight.detach().permute(2, 3, 1, 0)
    return _np(tf.flip([0, 1]) if flip else tf)


def _tf_modulated(record: Record, scope: str, flip: bool = False) -> dict:
    affine = record.modules["affine"]
    found = {
        f"{scope}/weight": _tf_conv(record.params["weight"], flip),
        f"{scope}/bias": _np(record.params["bias"]),
        f"{scope}/mod_weight": _np(affine.params["weight"].t()),
        f"{scope}/mod_bias": _np(affine.params["bias"] - 1),
    }
    if "noise_strength" in record.params:
        found[f"{scope}/noise_strength"] = _np(record.params["noise_strength"])
    return found


def _tf_generator(g: Record, mbstd_group: int) -> TFNetwork:
    mapping, synthesis = g.modules["mapping"], g.modules["synthesis"]
    n_mlp = mapping.attrs["num_layers"]
    mapping_vars = {}
    for i in range(n_mlp):
        fc = mapping.modules[f"fc{i}"]
        mapping_vars[f"Dense{i}/weight"] = _np(fc.params["weight"].t())
        mapping_vars[f"Dense{i}/bias"] = _np(fc.params["bias"])
    synthesis_vars, k = {}, 0
    size = synthesis.attrs["img_resolution"]
    for res in [2**i for i in range(2, int(math.log2(size)) + 1)]:
        block = synthesis.modules[f"b{res}"]
        if res == 4:
            synthesis_vars["4x4/Const/const"] = _np(block.params["const"][None])
            layers = [("conv1", "Conv", False)]
        else:
            layers = [("conv0", "Conv0_up", True), ("conv1", "Conv1", False)]
        for name, scope, flip in layers:
            layer = block.modules[name]
            synthesis_vars.update(_tf_modulated(layer, f"{res}x{res}/{scope}", flip))
            synthesis_vars[f"noise{k}"] = _np(layer.buffers["noise_const"][None, None])
            k += 1
        synthesis_vars.update(_tf_modulated(block.modules["torgb"], f"{res}x{res}/ToRGB"))
    kwargs = {"resolution": size, "latent_size": g.attrs["z_dim"], "dlatent_size": g.attrs["w_dim"]}
    kwargs.update(mapping_layers=n_mlp, truncation_psi=0.5)
    components = {
        "mapping": TFNetwork("G_mapping", {}, mapping_vars),
        "synthesis": TFNetwork("G_synthesis_stylegan2", {}, synthesis_vars),
    }
    return TFNetwork("G_main", kwargs, {"dlatent_avg": _np(mapping.buffers["w_avg"])}, components)


def _tf_discriminator(d: Record, mbstd_group: int) -> TFNetwork:
    size = d.attrs["img_resolution"]
    found = {}
    for res in [2**i for i in range(int(math.log2(size)), 2, -1)]:
        block = d.modules[f"b{res}"]
        names = [("fromrgb", "FromRGB"), ("conv0", "Conv0"), ("conv1", "Conv1_down"), ("skip", "Skip")]
        for name, scope in names:
            if name in block.modules:
                layer = block.modules[name]
                found[f"{res}x{res}/{scope}/weight"] = _tf_conv(layer.params["weight"])
                if "bias" in layer.params:
                    found[f"{res}x{res}/{scope}/bias"] = _np(layer.params["bias"])
    epilogue = d.modules["b4"].modules
    found["4x4/Conv/weight"] = _tf_conv(epilogue["conv"].params["weight"])
    found["4x4/Conv/bias"] = _np(epilogue["conv"].params["bias"])
    for name, scope in (("fc", "4x4/Dense0"), ("out", "Output")):
        found[f"{scope}/weight"] = _np(epilogue[name].params["weight"].t())
        found[f"{scope}/bias"] = _np(epilogue[name].params["bias"])
    return TFNetwork("D_stylegan2", {"resolution": size, "mbstd_group_size": mbstd_group}, found)


def tf_dumps(networks: dict, mbstd_group: int = 4, payload_folder: Path | None = None) -> bytes:
    """The TF-era ``(G, D, Gs)`` pickle of the same networks (unclamped), as NVlabs/stylegan2 wrote it."""
    nets = (
        _tf_generator(networks["G"], mbstd_group),
        _tf_discriminator(networks["D"], mbstd_group),
        _tf_generator(networks["G_ema"], mbstd_group),
    )
    if payload_folder is not None:
        for net in nets:
            for part in (net, *net.components.values()):
                part.source = payload_source(payload_folder)
    modules = {name: types.ModuleType(name) for name in ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")}
    modules["dnnlib.tflib.network"].Network = TFNetwork
    TFNetwork.__module__, TFNetwork.__qualname__ = "dnnlib.tflib.network", "Network"
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        return pickle.dumps(nets, protocol=3)
    finally:
        TFNetwork.__module__, TFNetwork.__qualname__ = __name__, "TFNetwork"
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
