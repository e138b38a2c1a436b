"""Low-level StyleGAN2 operators: FIR up/down-sampling and the fused bias + leaky-ReLU.

Each public function takes ``impl=None`` and dispatches per call: the pure-PyTorch reference in the
same file is the specification, and our own CUDA kernels (``csrc/``) are compiled lazily on first
CUDA use. The environment switch ``JOJOGAN_OPS=auto|cuda|ref`` chooses the policy (see ``_dispatch``).
Importing this package never compiles anything. ``memory.cpu_memory_reuse`` keeps freed CPU memory
mapped during heavy jobs (``JOJOGAN_CPU_MEMORY=reuse|system``).
"""

from jojogan.op._dispatch import active_impl, ops_report
from jojogan.op.fused_act import FusedLeakyReLU, fused_leaky_relu
from jojogan.op.memory import cpu_memory_reuse, memory_report
from jojogan.op.shapes import check_shape
from jojogan.op.upfirdn2d import make_kernel, upfirdn2d

__all__ = [
    "FusedLeakyReLU",
    "active_impl",
    "check_shape",
    "cpu_memory_reuse",
    "fused_leaky_relu",
    "make_kernel",
    "memory_report",
    "ops_report",
    "upfirdn2d",
]
