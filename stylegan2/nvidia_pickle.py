"""NVIDIA's network pickles read as data: nothing in the file is imported or run.

NVIDIA's StyleGAN2 code (stylegan2-ada-pytorch, stylegan3) saves networks with ``pickle.dump``. Every
network object is a *persistence record*: a call of ``torch_utils.persistence._reconstruct_persistent_obj``
with one dict holding the class name, the source text of the module that defined it, and the object's
state (``_parameters``, ``_buffers``, ``_modules``, the constructor's ``_init_args``/``_init_kwargs`` and
plain attributes such as ``conv_clamp``). Loading such a file with ``pickle.load`` executes that source
text; this module never does. A :class:`pickle.Unpickler` whose ``find_class`` answers from a fixed table
of our own functions rebuilds:

* persistence records, as :class:`NetworkRecord` (the source text is dropped unread);
* tensors: ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` become our own rebuilders, and the
  storages (``torch.storage._load_from_bytes``: a storage saved by ``torch.save`` inside the pickle, in
  torch's legacy or zip format) are parsed by our own reader, whose inner unpickler allows nothing but
  storage type names;
* numpy scalars and arrays (gains stored as ``numpy.float64``; the TF-era files' variables) from their bytes;
* ``collections.OrderedDict``, ``set``, ``dnnlib.util.EasyDict`` as plain containers;
* the TF-era ``dnnlib.tflib.network.Network`` objects as :class:`TFNetworkRecord` (their state only).

Any other global (``os.system``, ``builtins.exec``, ``subprocess.Popen``, a torch module class, ...) stops the
read with one line naming it. Nothing the file names is ever called, only the functions of the table.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from jojogan.errors import CheckpointError

__all__ = [
    "NetworkRecord",
    "PickleRefused",
    "TFNetworkRecord",
    "assign_paths",
    "is_pickle_file",
    "read_network_pickle",
]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
_NUMPY_KINDS = {"f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1"}
# Module attributes of a record kept as data; hooks and bookkeeping of nn.Module are dropped.
_MODULE_BOOKKEEPING = {"_parameters", "_buffers", "_modules", "_init_args", "_init_kwargs", "training"}


class PickleRefused(CheckpointError):
    """The pickle names a global outside the allow-list (it would run code when unpickled)."""


# ---------------------------------------------------------------------------------------------- records
@dataclass
class NetworkRecord:
    """One of NVIDIA's persistent network objects, as data.

    Attributes:
        class_name: e.g. ``"SynthesisLayer"``.
        init_args, init_kwargs: the constructor's arguments as recorded.
        parameters, buffers: tensors by name (``None`` entries stay ``None``).
        modules: child records by name.
        attributes: the other plain attributes of the object (numbers, strings, flags, containers).
        path: where it sits in the file, e.g. ``"G_ema.synthesis.b8.conv0"`` (set by the reader).
    """

    class_name: str
    init_args: tuple = ()
    init_kwargs: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    buffers: dict = field(default_factory=dict)
    modules: dict = field(default_factory=dict)
    attributes: dict = field(default_factory=dict)
    path: str = ""

    def child(self, name: str) -> NetworkRecord:
        """The child module ``name``; raises a one-line :class:`CheckpointError` when it is missing."""
        found = self.modules.get(name)
        if not isinstance(found, NetworkRecord):
            raise CheckpointError(f"{self.path or self.class_name} has no sub-network '{name}'")
        return found

    def tensor(self, name: str) -> torch.Tensor:
        """Parameter or buffer ``name``; raises a one-line :class:`CheckpointError` when it is missing."""
        found = self.parameters.get(name, self.buffers.get(name))
        if not isinstance(found, torch.Tensor):
            raise CheckpointError(f"{self.path or self.class_name} has no tensor '{name}'")
        return found

    def attr(self, name: str, default: object = None) -> object:
        """A plain attribute (what the network's forward pass reads), or ``default``."""
        return self.attributes.get(name, default)


@dataclass
class TFNetworkRecord:
    """A TF-era ``dnnlib.tflib.network.Network`` as data.

    Attributes:
        name: the network's name (``"G"``, ``"D"``, ``"Gs"``, or a component's name).
        static_kwargs: the build function's keyword arguments.
        components: sub-networks by name (``"mapping"``, ``"synthesis"``).
        variables: ``{variable name: numpy array}`` in the file's order.
        build_func_name: the build function's name (its module text is dropped unread).
        version: the format version of the record (NVIDIA's StyleGAN2 files are version 4).
    """

    name: str = ""
    version: int = 0
    static_kwargs: dict = field(default_factory=dict)
    components: dict = field(default_factory=dict)
    variables: dict = field(default_factory=dict)
    build_func_name: str = ""

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, dict):
            raise CheckpointError("a TF network record holds no state dict")
        self.name = str(state.get("name", ""))
        self.version = state.get("version", 0) if isinstance(state.get("version"), int) else 0
        self.static_kwargs = dict(state.get("static_kwargs") or {})
        components = state.get("components") or {}
        self.components = {str(k): v for k, v in dict(components).items()}
        variables = state.get("variables") or []
        self.variables = {str(name): value for name, value in variables}
        self.build_func_name = str(state.get("build_func_name", ""))


