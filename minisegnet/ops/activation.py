"""Activations: relu, sigmoid, tanh, softmax, log_softmax, dropout, dropout2d."""

from ..backend import get_array_module
from ..tensor import Function


class ReLU(Function):
    """y = max(x, 0); the gradient passes where x was positive."""

    def forward(self, x):
        self.mask = x > 0
        return get_array_module(x).maximum(x, 0)

    def backward(self, gy):
        return gy * self.mask


def relu(x):
    """max(x, 0) elementwise; the gradient at 0 is 0, as in PyTorch. Any shape."""
    return ReLU()(x)


def sigmoid_array(x):
    """1 / (1 + e^-x) on a raw array as 0.5 * (1 + tanh(x / 2)), which never overflows; shared by every loss."""
    return 0.5 * (get_array_module(x).tanh(0.5 * x) + 1)


class Sigmoid(Function):
    def forward(self, x):
        self.y = sigmoid_array(x)
        return self.y

    def backward(self, gy):
        return gy * self.y * (1 - self.y)


def sigmoid(x):
    """1 / (1 + exp(-x)) elementwise, computed without overflow. Any shape."""
    return Sigmoid()(x)


class Tanh(Function):
    def forward(self, x):
        self.y = get_array_module(x).tanh(x)
        return self.y

    def backward(self, gy):
        return gy * (1 - self.y * self.y)


def tanh(x):
    """Hyperbolic tangent elementwise. Any shape."""
    return Tanh()(x)


def log_softmax_array(x, axis=1):
    """log softmax on a raw array by log-sum-exp (the one copy, used by softmax and every loss)."""
    # Subtracting the max changes nothing mathematically and keeps exp() <= 1.
    xp = get_array_module(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


class Softmax(Function):
    """y_i = e^{x_i} / sum_j e^{x_j};  gx = y * (gy - sum_j gy_j y_j)."""

    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        self.y = get_array_module(x).exp(log_softmax_array(x, self.axis))
        return self.y

    def backward(self, gy):
        return self.y * (gy - (gy * self.y).sum(axis=self.axis, keepdims=True))


def softmax(x, axis=1):
    """Softmax along ``axis`` (the class axis of (N, C, H, W) scores by default), numerically stable."""
    return Softmax(axis)(x)


class LogSoftmax(Function):
    """y_i = x_i - log sum_j e^{x_j};  gx = gy - softmax(x) * sum_j gy_j."""

    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        self.y = log_softmax_array(x, self.axis)
        return self.y

    def backward(self, gy):
        xp = get_array_module(gy)
        return gy - xp.exp(self.y) * gy.sum(axis=self.axis, keepdims=True)


def log_softmax(x, axis=1):
    """log(softmax(x)) along ``axis`` via log-sum-exp, stable for large scores. x (N, C, ...)."""
    return LogSoftmax(axis)(x)


class Dropout(Function):
    """Inverted dropout: y = x * mask / (1 - p); the same mask scales the gradient."""

    def __init__(self, p, spatial):
        self.p, self.spatial = p, spatial

    def forward(self, x):
        xp = get_array_module(x)
        shape = x.shape[:2] + (1,) * (x.ndim - 2) if self.spatial else x.shape
        self.mask = (xp.random.random_sample(shape) >= self.p).astype(x.dtype) / (1 - self.p)
        return x * self.mask

    def backward(self, gy):
        return gy * self.mask


def _dropout(x, p, training, spatial):
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    return Dropout(p, spatial)(x)


def dropout(x, p=0.5, training=True):
    """Zero each element of x (any shape) with probability ``p``, scale the rest by 1/(1-p).

    The identity when not ``training``.
    """
    return _dropout(x, p, training, spatial=False)


def dropout2d(x, p=0.5, training=True):
    """Spatial dropout: zero whole channels of x (N, C, H, W) with probability ``p``, scale the rest by 1/(1-p)."""
    if x.ndim != 4:
        raise ValueError(f"dropout2d expects x of shape (N, C, H, W), got {tuple(x.shape)}")
    return _dropout(x, p, training, spatial=True)
