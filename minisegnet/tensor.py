"""Tensor, Function and reverse-mode automatic differentiation.

A ``Tensor`` wraps one array (NumPy or CuPy) and remembers the ``Function`` that
made it. A ``Function`` holds a ``forward`` and a ``backward`` on raw arrays; the
graph wiring lives once, in ``Function.__call__``. ``Tensor.backward`` walks the
graph in reverse topological order with an explicit stack (no recursion, so a
deep U-Net graph cannot hit Python's recursion limit) and frees it afterwards.

    >>> import minisegnet as msn
    >>> x = msn.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> y = (x * x).sum()
    >>> y.backward()
    >>> x.grad
    array([2., 4., 6.])
"""

import contextlib
import weakref

import numpy as np

from .backend import check_device, default_device, device_of, get_array_module, is_gpu_array, to_device, to_numpy
from .registry import chosen

_grad_enabled = True


class no_grad(contextlib.ContextDecorator):
    """Context manager: ops run inside it record no graph (evaluation, optimiser steps). Blocks nest, one
    ``no_grad()`` object may be entered again, and ``@no_grad()`` decorates a function. (A class: a switch.)"""

    def __init__(self):
        self.before = []

    def __enter__(self):
        global _grad_enabled
        self.before.append(_grad_enabled)
        _grad_enabled = False
        return self

    def __exit__(self, *exc_info):
        global _grad_enabled
        _grad_enabled = self.before.pop()


def is_grad_enabled():
    """False inside ``no_grad()``."""
    return _grad_enabled


def _check_float(array, what="a tensor that requires grad"):
    if array.dtype.kind not in "fc":
        raise TypeError(f"{what} must have a floating dtype, got {array.dtype}")


