"""TF-era StyleGAN2 pickles (NVlabs/stylegan2, ``dnnlib.tflib.network.Network``) as NVIDIA's PyTorch records.

A TF-era file is a pickled tuple ``(G, D, Gs)`` of ``Network`` objects whose state is the build function's
keyword arguments (``static_kwargs``), sub-networks (``components``: ``mapping``, ``synthesis``) and named
variables (numpy arrays); the build function's source text is dropped unread by the reader. This module
renames those variables into the records stylegan2-ada-pytorch would hold for the same network (the
correspondence NVIDIA's own ``legacy.py`` applies), so :func:`~jojogan.stylegan2.nvidia.convert_records`
checks and maps both formats with one set of rules:

* dense layers ``Dense{i}``/``Dense0``/``Output`` store ``[in, out]``: transposed; convolutions store
  ``[kh, kw, in, out]``: to ``[out, in, kh, kw]``; the generator's up-sampling ``Conv0_up`` is a TF transposed
  convolution, whose kernel is the spatially flipped one of a PyTorch ``conv_transpose2d``;
* TF adds 1 to the style at run time (``mod_bias`` starts at 0), PyTorch keeps that 1 in the affine bias;
* the per-layer noise inputs are the variables ``synthesis/noise{k}`` in layer order, the mean w is
  ``dlatent_avg``; gains follow from the same equalized learning rate (``mapping_lrmul``, 0.01 by default).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from jojogan.errors import CheckpointError
from jojogan.op import make_kernel
from jojogan.stylegan2.nvidia_pickle import NetworkRecord, TFNetworkRecord, assign_paths

__all__ = ["is_tf_pickle", "tf_records"]

_SQRT2 = math.sqrt(2.0)


def is_tf_pickle(data: object) -> bool:
    """Whether ``data`` is the TF era's ``(G, D, Gs)`` tuple."""
    return isinstance(data, tuple) and len(data) == 3 and all(isinstance(n, TFNetworkRecord) for n in data)


