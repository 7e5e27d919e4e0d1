"""The array backend: NumPy on the CPU, CuPy on the GPU, one code path.

This is the only module of minisegnet that imports CuPy. Every op starts with
``xp = get_array_module(x)`` and then writes ``xp.exp``, ``xp.zeros`` ... so the
same lines run on both kinds of array.

The default device comes from the environment variable ``MINISEGNET_DEVICE``
("cpu" unless set).

Fast or reference: ops whose speed needs tricks (conv, im2col, max pooling, the CUDA kernels)
keep a readable reference path beside the fast one and ask ``fast_paths()`` which to run. The
fast one is the default; ``reference_kernels()`` (a ``with`` block) or ``MINISEGNET_REFERENCE=1``
(read at import) runs the reference path everywhere.
"""

import collections
import numbers
import os
import sys
import threading
from pathlib import Path

import numpy as np

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

    Every device-to-host read of the library goes through here (``read_host`` and ``scalar`` too), so
    ``count_host_reads()`` sees each one, on the CPU as well: a call here would wait for the GPU there.
    """
    _note_host_read()
    a = unwrap(a)
    if is_gpu_array(a):
        return cp.asnumpy(a)
    return np.asarray(a)


def read_host(a):
    """The value of a 0-d array (or a Tensor) as a Python bool, int or float: one host read (a GPU sync)."""
    return to_numpy(a).item()


_counters = []  # the open count_host_reads() blocks, innermost last
_PACKAGE = str(Path(__file__).parent) + os.sep


def _note_host_read():
    if not _counters:
        return
    frame = sys._getframe(1)
    while frame.f_code.co_filename == __file__:  # name the code that asked, not this module
        frame = frame.f_back
    names = [f"{Path(frame.f_code.co_filename).stem}.{frame.f_code.co_name}"]
    caller = frame.f_back
    if caller is not None and caller.f_code.co_filename.startswith(_PACKAGE):  # and its caller in the library
        names.insert(0, f"{Path(caller.f_code.co_filename).stem}.{caller.f_code.co_name}")
    site = " > ".join(names)
    for counter in _counters:
        counter.sites.append(site)


# Per thread: the data thread's checks (train.py draws images on a second one) raise at once as ever.
_thread = threading.local()


def open_checks():
    """This thread's innermost open ``deferred_checks()`` block, or None (a check then reads its flag and raises)."""
    return getattr(_thread, "checks", None)


class CheckFailed(ValueError):
    """A deferred check that failed: ``step`` (the ``checks.step`` it was recorded at) and ``reason``."""

    def __init__(self, step, reason):
        super().__init__(reason if step is None else f"at step {step}: {reason}")
        self.step, self.reason = step, reason


class deferred_checks:
    """Inside the ``with`` block the value checks (ops/validate.py) record their flag on the device instead of
    reading it back; ``flush()`` reads all pending flags at once and raises the first failure.

        with deferred_checks() as checks:
            for step in ...:
                checks.step = step         # named in the error
                loss = loss_fn(logits, masks)   # its checks are recorded, not read: no GPU sync
                if step % 10 == 0:
                    checks.flush()         # one read; CheckFailed "at step 7: cross_entropy: logits contains nan ..."

    Leaving the block normally flushes too (after an exception: the pending checks are dropped).
    (A class: a switch, not one of the ops.)
    """

    def __init__(self):
        self.step = None
        self.pending = []  # (step, bad: 0-d device bool, value: 0-d device array, message(value) -> str)

    def __enter__(self):
        self.before, _thread.checks = open_checks(), self
        return self

    def __exit__(self, *exc_info):
        _thread.checks = self.before
        if exc_info[0] is None:
            self.flush()

    def record(self, bad, value, message):
        """Keep a check for the next flush: it fails when ``bad`` holds, saying ``message(value)``."""
        self.pending.append((self.step, bad, value, message))

    def flush(self):
        """Read every pending flag (one host read) and raise ``CheckFailed`` for the first that holds."""
        pending, self.pending = self.pending, []
        if not pending:
            return
        xp = get_array_module(*(bad for _, bad, _, _ in pending))
        flags = to_numpy(xp.stack([bad for _, bad, _, _ in pending]))
        for (step, _, value, message), failed in zip(pending, flags):
            if failed:
                raise CheckFailed(step, message(read_host(value)))


class count_host_reads:
    """Count the device-to-host reads made inside the ``with`` block (on either backend).

        with count_host_reads() as reads:
            train_epoch(...)
        len(reads), reads.by_site()      # e.g. 2, {"train.train_epoch > train._flush": 2}

    ``sites`` lists each read's call site in order: "module.function" of the code that read, after its
    caller's when that is library code too ("validate.check_finite > validate.fail_if").
    Blocks nest: an outer one counts the reads of the inner ones too. (A class: a probe, not one of the ops.)
    """

    def __init__(self):
        self.sites = []

    def __enter__(self):
        _counters.append(self)
        return self

    def __exit__(self, *exc_info):
        _counters.remove(self)

    def __len__(self):
        return len(self.sites)

    def by_site(self):
        """{call site: number of reads}, sorted by site."""
        return dict(sorted(collections.Counter(self.sites).items()))


