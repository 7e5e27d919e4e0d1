"""Hand-written CUDA kernels: compiled on first use, cached, and None wherever they do not run.

A kernel runs only on CuPy arrays, only while ``MINISEGNET_CUDA_KERNELS`` is not "0" and the
reference switch is off (``reference_kernels()``, registry.py). Everywhere else these functions
return None and the caller runs its generic array code, which the tests compare the kernel with.
The CuPy module comes in as ``xp`` (from ``get_array_module``): this module imports no CuPy itself.
"""

import os

import numpy as np

from .registry import fast_paths

CUDA_KERNELS = os.environ.get("MINISEGNET_CUDA_KERNELS", "1").strip() != "0"
_kernels = {}


def kernels_on(xp):
    """True when hand-written kernels run for arrays of module ``xp``."""
    return xp is not np and CUDA_KERNELS and fast_paths()


def cuda_kernel(xp, in_params, out_params, operation, name):
    """A ``cupy.ElementwiseKernel`` (one thread per output value), or None where kernels do not run.

    For hot spots whose generic version takes many CuPy calls (each ~10 us of launch overhead):
    im2col, col2im, Adam's update. Cached by name.
    """
    if not kernels_on(xp):
        return None
    kernel = _kernels.get(name)
    if kernel is None:
        kernel = _kernels[name] = xp.ElementwiseKernel(in_params, out_params, operation, name)
    return kernel


def raw_kernel(xp, source, name):
    """A ``cupy.RawKernel`` (CUDA C, ``extern "C" __global__ void name(...)``), or None where kernels do not run.

    For kernels an elementwise body cannot express (one block per channel, a loop over a window that
    picks a winner). Cached by name and source (one source per dtype).
    """
    if not kernels_on(xp):
        return None
    kernel = _kernels.get((name, source))
    if kernel is None:
        kernel = _kernels[name, source] = xp.RawKernel(source, name)
    return kernel
