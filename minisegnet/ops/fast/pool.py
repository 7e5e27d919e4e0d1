"""Fast max pooling: ops/pool.py's MaxPool2d with a running max instead of a stack of every tap, on slices of
the batch on ``set_num_threads(n)`` threads (fast/workspace.py), or on CuPy one CUDA kernel each way
(fast/cuda_fused.py)."""

import numpy as np

from ...backend import get_array_module
from .. import pool as taught
from . import cuda_fused
from .workspace import over_batch


class MaxPool2d(taught.MaxPool2d):
    """ops/pool.py's MaxPool2d: the same y, tap and gradient, PyTorch's tie and NaN rules included."""

    def forward(self, x):
        self.setup(x)
        fused = cuda_fused.max_pool_forward(x, *self.geometry)  # CuPy: y and tap in one kernel, or None
        y, self.tap = fused if fused is not None else _max_running(x, self, *self.geometry)
        return y

    def backward(self, gy):
        fused = cuda_fused.max_pool_backward(gy, self.tap, self.x_shape, *self.geometry)  # CuPy: one gather
        if fused is not None:
            return fused
        gx = get_array_module(gy).zeros(self.x_shape, dtype=gy.dtype)

        def part(n0, n1):  # ops/pool.py's loop over the taps, for images n0..n1-1
            g, won, into = gy[n0:n1], self.tap[n0:n1], gx[n0:n1]
            for i, j, out, inp in self.taps:
                into[inp] += g[out] * (won[out] == i * self.KW + j)

        over_batch(part, gy)
        return gx


def _max_running(x, f, kernel, stride, padding, out_size):
    """(y, tap) from a running max over the taps, the argmax kept by arithmetic.

    One pass over the KH*KW clipped tap slices ``f.taps`` (no padded copy, no stack); only a
    strictly larger value or a NaN replaces the current one, which gives PyTorch's rules.
    """
    xp = get_array_module(x)
    (N, C), (KH, KW), (OH, OW) = x.shape[:2], kernel, out_size
    # Start each window at its first real cell with value -inf: that cell wins unless something beats it,
    # which is what PyTorch's loop does (it matters only for windows full of -inf).
    first = (xp.maximum(-f.top, 0) * KW)[:, None] + xp.maximum(-f.left, 0)[None, :]
    tap = xp.broadcast_to(first.astype(np.min_scalar_type(KH * KW - 1)), (N, C, OH, OW)).copy()
    y = xp.full((N, C, OH, OW), -xp.inf, dtype=x.dtype)

    def part(n0, n1):  # images n0..n1-1
        for i, j, out, inp in f.taps:
            # Basic slices are views: the in-place updates below write into y and tap.
            window, best, winner = x[n0:n1][inp], y[n0:n1][out], tap[n0:n1][out]
            better = window > best
            better |= xp.isnan(window)
            xp.maximum(best, window, out=best)  # NaN-propagating, like the rule above
            # winner = i*KW + j where better, unchanged elsewhere; arithmetic, as masked writes are slow in NumPy.
            winner *= ~better
            winner += better * tap.dtype.type(i * KW + j)

    over_batch(part, x)
    return y, tap