def _persistent_record(meta: object) -> NetworkRecord:
    """Our stand-in for ``torch_utils.persistence._reconstruct_persistent_obj``: keep the state, drop the
    source text unread."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise CheckpointError("a persistence record is not a class record with a state dict")
    class_name = meta.get("class_name")
    if not isinstance(class_name, str):
        raise CheckpointError("a persistence record has no class name")
    state = meta["state"]
    modules = dict(state.get("_modules") or {})
    bad = [
        name for name, value in modules.items() if value is not None and not isinstance(value, NetworkRecord)
    ]
    if bad:
        raise CheckpointError(f"{class_name}: sub-module {bad[0]} is not a network record")
    return NetworkRecord(
        class_name=class_name,
        init_args=tuple(state.get("_init_args") or ()),
        init_kwargs=dict(state.get("_init_kwargs") or {}),
        parameters=dict(state.get("_parameters") or {}),
        buffers=dict(state.get("_buffers") or {}),
        modules=modules,
        attributes={k: v for k, v in state.items() if k not in _MODULE_BOOKKEEPING and not k.startswith("_")},
    )


# ---------------------------------------------------------------------------------------------- tensors
def _check_ints(value: object, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list) or not all(isinstance(v, int) and v >= 0 for v in value):
        raise CheckpointError(f"a tensor record has an invalid {what}: {value!r}")
    return tuple(value)


def _rebuild_tensor(storage, offset, size, stride, *rest) -> torch.Tensor:
    """Our ``torch._utils._rebuild_tensor_v2`` (and v1): a strided view of a storage we read ourselves."""
    if not isinstance(storage, torch.Tensor) or storage.ndim != 1:
        raise CheckpointError("a tensor record does not refer to a storage")
    size, stride = _check_ints(size, "size"), _check_ints(stride, "stride")
    if not isinstance(offset, int) or offset < 0 or len(size) != len(stride):
        raise CheckpointError(f"a tensor record has an invalid layout (offset {offset!r}, size {size})")
    if (
        math.prod(size)
        and offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) >= storage.numel()
    ):
        raise CheckpointError(f"a tensor record [{', '.join(map(str, size))}] reaches past its storage")
    return torch.as_strided(storage, size, stride, offset)


def _rebuild_parameter(data, *rest) -> torch.Tensor:
    """Our ``torch._utils._rebuild_parameter``: the plain tensor (gradient flags and hooks are dropped)."""
    if not isinstance(data, torch.Tensor):
        raise CheckpointError("a parameter record holds no tensor")
    return data


class _StorageType:
    """A storage class name (``torch.FloatStorage``) as the dtype it stands for."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


class _StorageUnpickler(pickle.Unpickler):
    """The pickles inside a saved storage: storage type names and persistent ids, nothing else."""

    def __init__(self, file, storages: dict):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise PickleRefused(f"{module}.{name}")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise CheckpointError(f"unknown persistent id in a stored tensor: {str(pid)[:80]}")
        _, kind, key, _location, numel, *view = pid
        if not isinstance(kind, _StorageType) or not isinstance(numel, int) or numel < 0:
            raise CheckpointError("a stored tensor has an invalid storage record")
        self.storages.setdefault(str(key), (kind.dtype, numel))
        return _StorageRef(str(key), view[0] if view else None)


