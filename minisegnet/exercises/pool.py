"""Checks for the max-pooling exercises: the forward pass with its indices, and the backward pass."""

import numpy as np

from .. import ops as F
from ..tensor import Tensor
from .feedback import Wrong, check, compare, gradient_check, pair_of, run

# (x shape, kernel, stride): windows side by side, then overlapping windows that can share a maximum.
CASES = (((2, 3, 6, 8), 2, 2), ((2, 3, 7, 7), 3, 2))


def _x(shape, seed=0, ties=True):
    x = np.random.default_rng(seed).standard_normal(shape)
    x[:, :, 2, 2] = 5.0  # with 3x3 windows at stride 2, pixel (2, 2) is the maximum of four windows
    if not ties:  # central differences need a maximum that a small step does not change
        return x
    # Ties, where the first maximum in row-major window order must win: two in one row, one across a diagonal
    # (row-major and column-major order disagree there), and a window of equal values (as after a ReLU).
    x[:, :, 0, 4] = x[:, :, 0, 5] = 4.0
    x[:, :, 4, 5] = x[:, :, 5, 4] = 4.5
    x[:, :, 4:6, 0:2] = -6.0
    return x


def _tie_winner(x, K, S, last=False, by_columns=False):
    # The flat h*W + w index of each window's maximum when a tie goes to the last one in row-major order (`>=` in
    # a loop) or to the first one in column-major order (a loop over columns outside rows): the two usual mistakes.
    N, C, H, W = x.shape
    OH, OW = (H - K) // S + 1, (W - K) // S + 1
    idx = np.empty((N, C, OH, OW), dtype=np.int64)
    for oh in range(OH):
        for ow in range(OW):
            window = x[:, :, oh * S : oh * S + K, ow * S : ow * S + K]
            flat = (window.transpose(0, 1, 3, 2) if by_columns else window).reshape(N, C, K * K)
            k = K * K - 1 - flat[:, :, ::-1].argmax(axis=2) if last else flat.argmax(axis=2)
            i, j = (k % K, k // K) if by_columns else (k // K, k % K)
            idx[:, :, oh, ow] = (oh * S + i) * W + ow * S + j
    return idx


def _library(x, K, S):
    y, idx = F.max_pool2d(Tensor(x), K, S, return_indices=True)
    return y.data, idx.data


def max_pool2d(student):
    """Check ``student(x, kernel_size, stride)`` -> (y, indices), indices the flat h*W + w in each (n, c) plane."""

    def body():
        for shape, K, S in CASES:
            N, C, H, W = shape
            x = _x(shape)
            y, idx = _library(x, K, S)
            got_y, got_idx = pair_of("max_pool2d", run("max_pool2d", student, x.copy(), K, S))
            case = f"x {shape}, kernel {K}, stride {S}"
            average = F.avg_pool2d(Tensor(x), K, S).data
            compare(
                "y",
                got_y,
                y,
                [("average", "y is the window's mean: max pooling keeps the largest value", average)],
                case,
            )
            h, w = idx // W, idx % W
            OH, OW = y.shape[2:]
            local = (h - S * np.arange(OH)[:, None]) * K + (w - S * np.arange(OW)[None, :])
            plane = np.arange(N * C).reshape(N, C, 1, 1) * H * W
            compare(
                "indices",
                got_idx,
                idx,
                [
                    (
                        "local",
                        "the indices count inside each window (i*K + j): give the position in the whole plane, h*W + w",
                        local,
                    ),
                    ("axes", "the indices are w*H + h: rows first, h*W + w", w * H + h),
                    (
                        "plane",
                        "the indices count over the whole batch: count within each (n, c) plane, from 0 to H*W - 1",
                        idx + plane,
                    ),
                    (
                        "tie",
                        "on a tie the last maximum won: keep the first in row-major window order "
                        "(np.argmax does; in a loop, replace only on a strictly larger value)",
                        _tie_winner(x, K, S, last=True),
                    ),
                    (
                        "tie",
                        "on a tie the first maximum in column-major order won: scan each window row by row, "
                        "the first maximum in row-major order wins",
                        _tie_winner(x, K, S, by_columns=True),
                    ),
                ],
                case,
            )
            if got_idx.dtype.kind not in "iu":
                raise Wrong(
                    "dtype", f"indices are {got_idx.dtype}: make them integers, e.g. .astype(np.int64) ({case})"
                )

    return check("max_pool2d", body, "y and the indices of every maximum match the library")


def max_pool2d_backward(student):
    """Check ``student(gy, indices, x_shape)`` -> gx against autograd and central differences."""

    def body():
        for shape, K, S in CASES:
            N, C, H, W = shape
            x = _x(shape)
            _, idx = _library(x, K, S)
            xt = Tensor(x, requires_grad=True)
            gy = np.random.default_rng(1).standard_normal(idx.shape)
            F.max_pool2d(xt, K, S).backward(gy)
            got = run("max_pool2d_backward", student, gy.copy(), idx.copy(), shape)
            last = np.zeros((N, C, H * W))
            for n in range(N):
                for c in range(C):
                    last[n, c][idx[n, c].ravel()] = gy[n, c].ravel()  # assignment: a repeated index keeps one value
            first = np.zeros(N * C * H * W)
            np.add.at(first, idx.ravel(), gy.ravel())
            compare(
                "gx",
                got,
                xt.grad,
                [
                    (
                        "overwrite",
                        "where one pixel is the maximum of several windows its gradients must add up "
                        "(np.add.at or +=), not overwrite each other",
                        last.reshape(shape),
                    ),
                    (
                        "plane",
                        "every gradient landed in the first (n, c) plane: the indices count within each plane, "
                        "so offset them by (n*C + c)*H*W",
                        first.reshape(shape),
                    ),
                    ("reshape", f"gx is still flat (N, C, H*W): reshape it to x_shape {shape}", (N, C, H * W)),
                ],
                f"x {shape}, kernel {K}, stride {S}",
            )
        shape, K, S = CASES[1]
        x = _x((1, 2, 7, 7), ties=False)
        gradient_check(
            "max_pool2d_backward",
            lambda x: F.max_pool2d(Tensor(x), K, S).data,
            lambda gy, x: student(gy, _library(x, K, S)[1], x.shape),
            x,
        )

    return check("max_pool2d_backward", body, "each window's gradient reaches its maximum, shared maxima add up")