class Tensor:
    """An array (NumPy or CuPy) with an optional gradient and the Function that produced it.

    Attributes: ``data`` (the array), ``grad`` (an array of the same shape, or None),
    ``requires_grad``, and the read-only ``shape``, ``dtype``, ``ndim``, ``size``, ``device``.
    """

    __array_priority__ = 1000  # numpy_array + tensor calls Tensor.__radd__, not NumPy's broadcasting

    def __init__(self, data, requires_grad=False):
        if isinstance(data, Tensor):
            data = data.data
        if not (isinstance(data, np.ndarray) or is_gpu_array(data)):
            data = np.asarray(data)
        if requires_grad:
            _check_float(data)
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.creator = None
        self._freed = False

    # ---- array-like attributes -------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    device = property(lambda self: device_of(self.data))
    is_leaf = property(lambda self: self.creator is None)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        body = np.array2string(to_numpy(self.data), separator=", ", prefix="tensor(", threshold=20)
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"tensor({body}, dtype={self.dtype}, device='{self.device}'{grad})"

    # ---- conversions ---------------------------------------------------------------
    def numpy(self):
        """A NumPy copy of the data on the host (no graph)."""
        return to_numpy(self.data).copy()

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return to_numpy(self.data).reshape(()).item()

    def detach(self):
        """The same data in a new tensor that is cut from the graph."""
        return Tensor(self.data)

    def to(self, device):
        """This tensor on ``device`` ("cpu" or "gpu"); differentiable, a no-op when already there."""
        check_device(device)
        return self if device == self.device else ToDevice(device)(self)

    def zero_grad(self):
        self.grad = None

    # ---- autograd ---------------------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        ``grad`` is the upstream gradient (same shape as self); it may be omitted only for a
        one-element tensor. Gradients add up across calls until ``zero_grad()``. The graph
        is freed afterwards unless ``retain_graph=True``.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() called on a tensor that does not require grad (no input required grad)")
        if self._freed:
            raise RuntimeError(
                "the graph behind this tensor was freed by an earlier backward(); "
                "pass retain_graph=True to the first call to backpropagate twice"
            )
        xp = get_array_module(self.data)
        if grad is None:
            if self.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a one-element output, got shape "
                    f"{self.shape}; pass grad= an array of that shape"
                )
            grad = xp.ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else grad
            if tuple(grad.shape) != tuple(self.shape):
                raise ValueError(f"grad has shape {tuple(grad.shape)} but the tensor has shape {self.shape}")
            get_array_module(self.data, grad)  # a NumPy grad for a CuPy tensor (or the reverse) is an error
        if self.creator is None:
            _accumulate(self, grad)
            return
        # Pending gradients keyed by id, each held with its tensor so the id stays unique.
        grads = {id(self): (self, grad)}
        for f in _topological_order(self.creator):
            outputs = [o() for o in f.outputs]
            gys = [grads.pop(id(o), (None, None))[1] for o in outputs]
            gys = [f.zeros_like_output(i) if g is None else g for i, g in enumerate(gys)]
            gxs = f.backward(*gys)
            if not isinstance(gxs, tuple):
                gxs = (gxs,)
            for x, gx in zip(f.inputs, gxs):
                if x is None or gx is None or not x.requires_grad:
                    continue
                if tuple(gx.shape) != tuple(x.shape):
                    raise RuntimeError(
                        f"{type(f).__name__}.backward returned a gradient of shape "
                        f"{tuple(gx.shape)} for an input of shape {x.shape}"
                    )
                if x.creator is None:
                    _accumulate(x, gx)
                else:
                    pending = grads.get(id(x))
                    grads[id(x)] = (x, gx if pending is None else pending[1] + gx)
            if not retain_graph:
                f.release(outputs)

    # ---- operators (the ops live in minisegnet.ops; imported at the bottom) ---------------
    def __add__(self, other):
        return F.add(self, other)

    def __radd__(self, other):
        return F.add(other, self)

    def __sub__(self, other):
        return F.sub(self, other)

    def __rsub__(self, other):
        return F.sub(other, self)

    def __mul__(self, other):
        return F.mul(self, other)

    def __rmul__(self, other):
        return F.mul(other, self)

    def __truediv__(self, other):
        return F.div(self, other)

    def __rtruediv__(self, other):
        return F.div(other, self)

    def __matmul__(self, other):
        return F.matmul(self, other)

    def __rmatmul__(self, other):
        return F.matmul(other, self)

    def __pow__(self, exponent):
        return F.pow(self, exponent)

    def __neg__(self):
        return F.neg(self)

    def __getitem__(self, index):
        return F.getitem(self, index)

    def sum(self, axis=None, keepdims=False):
        return F.sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return F.mean(self, axis, keepdims)

    def max(self, axis=None, keepdims=False):
        return F.max(self, axis, keepdims)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]  # x.reshape((2, 3)) as well as x.reshape(2, 3)
        return F.reshape(self, shape)

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = axes[0]  # x.transpose((1, 0)) as well as x.transpose(1, 0)
        return F.transpose(self, axes or None)

    T = property(lambda self: F.transpose(self))

    def exp(self):
        return F.exp(self)

    def log(self):
        return F.log(self)

    def relu(self):
        return F.relu(self)


def _accumulate(leaf, gx):
    """Add ``gx`` into ``leaf.grad``.

    A backward may hand on its upstream gradient itself (``add`` gives ``gy`` to both inputs), a
    read-only broadcast view (``sum``) or a view of another array (``transpose``). So a leaf's first
    gradient is copied: every leaf owns its ``.grad``, writable and C-contiguous, as in PyTorch, and
    ``p.grad *= 0.5`` changes nothing else.
    """
    if leaf.grad is None:
        leaf.grad = get_array_module(gx).array(gx, dtype=leaf.dtype, order="C", copy=True)
    else:
        leaf.grad = (leaf.grad + gx).astype(leaf.dtype, copy=False)  # a sum is a fresh array


