"""Elementwise arithmetic with NumPy broadcasting: add, sub, mul, div, neg, pow, exp, log, sqrt, matmul.

Broadcasting copies a value along new or size-1 axes, so its adjoint sums the gradient
back over those axes: ``sum_to(gy, x.shape)`` in every binary backward below.
"""

import numpy as np

from ..backend import get_array_module
from ..tensor import Function, Tensor


def sum_to(gy, shape):
    """Sum ``gy`` down to ``shape``: the adjoint of broadcasting an array of ``shape`` to ``gy.shape``."""
    if tuple(gy.shape) == tuple(shape):
        return gy
    lead = gy.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and gy.shape[lead + i] != 1)
    gx = gy.sum(axis=axes, keepdims=True)
    return gx.reshape(shape)


def _check_broadcast(a, b, op):
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{op}: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be broadcast together") from None


def operands(a, b):
    """Two Tensors from two operands, a Python number taking the dtype of the other (float32 stays float32)."""
    if not isinstance(a, Tensor) and np.isscalar(a):
        a, b = _number_like(a, b), b
    if not isinstance(b, Tensor) and np.isscalar(b):
        b = _number_like(b, a)
    return (a if isinstance(a, Tensor) else Tensor(a)), (b if isinstance(b, Tensor) else Tensor(b))


def _number_like(value, other):
    other = other.data if isinstance(other, Tensor) else np.asarray(other)
    xp = get_array_module(other)
    keep = other.dtype.kind in "fc" or isinstance(value, (int, np.integer))
    return Tensor(xp.asarray(value, dtype=other.dtype if keep else None))


class Add(Function):
    def forward(self, a, b):
        _check_broadcast(a, b, "add")
        self.a_shape, self.b_shape = a.shape, b.shape
        return a + b

    def backward(self, gy):
        return sum_to(gy, self.a_shape), sum_to(gy, self.b_shape)


def add(a, b):
    """a + b with broadcasting; either may be a Python number."""
    return Add()(*operands(a, b))


class Sub(Function):
    def forward(self, a, b):
        _check_broadcast(a, b, "sub")
        self.a_shape, self.b_shape = a.shape, b.shape
        return a - b

    def backward(self, gy):
        return sum_to(gy, self.a_shape), sum_to(-gy, self.b_shape)


def sub(a, b):
    """a - b with broadcasting."""
    return Sub()(*operands(a, b))


class Mul(Function):
    def forward(self, a, b):
        _check_broadcast(a, b, "mul")
        self.a, self.b = a, b
        return a * b

    def backward(self, gy):
        ga = sum_to(gy * self.b, self.a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(gy * self.a, self.b.shape) if self.needs_input_grad[1] else None
        return ga, gb


def mul(a, b):
    """a * b elementwise with broadcasting."""
    return Mul()(*operands(a, b))


class Div(Function):
    def forward(self, a, b):
        _check_broadcast(a, b, "div")
        self.a, self.b = a, b
        return a / b

    def backward(self, gy):
        gq = gy / self.b
        ga = sum_to(gq, self.a.shape)
        gb = sum_to(-gq * self.a / self.b, self.b.shape) if self.needs_input_grad[1] else None
        return ga, gb


def div(a, b):
    """a / b elementwise with broadcasting."""
    return Div()(*operands(a, b))


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


def neg(x):
    """-x elementwise, x of any shape."""
    return Neg()(x)


class Pow(Function):
    """y = x ** c for a constant number c; dy/dx = c x^(c-1)."""

    def __init__(self, c):
        self.c = c

    def forward(self, x):
        self.x = x
        return x**self.c

    def backward(self, gy):
        return gy * self.c * self.x ** (self.c - 1)


def pow(x, exponent):
    """x ** exponent elementwise for x of any shape and a constant Python number ``exponent``."""
    if not np.isscalar(exponent):
        raise TypeError(f"pow: exponent must be a Python number, got {type(exponent).__name__}")
    return Pow(exponent)(x)


class Exp(Function):
    def forward(self, x):
        self.y = get_array_module(x).exp(x)
        return self.y

    def backward(self, gy):
        return gy * self.y


def exp(x):
    """e ** x elementwise, x of any shape."""
    return Exp()(x)


class Log(Function):
    def forward(self, x):
        self.x = x
        return get_array_module(x).log(x)

    def backward(self, gy):
        return gy / self.x


def log(x):
    """Natural logarithm elementwise, x of any shape."""
    return Log()(x)


class Sqrt(Function):
    def forward(self, x):
        self.y = get_array_module(x).sqrt(x)
        return self.y

    def backward(self, gy):
        return gy / (2 * self.y)


def sqrt(x):
    """Square root elementwise, x of any shape; d sqrt(x)/dx = 1 / (2 sqrt(x))."""
    return Sqrt()(x)


class MatMul(Function):
    """Y = A @ B for A (M, K), B (K, N); gA = gY B^T, gB = A^T gY."""

    def forward(self, a, b):
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(f"matmul needs (M, K) @ (K, N), got {tuple(a.shape)} @ {tuple(b.shape)}")
        self.a, self.b = a, b
        return a @ b

    def backward(self, gy):
        ga = gy @ self.b.T if self.needs_input_grad[0] else None
        gb = self.a.T @ gy if self.needs_input_grad[1] else None
        return ga, gb


def matmul(a, b):
    """Matrix product of two 2-D tensors a (M, K) and b (K, N) -> (M, N)."""
    return MatMul()(*operands(a, b))