@dataclass
class _StorageRef:
    key: str
    view: object = None


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _legacy_storage(data: bytes) -> torch.Tensor:
    """A storage written by ``torch.save(storage, _use_new_zipfile_serialization=False)``."""
    stream = io.BytesIO(data)
    storages: dict[str, tuple[torch.dtype, int]] = {}
    header = [_StorageUnpickler(stream, storages).load() for _ in range(3)]
    if header[0] != _LEGACY_MAGIC or header[1] != _LEGACY_PROTOCOL:
        raise CheckpointError("a stored tensor is not in torch's serialization format")
    if not isinstance(header[2], dict) or header[2].get("little_endian") is not True:
        raise CheckpointError("a stored tensor was written on a big-endian machine, which is not supported")
    root = _StorageUnpickler(stream, storages).load()
    keys = _StorageUnpickler(stream, storages).load()
    if not isinstance(root, _StorageRef) or not isinstance(keys, list):
        raise CheckpointError("a stored tensor does not hold a single storage")
    loaded = {}
    for key in keys:
        dtype, _ = storages[str(key)]
        (count,) = struct.unpack("<q", stream.read(8).ljust(8, b"\xff"))
        nbytes = count * _element_size(dtype)
        raw = stream.read(nbytes) if count >= 0 else b""
        if count < 0 or len(raw) != nbytes:
            raise CheckpointError("a stored tensor is truncated")
        loaded[str(key)] = (
            torch.frombuffer(bytearray(raw), dtype=dtype) if nbytes else torch.empty(0, dtype=dtype)
        )
    return _resolve_view(loaded, root)


def _resolve_view(loaded: dict, ref: _StorageRef) -> torch.Tensor:
    if ref.key not in loaded:
        raise CheckpointError("a stored tensor refers to data that is not in it")
    storage = loaded[ref.key]
    if ref.view is None:
        return storage
    _, offset, length = ref.view
    if not (
        isinstance(offset, int)
        and isinstance(length, int)
        and 0 <= offset <= offset + length <= storage.numel()
    ):
        raise CheckpointError("a stored tensor has an invalid storage view")
    return storage[offset : offset + length]


def _zip_storage(data: bytes) -> torch.Tensor:
    """A storage written by ``torch.save`` in the zip format (``<archive>/data.pkl`` + ``data/<key>``)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("data.pkl")), None)
        if pkl is None:
            raise CheckpointError("a stored tensor archive has no data.pkl")
        prefix = pkl[: -len("data.pkl")]
        storages: dict[str, tuple[torch.dtype, int]] = {}
        root = _StorageUnpickler(io.BytesIO(archive.read(pkl)), storages).load()
        if not isinstance(root, _StorageRef):
            raise CheckpointError("a stored tensor archive does not hold a single storage")
        loaded = {}
        for key, (dtype, numel) in storages.items():
            raw = archive.read(f"{prefix}data/{key}")
            if len(raw) != numel * _element_size(dtype):
                raise CheckpointError("a stored tensor archive is truncated")
            loaded[key] = (
                torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            )
    return _resolve_view(loaded, root)


def _load_storage(data: object) -> torch.Tensor:
    """Our ``torch.storage._load_from_bytes``: the storage as a flat tensor, read by our own parser."""
    if not isinstance(data, bytes | bytearray):
        raise CheckpointError("a stored tensor is not bytes")
    try:
        return _zip_storage(bytes(data)) if data[:2] == b"PK" else _legacy_storage(bytes(data))
    except (
        pickle.UnpicklingError,
        EOFError,
        zipfile.BadZipFile,
        struct.error,
        KeyError,
        ValueError,
    ) as error:
        raise CheckpointError(f"a stored tensor is damaged ({error})") from error


# ---------------------------------------------------------------------------------------------- numpy
class _NumpyDType:
    """``numpy.dtype(name, align, copy)`` as data; ``__setstate__`` records the byte order."""

    def __init__(self, name: object, *_flags):
        if not isinstance(name, str) or name not in _NUMPY_KINDS:
            raise CheckpointError(f"unsupported numpy dtype in the pickle: {name!r}")
        self.name = name
        self.order = "<"

    def __setstate__(self, state: object) -> None:
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.order = "<" if state[1] in ("|", "=") else state[1]

    def numpy(self) -> np.dtype:
        return np.dtype(self.order + self.name)


def _numpy_scalar(dtype: object, data: object = b"") -> object:
    """Our ``numpy.core.multiarray.scalar``: a Python number from the scalar's bytes."""
    if not isinstance(dtype, _NumpyDType) or not isinstance(data, bytes | str):
        raise CheckpointError("a numpy scalar record is invalid")
    raw = data.encode("latin-1") if isinstance(data, str) else data
    if len(raw) != dtype.numpy().itemsize:
        raise CheckpointError("a numpy scalar record has the wrong number of bytes")
    return np.frombuffer(raw, dtype=dtype.numpy())[0].item()


class _NumpyArrayClass:
    """Stands for ``numpy.ndarray`` in ``_reconstruct(numpy.ndarray, ...)``."""


