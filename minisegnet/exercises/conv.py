"""Checks for the convolution exercises: im2col, col2im, conv2d's backward, the transposed convolution."""

import numpy as np

from .. import ops as F
from ..ops.im2col import col2im as lib_col2im
from ..ops.im2col import im2col as lib_im2col
from ..tensor import Tensor
from .feedback import check, compare, gradient_check, pair_of, run

# (x shape, kernel, stride, padding): overlapping windows, a stride that skips pixels, both with padding.
CASES = (((2, 3, 5, 6), 3, 1, 1), ((2, 2, 6, 7), 2, 2, 0), ((1, 3, 7, 6), 3, 2, 1))
ORDER = (
    "the rows are ordered (kernel row, kernel column, channel); they must be (channel, kernel row, kernel column), "
    "as in weight.reshape(OC, -1)"
)


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _case(shape, K, S, P):
    return f"x {shape}, kernel {K}, stride {S}, padding {P}"


def _rows_ickc(col, C, K):
    # The column rows reordered from (c, i, j) to (i, j, c): the usual mix-up of the row order.
    N, _, L = col.shape
    return col.reshape(N, C, K, K, L).transpose(0, 2, 3, 1, 4).reshape(N, C * K * K, L)


def _rows_from_ijc(col, C, K):
    # Reading rows as (i, j, c) when they are (c, i, j): the same mix-up, seen from col2im's side.
    N, _, L = col.shape
    return col.reshape(N, K, K, C, L).transpose(0, 3, 1, 2, 4).reshape(N, C * K * K, L)


def im2col(student):
    """Check ``student(x, kernel_size, stride, padding)`` -> col (N, C*K*K, OH*OW) against the library."""

    def body():
        for shape, K, S, P in CASES:
            x = _x(shape)
            N, C, H, W = shape
            expected = lib_im2col(x, K, S, P)
            got = run("im2col", student, x.copy(), K, S, P)
            OH, OW = (H + 2 * P - K) // S + 1, (W + 2 * P - K) // S + 1
            mistakes = [
                (
                    "axes",
                    "rows and columns are swapped: col is (N, C*K*K, OH*OW), one column per window",
                    (N, OH * OW, C * K * K),
                ),
                ("axes", ORDER, _rows_ickc(expected, C, K)),
                (
                    "axes",
                    "the windows are numbered column-major; window (oh, ow) belongs in column oh*OW + ow",
                    expected.reshape(N, -1, OH, OW).transpose(0, 1, 3, 2).reshape(expected.shape),
                ),
                ("padding", f"the padding is missing: pad x by {P} on every side first", lib_im2col(x, K, S, 0)),
                ("stride", f"the stride is ignored: windows start every {S} pixels", lib_im2col(x, K, 1, P)),
            ]
            compare("col", got, expected, mistakes, _case(shape, K, S, P))

    return check("im2col", body, "every window lands in its column in (channel, row, column) order")


def _col2im_overwriting(col, shape, K, S, P, per_window):
    # What col2im gives when a shared pixel keeps only the last entry written to it.
    N, C, H, W = shape
    OH, OW = (H + 2 * P - K) // S + 1, (W + 2 * P - K) // S + 1
    cols = col.reshape(N, C, K, K, OH, OW)
    xpad = np.zeros((N, C, H + 2 * P, W + 2 * P))
    if per_window:
        for oh in range(OH):
            for ow in range(OW):
                xpad[:, :, oh * S : oh * S + K, ow * S : ow * S + K] = cols[:, :, :, :, oh, ow]
    else:
        for i in range(K):
            for j in range(K):
                xpad[:, :, i : i + S * OH : S, j : j + S * OW : S] = cols[:, :, i, j]
    return xpad[:, :, P : P + H, P : P + W]


def col2im(student):
    """Check ``student(col, x_shape, kernel_size, stride, padding)`` -> x (N, C, H, W) against the library."""

    def body():
        for shape, K, S, P in CASES:
            N, C, H, W = shape
            col = _x(lib_im2col(_x(shape), K, S, P).shape, seed=1)
            expected = lib_col2im(col, shape, K, S, P)
            got = run("col2im", student, col.copy(), shape, K, S, P)
            overwrite = (
                "a pixel shared by overlapping windows keeps only the last value written: add with +=, do not assign"
            )
            mistakes = [
                ("overwrite", overwrite, _col2im_overwriting(col, shape, K, S, P, per_window=False)),
                ("overwrite", overwrite, _col2im_overwriting(col, shape, K, S, P, per_window=True)),
                (
                    "padding",
                    f"the padding is still there: crop {P} pixels from every side",
                    (N, C, H + 2 * P, W + 2 * P),
                ),
                ("axes", ORDER, lib_col2im(_rows_from_ijc(col, C, K), shape, K, S, P)),
            ]
            compare("x", got, expected, mistakes, _case(shape, K, S, P))

    return check("col2im", body, "overlapping entries add up and the padding is cropped")


