"""minisegnet: semantic segmentation from scratch in NumPy and CuPy."""

__version__ = "0.1.0"

from . import models, nn, ops, optim
from .backend import (
    cupy_available,
    get_array_module,
    get_num_threads,
    reference_kernels,
    set_num_threads,
    synchronize,
    to_device,
    to_numpy,
)
from .io import load, save
from .tensor import Function, Tensor, as_tensor, is_grad_enabled, no_grad, tensor
