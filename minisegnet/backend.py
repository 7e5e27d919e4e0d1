"""The array backend: NumPy on the CPU, CuPy on the GPU, one code path.

This is the only module of minisegnet that imports CuPy. Every op starts with
``xp = get_array_module(x)`` and then writes ``xp.exp``, ``xp.zeros`` ... so the
same lines run on both kinds of array.

The default device comes from the environment variable ``MINISEGNET_DEVICE``
("cpu" unless set).
"""

import os

import numpy as np

from . import host_reads

try:  # CuPy is optional: the [gpu] extra installs it.
    import cupy as cp
except Exception:  # ImportError, or a CUDA library that fails to load
    cp = None

DEVICES = ("cpu", "gpu")
GPU_HELP = (
    'install CuPy for your CUDA version with `pip install -e ".[gpu]"` '
    "(or `pip install cupy-cuda12x`) on a machine with an NVIDIA GPU, or use device='cpu'"
)

_gpu_ok = None


def cupy_available():
    """True when CuPy imports *and* a GPU can actually run a kernel."""
    global _gpu_ok
    if _gpu_ok is None:
        _gpu_ok = False
        if cp is not None:
            try:
                _gpu_ok = cp.cuda.runtime.getDeviceCount() > 0 and int(cp.arange(2).sum()) == 1
            except Exception:
                _gpu_ok = False
    return _gpu_ok


def check_device(device):
    """Return ``device`` ("cpu" or "gpu"), raising a clear error when it cannot be used."""
    if device not in DEVICES:
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
    if device == "gpu" and not cupy_available():
        why = "CuPy is not installed" if cp is None else "CuPy found no usable GPU"
        raise RuntimeError(f"device='gpu' was requested but {why}: {GPU_HELP}")
    return device


def default_device():
    """The device named by ``MINISEGNET_DEVICE`` ("cpu" when unset)."""
    return check_device(os.environ.get("MINISEGNET_DEVICE", "cpu").strip().lower() or "cpu")


def unwrap(x):
    """The array inside a Tensor, or ``x`` itself (arrays and NumPy scalars have a ``.data`` too: left alone)."""
    if x is None or isinstance(x, (np.ndarray, np.generic, int, float, complex)) or is_gpu_array(x):
        return x
    return getattr(x, "data", x)


def is_gpu_array(a):
    """True when ``a`` is a CuPy array."""
    return cp is not None and isinstance(a, cp.ndarray)


def get_array_module(*xs):
    """``numpy`` or ``cupy``, whichever the arrays (or Tensors) ``xs`` live in.

    Mixing NumPy and CuPy arrays is an error rather than a silent host/device copy.
    """
    if cp is None:
        return np
    kinds = {is_gpu_array(a) for a in map(unwrap, xs) if a is not None and not np.isscalar(a)}
    if len(kinds) > 1:
        raise TypeError("cannot mix CPU (NumPy) and GPU (CuPy) arrays in one operation; move them with .to()")
    return cp if kinds == {True} else np


def device_of(a):
    """ "gpu" for a CuPy array, "cpu" otherwise."""
    return "gpu" if is_gpu_array(unwrap(a)) else "cpu"


def to_device(a, device):
    """Copy array ``a`` to ``device`` ("cpu" or "gpu"); no copy when it is already there."""
    check_device(device)
    a = unwrap(a)
    if device == "gpu":
        return cp.asarray(a)
    if is_gpu_array(a):
        return to_numpy(a)
    return np.asarray(a)  # host to host: no read to count


def to_numpy(a):
    """A NumPy array holding ``a`` (a host copy when ``a`` lives on the GPU).

    Every device-to-host read of the library goes through here (``read_host`` too), so
    ``host_reads.count_host_reads()`` sees each one, on the CPU as well: a call here would wait for the GPU there.
    """
    host_reads.note()
    a = unwrap(a)
    if is_gpu_array(a):
        return cp.asnumpy(a)
    return np.asarray(a)


def read_host(a):
    """The value of a 0-d array (or a Tensor) as a Python bool, int or float: one host read (a GPU sync)."""
    return to_numpy(a).item()


def bincount(x, length):
    """counts (length,) int64: counts[k] = how many values of the integer array ``x`` equal k.

    Every value must lie in [0, length); nothing checks it, since a check would read ``x`` back
    (callers map the values they drop to one extra bin and slice it off). NumPy runs
    ``np.bincount(x, minlength=length)``. ``cupy.bincount`` reads ``max(x)`` back to size its
    result, a GPU sync, so CuPy adds ones into ``zeros(length)`` instead (``cupyx.scatter_add``,
    atomic; no host read). Its counts are uint64, the type CUDA's atomicAdd has for 64 bits.
    """
    if is_gpu_array(x):
        import cupyx

        counts = cp.zeros(length, dtype=cp.uint64)
        cupyx.scatter_add(counts, x.ravel(), cp.ones(x.size, dtype=cp.uint64))
        return counts.view(cp.int64)  # counts are far below 2**63: the same bits read as int64
    return np.bincount(np.asarray(x).ravel(), minlength=length)


def synchronize():
    """Wait until the GPU has finished all queued work (a no-op on the CPU).

    CuPy launches kernels asynchronously: without this, a timer measures only the launch.
    """
    if cp is not None and cupy_available():
        cp.cuda.get_current_stream().synchronize()