class _NumpyArray:
    """An array being rebuilt: ``_reconstruct`` makes it, ``__setstate__`` (BUILD) fills it."""

    def __init__(self):
        self.array: np.ndarray | None = None

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, tuple) or len(state) != 5:
            raise CheckpointError("a numpy array record is invalid")
        _, shape, dtype, fortran, raw = state
        shape = _check_ints(shape, "array shape")
        if not isinstance(dtype, _NumpyDType) or not isinstance(raw, bytes | str):
            raise CheckpointError("a numpy array record holds objects, not numbers")
        raw = raw.encode("latin-1") if isinstance(raw, str) else raw
        np_dtype = dtype.numpy()
        if len(raw) != math.prod(shape) * np_dtype.itemsize:
            raise CheckpointError("a numpy array record has the wrong number of bytes")
        flat = np.frombuffer(raw, dtype=np_dtype)
        self.array = flat.reshape(shape, order="F" if fortran else "C").astype(np_dtype.newbyteorder("="))


def _numpy_reconstruct(cls: object, *_args) -> _NumpyArray:
    if cls is not _NumpyArrayClass:
        raise CheckpointError("a numpy record rebuilds something that is not an array")
    return _NumpyArray()


# ---------------------------------------------------------------------------------------------- unpickler
class _EasyDict(dict):
    """``dnnlib.util.EasyDict`` (a dict with attribute access) as a plain dict."""


_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")
_ALLOWED: dict[tuple[str, str], Callable | type | object] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_record,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib.tflib.network", "Network"): TFNetworkRecord,
    ("numpy", "dtype"): _NumpyDType,
    ("numpy", "ndarray"): _NumpyArrayClass,
    **{(core, "scalar"): _numpy_scalar for core in _NUMPY_CORE},
    **{(core, "_reconstruct"): _numpy_reconstruct for core in _NUMPY_CORE},
}


class _NetworkUnpickler(pickle.Unpickler):
    """``find_class`` answers only from :data:`_ALLOWED`; everything else is refused, unrun."""

    def find_class(self, module: str, name: str):
        found = _ALLOWED.get((module, name))
        if found is None:
            raise PickleRefused(f"{module}.{name}")
        return found

    def persistent_load(self, pid):
        raise CheckpointError(f"unexpected persistent id {str(pid)[:80]!r} (not a network pickle)")


def is_pickle_file(path: str | Path) -> bool:
    """Whether ``path`` starts like a plain pickle (protocol 2 or later), as NVIDIA's ``.pkl`` files do
    (``torch.save`` zip archives and safetensors files do not)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def assign_paths(value: object, path: str) -> None:
    """Set every record's :attr:`NetworkRecord.path` from where it sits under ``value``."""
    if isinstance(value, NetworkRecord):
        value.path = path
        for name, child in value.modules.items():
            assign_paths(child, f"{path}.{name}")
    elif isinstance(value, dict):
        for key, item in value.items():
            assign_paths(item, f"{path}.{key}" if path else str(key))


def read_network_pickle(path: str | Path) -> object:
    """Read NVIDIA's network pickle as data (see the module docstring).

    Returns:
        What the pickle holds, with networks as :class:`NetworkRecord` / :class:`TFNetworkRecord` and tensors
        as CPU tensors: for stylegan2-ada-pytorch/stylegan3 a dict ``{"G", "D", "G_ema", ...}``, for the TF
        era a tuple ``(G, D, Gs)``.

    Raises:
        PickleRefused: the file names a global that is not network data (one line naming it).
        CheckpointError: missing, truncated or damaged file, or not a pickle.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"network pickle not found: {path} does not exist or is not a file")
    with open(path, "rb") as handle:
        is_archive = handle.read(4) == b"PK\x03\x04"
    if is_archive:
        raise CheckpointError(
            f"{path.name} is a torch.save archive, not one of NVIDIA's network pickles: pass it as it is "
            "(--base takes official-layout .pt files directly)"
        )
    if not is_pickle_file(path):
        raise CheckpointError(
            f"{path.name} is not a pickle (it does not start with a pickle protocol header)"
        )
    try:
        with open(path, "rb") as handle:
            data = _NetworkUnpickler(handle).load()
        assign_paths(data, "")
    except PickleRefused as error:
        raise PickleRefused(
            f"{path.name} asks to load {error} when unpickled, which is not network data: refused, and "
            "nothing from the file was run"
        ) from None
    except CheckpointError as error:
        raise CheckpointError(f"{path.name} is not a readable network pickle: {error}") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        MemoryError,
        RecursionError,
    ) as error:
        detail = "truncated" if isinstance(error, EOFError) or "truncated" in str(error) else "damaged"
        raise CheckpointError(
            f"{path.name} is not a readable network pickle: the file is {detail} ({error})"
        ) from None
    return data