def _variables(net: TFNetworkRecord, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every variable of ``net`` and its components, named ``component/…/variable``, as float32 tensors."""
    found = {}
    for name, value in net.variables.items():
        array = getattr(value, "array", value)
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
            raise CheckpointError(f"the TF variable {prefix}{name} is not a numeric array")
        found[prefix + name] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    for name, component in net.components.items():
        if isinstance(component, TFNetworkRecord):
            found.update(_variables(component, f"{prefix}{name}/"))
    return found


class _Vars:
    """The variables of one network, each taken once; a missing one is a one-line error."""

    def __init__(self, net: TFNetworkRecord, what: str):
        self.values = _variables(net)
        self.what = what

    def __call__(self, name: str) -> torch.Tensor:
        if name not in self.values:
            raise CheckpointError(f"the TF {self.what} has no variable '{name}'")
        return self.values[name]

    def dense(self, name: str) -> torch.Tensor:
        return self(name).t().contiguous()

    def conv(self, name: str, flip: bool = False) -> torch.Tensor:
        weight = self(name)
        if flip:
            weight = weight.flip([0, 1])
        return weight.permute(3, 2, 0, 1).contiguous()


def _fc(weight: torch.Tensor, bias: torch.Tensor, activation: str, lr: float = 1.0) -> NetworkRecord:
    return NetworkRecord(
        "FullyConnectedLayer",
        parameters={"weight": weight, "bias": bias},
        attributes={
            "activation": activation,
            "weight_gain": lr / math.sqrt(weight.shape[1]),
            "bias_gain": lr,
        },
    )


def _filter(kwargs: dict) -> torch.Tensor:
    return make_kernel(kwargs.get("resample_kernel") or [1, 3, 3, 1])


def _synthesis_layer(v: _Vars, scope: str, noise: str, res: int, up: int, kwargs: dict) -> NetworkRecord:
    return NetworkRecord(
        "SynthesisLayer",
        parameters={
            "weight": v.conv(f"{scope}/weight", flip=up > 1),
            "bias": v(f"{scope}/bias"),
            "noise_strength": v(f"{scope}/noise_strength").reshape(()),
        },
        buffers={"resample_filter": _filter(kwargs), "noise_const": v(noise)[0, 0]},
        modules={"affine": _fc(v.dense(f"{scope}/mod_weight"), v(f"{scope}/mod_bias") + 1, "linear")},
        attributes={
            "resolution": res,
            "up": up,
            "use_noise": True,
            "activation": kwargs.get("nonlinearity", "lrelu"),
            "conv_clamp": kwargs.get("conv_clamp"),
            "padding": 1,
            "act_gain": _SQRT2,
        },
    )


def _torgb(v: _Vars, scope: str, kwargs: dict) -> NetworkRecord:
    weight = v.conv(f"{scope}/weight")
    return NetworkRecord(
        "ToRGBLayer",
        parameters={"weight": weight, "bias": v(f"{scope}/bias")},
        modules={"affine": _fc(v.dense(f"{scope}/mod_weight"), v(f"{scope}/mod_bias") + 1, "linear")},
        attributes={"conv_clamp": kwargs.get("conv_clamp"), "weight_gain": 1 / math.sqrt(weight.shape[1])},
    )


def _synthesis(v: _Vars, kwargs: dict, size: int) -> NetworkRecord:
    if any(name.startswith("synthesis/ToRGB_lod") for name in v.values):
        raise CheckpointError(
            "the TF generator uses the 'orig' architecture (ToRGB_lod), not StyleGAN2's skip"
        )
    blocks = {}
    for res in [2**i for i in range(2, int(math.log2(size)) + 1)]:
        level = int(math.log2(res))
        scope = f"synthesis/{res}x{res}"
        modules, params = {}, {}
        if res == 4:
            params["const"] = v("synthesis/4x4/Const/const")[0]
            modules["conv1"] = _synthesis_layer(v, f"{scope}/Conv", "synthesis/noise0", 4, 1, kwargs)
        else:
            modules["conv0"] = _synthesis_layer(
                v, f"{scope}/Conv0_up", f"synthesis/noise{2 * level - 5}", res, 2, kwargs
            )
            modules["conv1"] = _synthesis_layer(
                v, f"{scope}/Conv1", f"synthesis/noise{2 * level - 4}", res, 1, kwargs
            )
        modules["torgb"] = _torgb(v, f"{scope}/ToRGB", kwargs)
        attributes = {
            "architecture": kwargs.get("architecture", "skip"),
            "resolution": res,
            "use_fp16": False,
        }
        buffers = {"resample_filter": _filter(kwargs)}
        blocks[f"b{res}"] = NetworkRecord(
            "SynthesisBlock", parameters=params, buffers=buffers, modules=modules, attributes=attributes
        )
    return NetworkRecord("SynthesisNetwork", modules=blocks, attributes={"img_resolution": size})


def _generator(gs: TFNetworkRecord) -> NetworkRecord:
    kwargs = dict(gs.static_kwargs)
    v = _Vars(gs, "generator (Gs)")
    size = int(kwargs.get("resolution", 1024))
    w_dim = int(kwargs.get("dlatent_size", 512))
    lr = float(kwargs.get("mapping_lrmul", 0.01))
    activation = kwargs.get("mapping_nonlinearity", "lrelu")
    n_layers = int(kwargs.get("mapping_layers", 8))
    mapping = NetworkRecord(
        "MappingNetwork",
        buffers={"w_avg": v("dlatent_avg")},
        modules={
            f"fc{i}": _fc(v.dense(f"mapping/Dense{i}/weight"), v(f"mapping/Dense{i}/bias"), activation, lr)
            for i in range(n_layers)
        },
        attributes={"num_layers": n_layers, "z_dim": int(kwargs.get("latent_size", 512)), "w_dim": w_dim},
    )
    attributes = {
        "z_dim": int(kwargs.get("latent_size", 512)),
        "c_dim": int(kwargs.get("label_size", 0)),
        "w_dim": w_dim,
        "img_resolution": size,
        "img_channels": int(kwargs.get("num_channels", 3)),
    }
    modules = {"mapping": mapping, "synthesis": _synthesis(v, kwargs, size)}
    return NetworkRecord("Generator", modules=modules, attributes=attributes)


def _conv(v: _Vars, scope: str, kwargs: dict, down: int = 1, bias: bool = True, linear: bool = False):
    weight = v.conv(f"{scope}/weight")
    activation = "linear" if linear else kwargs.get("nonlinearity", "lrelu")
    return NetworkRecord(
        "Conv2dLayer",
        parameters={"weight": weight, **({"bias": v(f"{scope}/bias")} if bias else {})},
        buffers={"resample_filter": _filter(kwargs)},
        attributes={
            "activation": activation,
            "up": 1,
            "down": down,
            "conv_clamp": None if linear else kwargs.get("conv_clamp"),
            "padding": weight.shape[-1] // 2,
            "weight_gain": 1 / math.sqrt(weight[0].numel()),
            "act_gain": 1 if linear else _SQRT2,
        },
    )


def _discriminator(d: TFNetworkRecord) -> NetworkRecord:
    kwargs = dict(d.static_kwargs)
    v = _Vars(d, "discriminator (D)")
    size = int(kwargs.get("resolution", 1024))
    if any(name.startswith("FromRGB_lod") for name in v.values):
        raise CheckpointError("the TF discriminator uses the 'orig' architecture (FromRGB_lod), not resnet")
    modules = {}
    for res in [2**i for i in range(int(math.log2(size)), 2, -1)]:
        scope = f"{res}x{res}"
        block = {"fromrgb": _conv(v, f"{scope}/FromRGB", kwargs)} if res == size else {}
        block["conv0"] = _conv(v, f"{scope}/Conv0", kwargs)
        block["conv1"] = _conv(v, f"{scope}/Conv1_down", kwargs, down=2)
        block["skip"] = _conv(v, f"{scope}/Skip", kwargs, down=2, bias=False, linear=True)
        attributes = {
            "architecture": kwargs.get("architecture", "resnet"),
            "resolution": res,
            "use_fp16": False,
        }
        modules[f"b{res}"] = NetworkRecord(
            "DiscriminatorBlock",
            buffers={"resample_filter": _filter(kwargs)},
            modules=block,
            attributes=attributes,
        )
    mbstd = {
        "group_size": kwargs.get("mbstd_group_size", 4),
        "num_channels": kwargs.get("mbstd_num_features", 1),
    }
    act = kwargs.get("nonlinearity", "lrelu")
    epilogue = {
        "mbstd": NetworkRecord("MinibatchStdLayer", attributes=mbstd),
        "conv": _conv(v, "4x4/Conv", kwargs),
        "fc": _fc(v.dense("4x4/Dense0/weight"), v("4x4/Dense0/bias"), act),
        "out": _fc(v.dense("Output/weight"), v("Output/bias"), "linear"),
    }
    attributes = {"architecture": kwargs.get("architecture", "resnet"), "cmap_dim": 0}
    modules["b4"] = NetworkRecord("DiscriminatorEpilogue", modules=epilogue, attributes=attributes)
    attributes = {"c_dim": int(kwargs.get("label_size", 0)), "img_resolution": size, "img_channels": 3}
    return NetworkRecord("Discriminator", modules=modules, attributes=attributes)


def tf_records(data: tuple) -> dict[str, NetworkRecord]:
    """``{"G_ema", "D"}`` records, as stylegan2-ada-pytorch's would be, from a TF-era ``(G, D, Gs)`` tuple.

    Raises:
        CheckpointError: a missing or non-numeric variable, or a TF architecture other than StyleGAN2's.
    """
    _, d, gs = data
    records = {"G_ema": _generator(gs), "D": _discriminator(d)}
    assign_paths(records, "")
    return records
