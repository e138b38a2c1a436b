"""Lazy, cached build of jojogan's own CUDA kernels (``csrc/``).

Nothing here runs at import. :func:`load_extension` compiles the sources with
``torch.utils.cpp_extension.load`` the first time a CUDA op needs them and memoises the module for the
rest of the process. Builds are cached on disk under a hash of the sources, the torch version, the CUDA
version and the target GPU architectures, so editing a kernel or upgrading torch rebuilds while
everything else reuses the ``.so``. Concurrent builds of the same hash in several processes are serialised
by torch's file baton; threads of one process share a lock.

The cache lives in ``$JOJOGAN_HOME/ops/<hash>``, or ``~/.cache/jojogan/ops/<hash>`` (beside the weights
cache; see :func:`cache_root`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from pathlib import Path
from types import ModuleType

import torch

from jojogan.op._dispatch import home_dir

logger = logging.getLogger(__name__)

CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = ("ops.cpp", "upfirdn2d.cu", "fused_bias_act.cu")
# Parity with the reference matters more than the last few percent of speed: no --use_fast_math.
EXTRA_CFLAGS = ("-O3",)
EXTRA_CUDA_CFLAGS = ("-O3",)

_lock = threading.Lock()
_module: ModuleType | None = None
_error: str | None = None


def source_paths() -> list[Path]:
    """The files compiled into the extension, in build order."""
    return [CSRC / name for name in SOURCES]


def build_hash() -> str:
    """Hex sha256 of the sources' names and bytes, the torch and CUDA versions and the target GPUs."""
    digest = hashlib.sha256()
    for path in source_paths():
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    digest.update(f"torch={torch.__version__};cuda={torch.version.cuda};arch={_target_arch()}".encode())
    digest.update(repr((EXTRA_CFLAGS, EXTRA_CUDA_CFLAGS)).encode())
    return digest.hexdigest()


def _target_arch() -> str:
    """GPU architectures the build targets, so a cache shared between machines never serves a binary
    compiled for another GPU (torch builds for ``TORCH_CUDA_ARCH_LIST`` or else the visible devices)."""
    explicit = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if explicit:
        return explicit
    if not torch.cuda.is_available():
        return "none"
    capabilities = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
    return ";".join(f"{major}.{minor}" for major, minor in sorted(capabilities))


def extension_name() -> str:
    """Module name of the build for the current hash (also the stem of its ``.so``)."""
    return f"jojogan_ops_{build_hash()[:16]}"


def cache_root() -> Path:
    """Folder holding one sub-folder per build hash.

    ``$JOJOGAN_HOME/ops`` (beside the downloaded weights), else ``~/.cache/jojogan/ops``.
    """
    return home_dir() / "ops"


def build_dir() -> Path:
    """Build folder for the current hash."""
    return cache_root() / build_hash()[:16]


def library_path() -> Path:
    """Where the compiled extension for the current hash lives once built."""
    suffix = ".pyd" if os.name == "nt" else ".so"
    return build_dir() / f"{extension_name()}{suffix}"


def is_cached() -> bool:
    """Whether a built extension exists for the current hash (never compiles)."""
    return library_path().is_file()


def _short_reason(error: BaseException, limit: int = 400) -> str:
    """The first compiler diagnostic of a failed build (the full log can be thousands of lines)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if re.search(r"\berror\s*:", line, flags=re.IGNORECASE):
            return line[:limit]
    return (lines[-1] if lines else type(error).__name__)[:limit]


def _check_toolchain() -> None:
    """Raise ``RuntimeError`` naming the first missing piece needed to build CUDA code."""
    if torch.version.cuda is None:
        raise RuntimeError(f"this PyTorch build ({torch.__version__}) has no CUDA support")
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device is available")
    from torch.utils import cpp_extension

    if cpp_extension.CUDA_HOME is None:
        raise RuntimeError(
            f"nvcc was not found; install the CUDA {torch.version.cuda} toolkit or point CUDA_HOME at it"
        )
    if not cpp_extension.is_ninja_available():
        raise RuntimeError("the 'ninja' build tool is not installed (pip install ninja)")


def load_extension() -> ModuleType:
    """Return the compiled CUDA extension, building it on first use.

    The module is memoised in-process; a failure is memoised too, so a fallback caller does not retry
    a slow failing compile on every op.

    Returns:
        The extension module with ``upfirdn2d``, ``fused_bias_leaky_relu`` and ``leaky_relu_grad``.

    Raises:
        RuntimeError: no CUDA-enabled torch, no GPU, no nvcc/ninja, or the compiler failed; the message
            gives the short reason.
    """
    global _module, _error
    with _lock:
        if _module is not None:
            return _module
        if _error is not None:
            raise RuntimeError(_error)
        try:
            _check_toolchain()
        except RuntimeError as error:
            _error = str(error)
            raise
        try:
            _module = _compile()
        except Exception as error:  # noqa: BLE001 - every build failure becomes the same short error
            _error = f"compiling the CUDA ops failed: {_short_reason(error)} (build folder: {build_dir()})"
            raise RuntimeError(_error) from error
        return _module


def _compile() -> ModuleType:
    from torch.utils import cpp_extension

    directory = build_dir()
    directory.mkdir(parents=True, exist_ok=True)
    if is_cached():
        logger.debug("loading cached jojogan CUDA ops from %s", directory)
    else:
        logger.info("compiling jojogan CUDA ops into %s (first use; takes a minute or two)", directory)
    return cpp_extension.load(
        name=extension_name(),
        sources=[str(path) for path in source_paths()],
        build_directory=str(directory),
        extra_cflags=list(EXTRA_CFLAGS),
        extra_cuda_cflags=list(EXTRA_CUDA_CFLAGS),
        verbose=False,
    )
