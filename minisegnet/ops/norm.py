"""Batch normalisation with a hand-derived backward."""

from ..backend import get_array_module
from ..tensor import Function, Tensor


class BatchNorm(Function):
    """y = xhat * weight + bias per channel, xhat = (x - mu) / sqrt(var + eps).

    Statistics are taken per channel over the M = N*H*W values of that channel (axes 0, 2, 3; or axis 0 for
    x (N, C)): in training mu and var are the batch mean and *biased* variance, in eval the running ones.

    Backward. Write s = 1/sqrt(var + eps) and sums over the M values of one channel. The parameter gradients
    are direct: gW = sum(gy * xhat), gb = sum(gy). For x, let g = gy * weight (the gradient w.r.t. xhat).
    In eval mu and s are constants, so gx = g * s. In training they depend on x:
        d mu / d x_j  = 1/M,   d var / d x_j = 2 (x_j - mu) / M,   so   d s / d x_j = -s^3 (x_j - mu) / M,
        d xhat_i / d x_j = s [i == j] - s/M - s^3 (x_i - mu)(x_j - mu) / M
                         = (s/M) (M [i == j] - 1 - xhat_i xhat_j).
    Contracting with g_i:
        gx_j = sum_i g_i d xhat_i / d x_j = s (g_j - mean(g) - xhat_j mean(g * xhat)),
    i.e. gx = (weight * s) * (gy - mean(gy) - xhat * mean(gy * xhat)): the gradient is that of the plain
    scaling, with its components along the two directions the normalisation removes (constant shift and
    scaling of xhat) projected out. The two means are gb/M and gW/M, so backward computes them once.
    """

    def __init__(self, training, momentum, eps, running_mean, running_var):
        self.training, self.momentum, self.eps = training, momentum, eps
        self.running_mean, self.running_var = running_mean, running_var

    def forward(self, x, weight, bias):
        xp = get_array_module(x, weight, bias, self.running_mean, self.running_var)
        C = x.shape[1]
        self.axes = (0,) + tuple(range(2, x.ndim))  # every axis but the channel axis
        self.M = x.size // C
        shape = (1, C) + (1,) * (x.ndim - 2)  # per-channel arrays broadcast against x
        if self.training:
            mean = x.mean(axis=self.axes)
            xc = x - mean.reshape(shape)
            var = (xc * xc).mean(axis=self.axes)  # biased: divide by M
            self.update_running(mean, var)
        else:
            var = self.running_var
            xc = x - self.running_mean.astype(x.dtype, copy=False).reshape(shape)
        self.inv_std = (1.0 / xp.sqrt(var + self.eps)).astype(x.dtype, copy=False).reshape(shape)
        xc *= self.inv_std  # xc is a fresh array: normalise it in place into xhat
        self.xhat, self.weight = xc, None if weight is None else weight.reshape(shape)
        y = self.xhat if weight is None else self.xhat * self.weight
        return y if bias is None else y + bias.reshape(shape)

    def backward(self, gy):
        # The two channel sums are gb and gW, and the training formula needs exactly their means.
        gb = gy.sum(axis=self.axes)
        gW = (gy * self.xhat).sum(axis=self.axes)
        scale = self.inv_std if self.weight is None else self.inv_std * self.weight
        if not self.training:
            gx = gy * scale
        else:
            shape = scale.shape
            gx = self.xhat * (gW / -self.M).reshape(shape)
            gx += gy
            gx -= (gb / self.M).reshape(shape)
            gx *= scale
        _, need_W, need_b = self.needs_input_grad
        return gx, gW if need_W else None, gb if need_b else None

    def update_running(self, mean, var):
        """running = (1 - momentum) * running + momentum * batch, in place, for the batch's mean and biased var (C,).

        In place, so the caller's arrays (a BatchNorm2d layer's buffers) see the update. PyTorch keeps the
        *unbiased* variance (divide by M - 1) as its running estimate.
        """
        if self.running_mean is not None:
            m, M = self.momentum, self.M
            self.running_mean[...] = (1 - m) * self.running_mean + m * mean
            self.running_var[...] = (1 - m) * self.running_var + m * var * (M / (M - 1))


def _buffer(a, name):
    """The raw array behind a running-stat argument (updated in place), refusing one that takes gradients."""
    if isinstance(a, Tensor):
        if a.requires_grad:
            raise ValueError(f"batch_norm: {name} is a buffer and must not require grad")
        return a.data
    return a


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Batch normalisation, as ``torch.nn.functional.batch_norm``.

    x (N, C, H, W) or (N, C); running_mean, running_var, weight, bias (C,). ``training=True`` normalises with
    the batch's per-channel mean and biased variance and, when running stats are given, updates them in
    place: running = (1 - momentum) * running + momentum * batch (the variance term unbiased, as PyTorch).
    ``training=False`` normalises with the running stats. y = (x - mean) / sqrt(var + eps) * weight + bias;
    weight and bias may be None (no affine part). Running stats are arrays or Tensors that take no gradient.
    """
    op = "batch_norm"
    if x.ndim not in (2, 4):
        raise ValueError(f"{op} expects x of shape (N, C) or (N, C, H, W), got shape {tuple(x.shape)}")
    N, C = x.shape[:2]
    running_mean, running_var = _buffer(running_mean, "running_mean"), _buffer(running_var, "running_var")
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{op}: give both running_mean and running_var, or neither")
    if running_mean is None and not training:
        raise ValueError(f"{op}: running_mean and running_var are needed when training=False")
    for name, a in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)):
        if a is not None and tuple(a.shape) != (C,):
            raise ValueError(f"{op}: {name} must have shape ({C},) for x with {C} channels, got {tuple(a.shape)}")
    if training and x.size // max(C, 1) <= 1:
        raise ValueError(f"{op}: training needs more than 1 value per channel, got x of shape {tuple(x.shape)}")
    if not 0 <= momentum <= 1:
        raise ValueError(f"{op}: momentum must be in [0, 1], got {momentum}")
    return BatchNorm(bool(training), momentum, eps, running_mean, running_var)(x, weight, bias)