def _conv_grads(x, W, gy, S, P):
    xt, Wt = Tensor(x, requires_grad=True), Tensor(W, requires_grad=True)
    F.conv2d(xt, Wt, None, S, P).backward(gy)
    return xt.grad, Wt.grad


def conv2d_backward(student):
    """Check ``student(x, weight, gy, stride, padding)`` -> (gx, gW) against autograd and central differences."""

    def body():
        for shape, K, S, P in CASES:
            N, C, H, Wd = shape
            x, W = _x(shape), _x((4, C, K, K), seed=2)
            gy = _x(F.conv2d(Tensor(x), Tensor(W), None, S, P).shape, seed=3)
            gx, gW = _conv_grads(x, W, gy, S, P)
            got = pair_of(
                "conv2d_backward", run("conv2d_backward", student, x.copy(), W.copy(), gy.copy(), S, P), "(gx, gW)"
            )
            flipped = np.ascontiguousarray(W[:, :, ::-1, ::-1])
            case = _case(shape, K, S, P)
            compare(
                "gW",
                got[1],
                gW,
                [
                    ("axes", "gW has the shape (C, OC, KH, KW): it must be weight's (OC, C, KH, KW)", (C, 4, K, K)),
                    (
                        "batch",
                        "gW is one image's gradient: sum the contributions of every image in the batch",
                        _conv_grads(x[:1], W, gy[:1], S, P)[1],
                    ),
                    (
                        "batch",
                        "gW is averaged over the batch: the loss's gradient sums over images, so do not divide by N",
                        gW / N,
                    ),
                    (
                        "flip",
                        "gW is flipped in space: gW[o, c, i, j] pairs gy[o] with x shifted by (i, j), no rotation",
                        gW[:, :, ::-1, ::-1],
                    ),
                ],
                case,
            )
            compare(
                "gx",
                got[0],
                gx,
                [
                    (
                        "flip",
                        "gx uses the kernel unrotated: gx is the full convolution of gy with the kernel rotated by 180 "
                        "degrees (or col2im of W2.T @ gy)",
                        _conv_grads(x, flipped, gy, S, P)[0],
                    ),
                    (
                        "padding",
                        f"gx still has the padding: crop {P} pixels from every side",
                        (N, C, H + 2 * P, Wd + 2 * P),
                    ),
                ],
                case,
            )
        S, P = CASES[2][2:]
        x, W = _x((1, 2, 5, 5)), _x((3, 2, 3, 3), seed=2)
        gradient_check(
            "conv2d_backward",
            lambda x, W: F.conv2d(Tensor(x), Tensor(W), None, S, P).data,
            lambda gy, x, W: student(x, W, gy, S, P),
            x,
            W,
        )

    return check("conv2d_backward", body, "gx and gW match autograd and central differences (gradcheck)")


def conv_transpose2d(student):
    """Check ``student(x, weight, stride, padding)`` with weight (C, OC, K, K) against the library and the adjoint."""
    report = {}

    def body():
        for (N, C, H, Wd), K, S, P in CASES:
            for OC in (C, 4):
                x, W = _x((N, C, H, Wd)), _x((C, OC, K, K), seed=2)
                expected = F.conv_transpose2d(Tensor(x), Tensor(W), None, S, P).data
                got = run("conv_transpose2d", student, x.copy(), W.copy(), S, P)
                OH, OW = (H - 1) * S - 2 * P + K, (Wd - 1) * S - 2 * P + K
                swapped = np.ascontiguousarray(W.transpose(1, 0, 2, 3))
                lib = lambda w, s=S, p=P, x=x: F.conv_transpose2d(Tensor(x), Tensor(w), None, s, p).data  # noqa: E731
                mistakes = [
                    (
                        "flip",
                        "the kernel is rotated by 180 degrees: the adjoint of conv2d uses the weight as it is",
                        lib(np.ascontiguousarray(W[:, :, ::-1, ::-1])),
                    ),
                    (
                        "axes",
                        "weight's axes are swapped: a transposed convolution's weight is (C_in, C_out, K, K)",
                        lib(swapped) if OC == C else (N, C, OH, OW),
                    ),
                    (
                        "padding",
                        f"the padding is not cropped: the output is (H-1)*S - 2*P + K = {OH} high",
                        (N, OC, OH + 2 * P, OW + 2 * P),
                    ),
                    ("stride", f"the stride is ignored: input pixels land {S} pixels apart", lib(W, 1)),
                ]
                compare("y", got, expected, mistakes, _case((N, C, H, Wd), K, S, P) + f", weight {W.shape}")
                z = _x(got.shape, seed=4)
                report["adjoint"] = (
                    float(np.sum(F.conv2d(Tensor(z), Tensor(W), None, S, P).data * x)),
                    float(np.sum(z * got)),
                )

    outcome = check("conv_transpose2d", body, "it matches the library")
    if outcome:
        a, b = report["adjoint"]
        print(f"  and it is conv2d's adjoint: <conv2d(z), x> = {a:.6f}, <z, yours(x)> = {b:.6f}")
    return outcome
