"""The fast path of batch normalisation: norm.py's formulas in fewer passes over memory, on threads.

``forward`` and ``backward`` take the place of ``BatchNorm.forward`` / ``BatchNorm.backward`` (norm.py
calls them unless ``reference_kernels()`` is on) and return the same arrays; the tests compare the two
paths in float64. With d = x - mu and s = 1/sqrt(var + eps) per channel, and sums over the M values of
one channel (N*H*W of them), what differs:

- xhat = d * s is never stored. Backward recomputes d from the input x, which the graph keeps alive
  anyway, so each layer holds one activation-sized array less.
- y = d * (weight * s) + bias: two passes over d instead of three (training); in eval, where mu and s
  are constants, y = x * a + c with a = weight * s and c = bias - mu * a.
- The backward's gx = weight * s * (gy - gb/M - xhat * gW/M) is regrouped per channel as
  gy * (weight * s) + d * (-weight * s^3 * S/M) + (-weight * s * gb/M) with S = sum(gy * d), gW = s * S.
- The per-channel sums of products are dot products of each (n, c) plane (BLAS: faster than
  ``(a * b).sum(axes)``, which writes the product out first, and as accurate in float32).
- The batch is cut into slices, and with ``set_num_threads(n)`` n threads work through them at once
  (ops/workspace.py): NumPy releases the GIL in these loops, and one core cannot use the memory
  bandwidth of two. Each phase that needs a channel total from the whole batch (the mean, the
  variance, gb and S) is one round of slices.
"""

from ..backend import get_array_module
from .workspace import over_batch, scratch, total


def forward(f, x, weight, bias):
    """y (N, C, ...) for x (N, C, H, W) or (N, C); sets on ``f`` what ``backward`` needs (f.x, f.mean, f.inv_std)."""
    xp = get_array_module(x)
    C = x.shape[1]
    shape, M = (1, C) + (1,) * (x.ndim - 2), x.size // C
    y = xp.empty_like(x)
    if f.training:
        mean = total(over_batch(lambda n0, n1: _plane_sums(x[n0:n1]), x)) / M

        def centre(n0, n1):  # d = x - mean, written where y goes; returns this slice's sum of d^2
            d = xp.subtract(x[n0:n1], mean.reshape(shape), out=y[n0:n1])
            return _plane_dots(d, d)

        var = total(over_batch(centre, x)) / M
        _update_running(f, mean, var, M)
    else:
        mean, var = f.running_mean.astype(x.dtype), f.running_var.astype(x.dtype)
    inv_std = (1.0 / xp.sqrt(var + f.eps)).astype(x.dtype, copy=False)
    scale = inv_std if weight is None else inv_std * weight
    if f.training:  # y = d * scale + bias, with d already in y
        shift = bias
    else:  # y = x * scale + (bias - mean * scale)
        shift = -mean * scale if bias is None else bias - mean * scale

    def affine(n0, n1):
        out = y[n0:n1]
        if f.training:
            out *= scale.reshape(shape)
        else:
            xp.multiply(x[n0:n1], scale.reshape(shape), out=out)
        if shift is not None:
            out += shift.reshape(shape)

    over_batch(affine, x)
    f.x, f.mean, f.inv_std, f.weight = x, mean.astype(x.dtype, copy=False), inv_std, weight
    return y


def backward(f, gy):
    """(gx, gW, gb) for the upstream gradient gy (N, C, ...), from what ``forward`` left on ``f``."""
    xp = get_array_module(gy)
    x, mean, s, C = f.x, f.mean, f.inv_std, gy.shape[1]
    shape, M = (1, C) + (1,) * (gy.ndim - 2), gy.size // C

    def centred(n0, n1):  # d = x - mean for this slice, in the calling thread's scratch buffer
        d = scratch(gy, "batch_norm", x[n0:n1].shape)
        return xp.subtract(x[n0:n1], mean.reshape(shape), out=d)

    def sums(n0, n1):  # this slice's (gb, S) as one (2, C) array
        return xp.stack([_plane_sums(gy[n0:n1]), _plane_dots(gy[n0:n1], centred(n0, n1))])

    gb, S = total(over_batch(sums, gy))
    gW = s * S
    scale = s if f.weight is None else s * f.weight
    gx = xp.empty_like(gy)
    if f.training:
        k_d, k_0 = -scale * s * s * S / M, -scale * gb / M

    def grad(n0, n1):
        out = xp.multiply(gy[n0:n1], scale.reshape(shape), out=gx[n0:n1])
        if f.training:
            d = centred(n0, n1)
            d *= k_d.reshape(shape)
            d += k_0.reshape(shape)
            out += d

    over_batch(grad, gy)
    _, need_W, need_b = f.needs_input_grad
    return gx, gW if need_W else None, gb if need_b else None


def _update_running(f, mean, var, M):
    # In place, as norm.py: the running variance is the unbiased one (divide by M - 1), as PyTorch keeps it.
    if f.running_mean is not None:
        m = f.momentum
        f.running_mean[...] = (1 - m) * f.running_mean + m * mean
        f.running_var[...] = (1 - m) * f.running_var + m * var * (M / (M - 1))


def _plane_sums(a):
    """(C,): the sum of a (n, C, ...) over every axis but the channel axis."""
    n, C = a.shape[:2]
    return a.reshape(n, C, -1).sum(axis=2).sum(axis=0)


def _plane_dots(a, b):
    """(C,): sum of a * b over every axis but the channel axis, as one dot product per (n, c) plane."""
    n, C = a.shape[:2]
    planes = a.reshape(n, C, 1, -1) @ b.reshape(n, C, -1, 1)  # (n, C, 1, 1)
    return planes.reshape(n, C).sum(axis=0)