def as_strided(a, shape, strides):
    """A view of ``a`` with the given shape and byte strides (NumPy's or CuPy's ``as_strided``).

    Nothing is checked: every index of the view must land inside ``a``. Read from it only.
    """
    if is_gpu_array(a):
        from cupy.lib.stride_tricks import as_strided as gpu_as_strided

        return gpu_as_strided(a, shape, strides)
    return np.lib.stride_tricks.as_strided(a, shape, strides, writeable=False)


CUDA_KERNELS = os.environ.get("MINISEGNET_CUDA_KERNELS", "1").strip() != "0"
REFERENCE = os.environ.get("MINISEGNET_REFERENCE", "0").strip() not in ("", "0")
_kernels = {}


def fast_paths():
    """True (the default) when ops take their fast paths; False inside ``reference_kernels()``."""
    return not REFERENCE


class reference_kernels:
    """Run every op on its readable reference path inside the ``with`` block (``on=False``: the fast one).

    The reference paths are the lessons' code: conv2d as ``W2 @ im2col(x)``, max pooling as an
    argmax over the window stack, no CUDA kernels. Results agree with the fast paths to rounding
    (the tests compare them); only the speed differs. The previous setting comes back on exit,
    also after an exception. (A class: a switch, not one of the ops.)
    """

    def __init__(self, on=True):
        self.on = bool(on)

    def __enter__(self):
        global REFERENCE
        self.before, REFERENCE = REFERENCE, self.on

    def __exit__(self, *exc_info):
        global REFERENCE
        REFERENCE = self.before


def cuda_kernel(xp, in_params, out_params, operation, name):
    """A hand-written CUDA kernel (``cupy.ElementwiseKernel``) for CuPy arrays, or None.

    None on NumPy, and everywhere when ``CUDA_KERNELS`` is False (``MINISEGNET_CUDA_KERNELS=0``) or
    the reference switch is on (``reference_kernels()``): then the caller runs its generic array
    code, which the tests compare the kernel with. A few hot spots (im2col, col2im, Adam) have a
    kernel, because each CuPy call costs ~10 us of launch overhead and their generic versions take
    9-16 calls. Compiled on first use, cached by name.
    """
    if xp is np or not CUDA_KERNELS or REFERENCE:
        return None
    kernel = _kernels.get(name)
    if kernel is None:
        kernel = _kernels[name] = cp.ElementwiseKernel(in_params, out_params, operation, name)
    return kernel


def raw_kernel(xp, source, name):
    """A hand-written CUDA C kernel (``cupy.RawKernel``, ``extern "C" __global__ void name(...)``), or None.

    None exactly where ``cuda_kernel`` gives None (NumPy, ``MINISEGNET_CUDA_KERNELS=0``,
    ``reference_kernels()``): the caller then runs its generic array code. For kernels that an
    elementwise body cannot express (one block per channel, a loop over a window that picks a
    winner). Compiled on first use, cached by name and source (one source per dtype).
    """
    if xp is np or not CUDA_KERNELS or REFERENCE:
        return None
    kernel = _kernels.get((name, source))
    if kernel is None:
        kernel = _kernels[name, source] = cp.RawKernel(source, name)
    return kernel


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


def scalar(a):
    """A Python float from a 0-d array of either backend (a host sync on the GPU)."""
    return float(to_numpy(a))


_num_threads = 0
_blas_limits = None  # threadpoolctl's record of BLAS's own thread count while minisegnet holds it at one


def set_num_threads(n):
    """CPU threads for minisegnet's convolutions, batch norm, ReLU and max pooling, like ``torch.set_num_threads``.

    ``n`` >= 1: each batch is cut into chunks that n threads (the calling one and n - 1 of
    minisegnet's) work through at once (ops/workspace.py), and BLAS is held to one thread, everywhere in the
    process, until ``set_num_threads(0)``. 0 (the default): the calling thread alone, with
    BLAS's own threads (all cores unless ``OPENBLAS_NUM_THREADS`` or threadpoolctl says otherwise).
    """
    global _num_threads, _blas_limits
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"the number of threads must be an int >= 0 (0: leave threads to BLAS), got {n!r}")
    if n and _blas_limits is None:
        from threadpoolctl import threadpool_limits

        _blas_limits = threadpool_limits(limits=1, user_api="blas")
    elif not n and _blas_limits is not None:
        _blas_limits.restore_original_limits()
        _blas_limits = None
    _num_threads = int(n)


def get_num_threads():
    """The number set by ``set_num_threads`` (0: threads left to BLAS)."""
    return _num_threads
