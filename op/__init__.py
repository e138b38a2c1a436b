"""Low-level StyleGAN2 operators: FIR up/down-sampling and the fused bias + leaky-ReLU.

Each public function takes ``impl=None`` and dispatches per call: the pure-PyTorch reference in the
same file is the specification, and our own CUDA kernels (``csrc/``) are compiled lazily on first
CUDA use. The environment switch ``JOJOGAN_OPS=auto|cuda|ref`` chooses the policy (see ``_dispatch``).
Importing this package never compiles anything. ``memory.cpu_memory_reuse`` keeps freed CPU memory
mapped during heavy jobs (``JOJOGAN_CPU_MEMORY=reuse|system``).

The package is lazy (:mod:`jojogan.op.lazy`): ``jojogan.op.precision`` holds a setting that
``jojogan.config`` checks in processes that never compute (the command line's help, batch drivers), and
the operators here would load torch into them. The names below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jojogan.op.lazy import make_lazy

# public name -> the module that owns it
_EXPORTS = {
    "active_impl": "jojogan.op._dispatch",
    "ops_report": "jojogan.op._dispatch",
    "FusedLeakyReLU": "jojogan.op.fused_act",
    "fused_leaky_relu": "jojogan.op.fused_act",
    "cpu_memory_reuse": "jojogan.op.memory",
    "memory_report": "jojogan.op.memory",
    "check_shape": "jojogan.op.shapes",
    "make_kernel": "jojogan.op.upfirdn2d",
    "upfirdn2d": "jojogan.op.upfirdn2d",
}

__all__ = sorted(_EXPORTS)

make_lazy(__name__, _EXPORTS)


if TYPE_CHECKING:  # static analysers see the eager imports; a test pins them to _EXPORTS
    from jojogan.op._dispatch import active_impl, ops_report  # noqa: F401
    from jojogan.op.fused_act import FusedLeakyReLU, fused_leaky_relu  # noqa: F401
    from jojogan.op.memory import cpu_memory_reuse, memory_report  # noqa: F401
    from jojogan.op.shapes import check_shape  # noqa: F401
    from jojogan.op.upfirdn2d import make_kernel, upfirdn2d  # noqa: F401
