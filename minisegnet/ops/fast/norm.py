"""Fast batch normalisation: ops/norm.py's formulas in fewer passes over memory, on threads, or one CUDA kernel.

``BatchNorm`` here is ops/norm.py's with another ``forward`` and ``backward`` that return the same arrays
(the tests compare the two in float64). On CuPy in training, each is one CUDA kernel (fast/cuda_fused.py).
Elsewhere, with d = x - mu and s = 1/sqrt(var + eps) per channel, and sums over the M values of one
channel (N*H*W of them), what differs from ops/norm.py:

- xhat = d * s is never stored. Backward recomputes d from the input x, which the graph keeps alive
  anyway, so each layer holds one activation-sized array less.
- y = d * (weight * s) + bias: two passes over d instead of three (training); in eval, where mu and s
  are constants, y = x * a + c with a = weight * s and c = bias - mu * a.
- The backward's gx = weight * s * (gy - gb/M - xhat * gW/M) is regrouped per channel as
  gy * (weight * s) + d * (-weight * s^3 * S/M) + (-weight * s * gb/M) with S = sum(gy * d), gW = s * S.
- The per-channel sums of products are dot products of each (n, c) plane (BLAS: faster than
  ``(a * b).sum(axes)``, which writes the product out first, and as accurate in float32).
- The batch is cut into slices, and with ``set_num_threads(n)`` n threads work through them at once
  (fast/workspace.py): NumPy releases the GIL in these loops, and one core cannot use the memory
  bandwidth of two. Each phase that needs a channel total from the whole batch (the mean, the
  variance, gb and S) is one round of slices.
"""

import math

from ...backend import get_array_module
from .. import norm as taught
from . import cuda_fused
from .workspace import over_batch, scratch, total


class BatchNorm(taught.BatchNorm):
    """ops/norm.py's BatchNorm: one CUDA kernel each way on CuPy in training, else the regrouped formulas below."""

    def forward(self, x, weight, bias):
        self.M = x.size // x.shape[1]
        args = (self.running_mean, self.running_var, self.momentum, self.eps)
        fused = cuda_fused.batch_norm_forward(x, weight, bias, *args) if self.training else None
        self.fused = fused is not None
        if not self.fused:
            return self._forward(x, weight, bias)
        y, self.xhat, self.inv_std = fused
        self.weight = weight
        return y

    def backward(self, gy):
        if not self.fused:
            gx, gW, gb = self._backward(gy)
        else:
            fused = cuda_fused.batch_norm_backward(gy, self.xhat, self.inv_std, self.weight)
            gx, gW, gb = fused if fused is not None else self._backward_from_xhat(gy)
        _, need_W, need_b = self.needs_input_grad
        return gx, gW if need_W else None, gb if need_b else None

    def _backward_from_xhat(self, gy):
        # ops/norm.py's backward on what the kernel kept (xhat; inv_std and weight (C,)), for a gy of another dtype.
        shape = (1, gy.shape[1]) + (1,) * (gy.ndim - 2)
        self.axes = (0,) + tuple(range(2, gy.ndim))
        self.inv_std = self.inv_std.reshape(shape)
        self.weight = None if self.weight is None else self.weight.reshape(shape)
        return taught.BatchNorm.backward(self, gy)

    def _forward(self, x, weight, bias):
        """y (N, C, ...) for x (N, C, H, W) or (N, C); keeps x, mean and inv_std for the backward."""
        xp = get_array_module(x)
        C, M = x.shape[1], self.M
        shape = (1, C) + (1,) * (x.ndim - 2)
        y = xp.empty_like(x)
        if self.training:
            mean = total(over_batch(lambda n0, n1: _plane_sums(x[n0:n1]), x)) / M

            def centre(n0, n1):  # d = x - mean, written where y goes; returns this slice's sum of d^2
                d = xp.subtract(x[n0:n1], mean.reshape(shape), out=y[n0:n1])
                return _plane_dots(d, d)

            var = total(over_batch(centre, x)) / M
            self.update_running(mean, var)
        else:
            mean, var = self.running_mean.astype(x.dtype), self.running_var.astype(x.dtype)
        inv_std = (1.0 / xp.sqrt(var + self.eps)).astype(x.dtype, copy=False)
        scale = inv_std if weight is None else inv_std * weight
        if self.training:  # y = d * scale + bias, with d already in y
            shift = bias
        else:  # y = x * scale + (bias - mean * scale)
            shift = -mean * scale if bias is None else bias - mean * scale

        def affine(n0, n1):
            out = y[n0:n1]
            if self.training:
                out *= scale.reshape(shape)
            else:
                xp.multiply(x[n0:n1], scale.reshape(shape), out=out)
            if shift is not None:
                out += shift.reshape(shape)

        over_batch(affine, x)
        self.x, self.mean, self.inv_std, self.weight = x, mean.astype(x.dtype, copy=False), inv_std, weight
        return y

    def _backward(self, gy):
        """(gx, gW, gb) for the upstream gradient gy (N, C, ...), from what ``_forward`` kept."""
        xp = get_array_module(gy)
        x, mean, s, C, M = self.x, self.mean, self.inv_std, gy.shape[1], self.M
        shape = (1, C) + (1,) * (gy.ndim - 2)

        def centred(n0, n1):  # d = x - mean for this slice, in the calling thread's scratch buffer
            d = scratch(gy, "batch_norm", x[n0:n1].shape)
            return xp.subtract(x[n0:n1], mean.reshape(shape), out=d)

        def sums(n0, n1):  # this slice's (gb, S) as one (2, C) array
            return xp.stack([_plane_sums(gy[n0:n1]), _plane_dots(gy[n0:n1], centred(n0, n1))])

        gb, S = total(over_batch(sums, gy))
        gW = s * S
        scale = s if self.weight is None else s * self.weight
        gx = xp.empty_like(gy)
        if self.training:
            k_d, k_0 = -scale * s * s * S / M, -scale * gb / M

        def grad(n0, n1):
            out = xp.multiply(gy[n0:n1], scale.reshape(shape), out=gx[n0:n1])
            if self.training:
                d = centred(n0, n1)
                d *= k_d.reshape(shape)
                d += k_0.reshape(shape)
                out += d

        over_batch(grad, gy)
        return gx, gW, gb


def _plane_sums(a):
    """(C,): the sum of a (n, C, ...) over every axis but the channel axis."""
    n, C = a.shape[:2]
    return a.reshape(n, C, math.prod(a.shape[2:])).sum(axis=2).sum(axis=0)


def _plane_dots(a, b):
    """(C,): sum of a * b over every axis but the channel axis, as one dot product per (n, c) plane."""
    n, C, P = a.shape[0], a.shape[1], math.prod(a.shape[2:])
    planes = a.reshape(n, C, 1, P) @ b.reshape(n, C, P, 1)  # (n, C, 1, 1)
    return planes.reshape(n, C).sum(axis=0)