def _topological_order(root):
    """Functions reachable from ``root``, each before the functions that made its inputs.

    An iterative depth-first post-order with an explicit stack, reversed.
    """
    order = []
    seen = set()
    stack = [(root, False)]
    while stack:
        f, done = stack.pop()
        if done:
            order.append(f)
            continue
        # Mark a function when it is expanded, not when it is pushed: a function reached first from a
        # shallow input must still come after every deeper path to it, or a fork's gradients arrive late.
        if id(f) in seen:
            continue
        seen.add(id(f))
        stack.append((f, True))
        for x in f.inputs:
            g = None if x is None else x.creator
            if g is not None and id(g) not in seen:
                stack.append((g, False))
    return reversed(order)


class Function:
    """One differentiable operation: subclasses write ``forward(*arrays)`` and ``backward(*gys)``.

    ``forward`` takes and returns raw arrays (one array, or a tuple for several outputs) and
    saves on ``self`` what ``backward`` needs. ``backward`` gets one upstream gradient per
    output and returns one gradient per input (None for inputs with no gradient).
    ``self.needs_input_grad`` tells backward which input gradients are wanted.
    ``backward`` never writes into a ``gy`` and never returns an array it keeps (a saved array,
    a scratch buffer); returning ``gy`` itself or a view is fine: a leaf copies its first gradient.

    Some ops have a faster twin (a subclass in ops/fast/ registered in registry.py): creating the
    taught class creates the twin, unless ``reference_kernels()`` is on.
    """

    def __new__(cls, *args, **kwargs):
        return super().__new__(chosen(cls))

    def __call__(self, *inputs):
        xs = [x if x is None or isinstance(x, Tensor) else Tensor(x) for x in inputs]
        arrays = [None if x is None else x.data for x in xs]
        get_array_module(*arrays)  # raises on a mix of NumPy and CuPy arrays
        ys = self.forward(*arrays)
        ys = ys if isinstance(ys, tuple) else (ys,)
        needs_grad = _grad_enabled and any(x is not None and x.requires_grad for x in xs)
        outputs = [Tensor(y) for y in ys]
        if needs_grad:
            self.inputs = xs
            self.needs_input_grad = tuple(x is not None and x.requires_grad for x in xs)
            self.outputs = [weakref.ref(o) for o in outputs]
            self._output_meta = [(y.shape, y.dtype) for y in ys]
            for o in outputs:
                o.requires_grad = o.dtype.kind in "fc"
                o.creator = self if o.requires_grad else None
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def forward(self, *xs):
        raise NotImplementedError

    def backward(self, *gys):
        raise NotImplementedError

    def zeros_like_output(self, i):
        """A zero gradient for output ``i`` when nothing downstream used it."""
        shape, dtype = self._output_meta[i]
        xp = get_array_module(*[x for x in self.inputs if x is not None])
        return xp.zeros(shape, dtype=dtype)

    def release(self, outputs):
        """Drop the references that keep the graph (and its saved arrays) alive."""
        for o in outputs:
            if o is not None:
                o.creator = None
                o._freed = True
        self.inputs = ()


class ToDevice(Function):
    """Copy to another device; the gradient is copied back."""

    def __init__(self, device):
        self.device = device

    def forward(self, x):
        self.source = device_of(x)
        return to_device(x, self.device)

    def backward(self, gy):
        return to_device(gy, self.source)


def tensor(data, dtype=None, device=None, requires_grad=False):
    """Make a Tensor from a list, scalar or array (NumPy's dtype rules: Python floats give float64).

    ``device`` is "cpu" or "gpu"; by default an array stays where it is, and anything else goes to
    the device named by the ``MINISEGNET_DEVICE`` environment variable (cpu when unset).
    """
    if isinstance(data, Tensor):
        data = data.data
    if device is None:
        device = device_of(data) if isinstance(data, np.ndarray) or is_gpu_array(data) else default_device()
    device = check_device(device)
    if dtype is None and not (isinstance(data, np.ndarray) or is_gpu_array(data)):
        data = np.asarray(data)
    data = to_device(data, device)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    return Tensor(data, requires_grad=requires_grad)


def as_tensor(x):
    """``x`` itself when it is a Tensor, else a new Tensor that does not require grad."""
    return x if isinstance(x, Tensor) else Tensor(x)


from . import ops as F  # noqa: E402  (ops import Function from this module, so they come last)
