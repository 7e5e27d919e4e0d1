"""Fast max pooling: ops/pool.py's MaxPool2d with a running max instead of a stack of every tap, or on CuPy one
CUDA kernel each way (fast/cuda_fused.py).

The running max visits the KH*KW taps (strided views of x) one after the other, keeping the best value so far in y
and its tap in ``tap``. Per tap it makes four NumPy calls, all written into arrays that already exist: whether
the tap beats the best, that flag times the tap's number, the new best, and the new winner (taps come in
increasing order, so a winner only grows: the larger of the old winner and flag * number). A NaN never beats
anything there; it still reaches y through ``maximum``, and only for blocks whose y holds a NaN does a second loop
give such windows their last NaN tap (PyTorch's rule). The backward routes gy to the winning taps; where the
windows tile x exactly (stride = kernel, no padding, the sizes divisible: U-Net's 2x2 pooling), each tap writes
its part of gx directly, with no zero fill and no additions.

Both walk the batch in cache-sized blocks of images (fast/blocks.py), so y, tap and the flags of a block stay in
cache across its taps, and with ``set_num_threads(n)`` n threads take slices of the batch (fast/workspace.py).
"""

import numpy as np

from ...backend import get_array_module
from .. import pool as taught
from . import cuda_fused
from .blocks import over_blocks
from .workspace import scratch


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
        xp = get_array_module(gy)
        (KH, KW), stride, padding, (OH, OW) = self.geometry
        tiled = stride == (KH, KW) and padding == (0, 0) and tuple(self.x_shape[2:]) == (OH * KH, OW * KW)
        gx = (xp.empty if tiled else xp.zeros)(self.x_shape, dtype=gy.dtype)
        flag = xp.empty(0, dtype=bool)  # names the dtype of the "won" scratch buffer

        def block(n0, n1):  # ops/pool.py's loop over the taps, for images n0..n1-1
            g, tap, into = gy[n0:n1], self.tap[n0:n1], gx[n0:n1]
            won = scratch(flag, "max_pool_won", tap.shape)
            part = scratch(gy, "max_pool_part", tap.shape)
            for i, j, out, inp in self.taps:
                xp.equal(tap[out], i * KW + j, out=won[out])
                if tiled:  # every cell of x is in one window: this tap's share of gx is its whole value
                    xp.multiply(g[out], won[out], out=into[inp])
                else:  # within one tap distinct outputs read distinct inputs, so `+=` never collides
                    into[inp] += xp.multiply(g[out], won[out], out=part[out])

        over_blocks(block, gx, 1)
        return gx


def _max_running(x, f, kernel, stride, padding, out_size):
    """(y, tap) from a running max over the clipped tap slices ``f.taps`` (no padded copy, no stack)."""
    xp = get_array_module(x)
    (N, C), (KH, KW), (OH, OW) = x.shape[:2], kernel, out_size
    # Start each window at its first real cell with value -inf: that cell wins unless something beats it,
    # which is what PyTorch's loop does (it matters only for windows full of -inf).
    corner = (xp.maximum(-f.top, 0) * KW)[:, None] + xp.maximum(-f.left, 0)[None, :]
    first = corner.astype(np.min_scalar_type(KH * KW - 1))
    y, tap = xp.empty((N, C, OH, OW), dtype=x.dtype), xp.empty((N, C, OH, OW), dtype=first.dtype)
    with_nan = []  # the (n0, n1) of blocks whose y holds a NaN

    def block(n0, n1):  # images n0..n1-1; basic slices are views, so the updates below write into y and tap
        image, best, winner = x[n0:n1], y[n0:n1], tap[n0:n1]
        best.fill(-xp.inf)
        winner[...] = first
        better = scratch(tap, "max_pool_better", winner.shape)
        for i, j, out, inp in f.taps:
            beats = xp.greater(image[inp], best[out], out=better[out])  # 1 where strictly larger, as a number
            beats *= tap.dtype.type(i * KW + j)  # this tap's number where it wins, else 0
            xp.maximum(best[out], image[inp], out=best[out])
            xp.maximum(winner[out], beats, out=winner[out])
        # A NaN reached y (or y sums inf - inf, and the loop below finds no NaN). On CuPy: every block, unasked,
        # since asking would read y back to the host.
        if xp is not np or np.isnan(best.sum()):
            with_nan.append((n0, n1))

    over_blocks(block, x, 1)
    for n0, n1 in with_nan:  # a NaN wins its window, the last one if several
        for i, j, out, inp in f.taps:
            xp.copyto(tap[n0:n1][out], tap.dtype.type(i * KW + j), where=xp.isnan(x[n0:n1][inp]))
    return y, tap
