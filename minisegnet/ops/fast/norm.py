"""Fast batch normalisation: ops/norm.py's formulas in fewer trips through memory, on threads, or one CUDA kernel.

``BatchNorm`` here is ops/norm.py's with another ``forward`` and ``backward`` that return the same arrays
(the tests compare the two in float64). On CuPy in training, each is one CUDA kernel (fast/cuda_fused.py).
Elsewhere, with d = x - mu and s = 1/sqrt(var + eps) per channel, and sums over the M values of one
channel (N*H*W of them), what differs from ops/norm.py:

- x is read as its N*C planes (rows), in cache-sized blocks of rows (fast/blocks.py): the NumPy calls of one
  round run one after the other on a block while it is in cache, so a round reads x (and gy) from main
  memory once and writes its output once, however many calls it makes.
- Forward, training: one round gives each plane's sum and its sum of squared deviations from the plane's own
  mean; the planes of a channel combine into the channel's mean and variance exactly (``_statistics``), so the
  mean and the variance need one round, not two. A second round writes y = d * (weight * s) + bias.
  Eval: that second round alone, with the running statistics.
- xhat = d * s is never stored. Backward recomputes d from the input x, which the graph keeps alive
  anyway, so each layer holds one activation-sized array less.
- The backward's gx = weight * s * (gy - gb/M - xhat * gW/M) is regrouped per channel as
  gy * (weight * s) + d * (-weight * s^3 * S/M) + (-weight * s * gb/M) with S = sum(gy * d), gW = s * S:
  one round for gb and S, one for gx.
- The per-plane sums of products are dot products (BLAS: faster than ``(a * b).sum(axes)``, which writes
  the product out first, and as accurate in float32).
- With ``set_num_threads(n)`` n threads take slices of the batch (fast/workspace.py): NumPy releases the GIL
  in these loops, and one core cannot use the memory bandwidth of two.
"""

from ...backend import get_array_module
from .. import norm as taught
from . import cuda_fused
from .blocks import as_rows, over_blocks
from .workspace import scratch


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
        x = xp.ascontiguousarray(x)
        N, C = x.shape[:2]
        X, y = as_rows(x, C), xp.empty(x.shape, dtype=x.dtype)
        if self.training:
            mean, var = _statistics(X, x, N, C)
            self.update_running(mean, var)
        else:
            mean, var = self.running_mean.astype(x.dtype), self.running_var.astype(x.dtype)
        inv_std = (1.0 / xp.sqrt(var + self.eps)).astype(x.dtype, copy=False)
        scale = inv_std if weight is None else inv_std * weight
        mean_rows, scale_rows = _per_row(mean, N), _per_row(scale, N)
        bias_rows = None if bias is None else _per_row(bias.astype(x.dtype, copy=False), N)
        Y = as_rows(y, C)

        def affine(r0, r1):  # y = (x - mean) * scale + bias, three calls on one block in cache
            out = xp.subtract(X[r0:r1], mean_rows[r0:r1], out=Y[r0:r1])
            out *= scale_rows[r0:r1]
            if bias_rows is not None:
                out += bias_rows[r0:r1]

        over_blocks(affine, x, C)
        self.x, self.mean, self.inv_std, self.weight = x, mean.astype(x.dtype, copy=False), inv_std, weight
        return y

    def _backward(self, gy):
        """(gx, gW, gb) for the upstream gradient gy (N, C, ...), from what ``_forward`` kept."""
        xp = get_array_module(gy)
        gy = xp.ascontiguousarray(gy)
        s, M, (N, C) = self.inv_std, self.M, gy.shape[:2]
        G, X, gx = as_rows(gy, C), as_rows(self.x, C), xp.empty(gy.shape, dtype=gy.dtype)
        GX, mean_rows = as_rows(gx, C), _per_row(self.mean, N)

        def centred(r0, r1):  # d = x - mean for rows r0..r1-1, in the calling thread's scratch buffer
            d = scratch(gy, "batch_norm", (r1 - r0, G.shape[1]))
            return xp.subtract(X[r0:r1], mean_rows[r0:r1], out=d)

        sums = xp.empty((2, N * C), dtype=gy.dtype)  # per (n, c) plane: sum(gy), sum(gy * d)

        def plane_sums(r0, r1):
            G[r0:r1].sum(axis=1, out=sums[0, r0:r1])
            sums[1, r0:r1] = _row_dots(G[r0:r1], centred(r0, r1))

        over_blocks(plane_sums, gy, C)
        gb, S = sums.reshape(2, N, C).sum(axis=1)
        gW = s * S
        scale = s if self.weight is None else s * self.weight
        scale_rows = _per_row(scale, N)
        if self.training:
            k_d, k_0 = _per_row(-scale * s * s * S / M, N), _per_row(-scale * gb / M, N)

        def grad(r0, r1):  # gx = gy * scale (+ d * k_d + k_0 in training), all on one block in cache
            out = xp.multiply(G[r0:r1], scale_rows[r0:r1], out=GX[r0:r1])
            if self.training:
                d = centred(r0, r1)
                d *= k_d[r0:r1]
                d += k_0[r0:r1]
                out += d

        over_blocks(grad, gy, C)
        return gx, gW, gb


def _statistics(X, x, N, C):
    """The per-channel mean and biased variance of x (N, C, ...), from its planes X (N*C, S) in one round of blocks.

    Each plane gets its own sum and its own sum of squared deviations from its own mean (two passes over a block
    in cache), and the planes of a channel are then combined exactly (Chan, Golub and LeVeque):
    M var = sum over planes of [ss_plane + S (mean_plane - mean)^2], with no cancellation, as a two-pass variance.
    """
    xp = get_array_module(X)
    S = X.shape[1]
    sums, squares = xp.empty(N * C, dtype=X.dtype), xp.empty(N * C, dtype=X.dtype)

    def plane_stats(r0, r1):
        X[r0:r1].sum(axis=1, out=sums[r0:r1])
        d = scratch(X, "batch_norm", (r1 - r0, S))
        xp.subtract(X[r0:r1], (sums[r0:r1] / S)[:, None], out=d)
        squares[r0:r1] = _row_dots(d, d)

    over_blocks(plane_stats, x, C)
    plane_means = sums.reshape(N, C) / S
    mean = plane_means.mean(axis=0)
    spread = plane_means - mean
    var = (squares.reshape(N, C).sum(axis=0) + S * (spread * spread).sum(axis=0)) / (N * S)
    return mean, var


def _per_row(v, N):
    """(N*C, 1): the per-channel v (C,) repeated for each of the N images, one value per row of ``as_rows``."""
    return get_array_module(v).tile(v, N).reshape(-1, 1)


def _row_dots(a, b):
    """(R,): the dot product of each row of a (R, S) with the same row of b, one BLAS product per row."""
    return (a[:, None, :] @ b[:, :, None]).reshape(-1)
