"""minisegnet: semantic segmentation from scratch in NumPy and CuPy.

    >>> import minisegnet as msn
    >>> x = msn.tensor([0.5, -1.0], requires_grad=True)
    >>> msn.gradcheck(msn.ops.tanh, x).ok
    True

``msn.ops`` (the differentiable ops), ``msn.nn``, ``msn.models`` and ``msn.optim`` come with the
package; ``msn.data`` and ``msn.metrics`` are imported the first time they are used, so
``import minisegnet`` does not pay for the datasets' readers.
"""

import importlib

__version__ = "0.1.0"

from . import models, nn, ops, optim
from .backend import cupy_available, get_array_module, synchronize, to_device, to_numpy
from .gradcheck import gradcheck  # the function, as torch.autograd.gradcheck; the package is minisegnet.gradcheck
from .io import load, save
from .ops import fast  # noqa: F401  (the fast twins of some ops register themselves: ops/fast/__init__.py)
from .registry import reference_kernels
from .summary import summary  # the function; the module is minisegnet.summary
from .tensor import Function, Tensor, as_tensor, is_grad_enabled, no_grad, tensor
from .threads import get_num_threads, set_num_threads

_LAZY = ("data", "metrics")


def __getattr__(name):
    # Called only for names not found above: import a lazy subpackage once (the import binds it here).
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'minisegnet' has no attribute {name!r}")
