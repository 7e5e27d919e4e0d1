"""Pooling: max_pool2d (with PyTorch's argmax indices), avg_pool2d, and max_unpool2d that puts values back.

Every pooling op here is a loop over the KH*KW *taps* of the window: tap (i, j) sees, for every output
position (oh, ow), the input element (oh*SH - PH + i, ow*SW - PW + j). One tap is one strided slice of the
input, so a whole pooling layer is KH*KW vectorised slice operations and the same code runs on NumPy and CuPy.
Instead of padding the input, each tap is clipped to the output positions whose input element lies inside
the image (``_tap``), so padded cells are simply never looked at.
"""

import numpy as np

from ..backend import get_array_module
from ..tensor import Function, Tensor, as_tensor
from .sizes import conv_out_size, conv_transpose_out_size, pair, window


def _check_4d(x, op):
    if x.ndim != 4:
        raise ValueError(f"{op} expects x of shape (N, C, H, W), got shape {tuple(x.shape)} ({x.ndim} dimensions)")


def _pool_geometry(x, kernel_size, stride, padding, op):
    """Check the arguments of a pooling op and return (KH, KW), (SH, SW), (PH, PW), (OH, OW).

    OH = (H + 2*PH - KH) // SH + 1 and the same for OW (PyTorch's ceil_mode=False).
    """
    _check_4d(x, op)
    KH, KW = pair(kernel_size, "kernel_size", op)
    SH, SW = (KH, KW) if stride is None else pair(stride, "stride", op)
    PH, PW = pair(padding, "padding", op)
    if KH <= 0 or KW <= 0:
        raise ValueError(f"{op}: kernel_size must be positive, got ({KH}, {KW})")
    if SH <= 0 or SW <= 0:
        raise ValueError(f"{op}: stride must be positive, got ({SH}, {SW})")
    if PH < 0 or PW < 0:
        raise ValueError(f"{op}: padding must be non-negative, got ({PH}, {PW})")
    if 2 * PH > KH or 2 * PW > KW:
        # PyTorch's rule: otherwise a window could lie entirely in the padding.
        raise ValueError(f"{op}: padding ({PH}, {PW}) must be at most half of kernel_size ({KH}, {KW})")
    H, Wd = x.shape[2:]
    if KH > H + 2 * PH or KW > Wd + 2 * PW:
        raise ValueError(
            f"{op}: kernel_size ({KH}, {KW}) is larger than the padded input ({H + 2 * PH}, {Wd + 2 * PW}) "
            f"= input ({H}, {Wd}) + 2 * padding ({PH}, {PW})"
        )
    OH, OW = conv_out_size((H, Wd), (KH, KW), (SH, SW), (PH, PW))
    return (KH, KW), (SH, SW), (PH, PW), (OH, OW)


def _tap(k, S, P, n_in, n_out):
    """Along one axis, kernel tap ``k`` maps output o to input o*S - P + k.

    Returns (out_slice, in_slice): the outputs whose input lies in [0, n_in) and the strided slice of the
    inputs they read, or None when the tap only ever sees padding.
    """
    lo = max(0, -((k - P) // S))  # first o with o*S - P + k >= 0 (a ceiling division)
    hi = min(n_out, (n_in - 1 + P - k) // S + 1)  # one past the last o with o*S - P + k <= n_in - 1
    if hi <= lo:
        return None
    start = lo * S - P + k
    return slice(lo, hi), slice(start, start + (hi - lo - 1) * S + 1, S)


def _taps(kernel, stride, padding, in_size, out_size):
    """Yield (i, j, out_index, in_index) for every kernel tap that sees at least one real input element."""
    (KH, KW), (SH, SW), (PH, PW), (H, Wd), (OH, OW) = kernel, stride, padding, in_size, out_size
    for i in range(KH):
        rows = _tap(i, SH, PH, H, OH)
        for j in range(KW):
            cols = _tap(j, SW, PW, Wd, OW)
            if rows is not None and cols is not None:
                yield i, j, (Ellipsis, rows[0], cols[0]), (Ellipsis, rows[1], cols[1])


class MaxPool2d(Function):
    """y = max over each window; the gradient goes to the one element the argmax picked.

    ``self.tap`` (N, C, OH, OW) remembers which tap won each window, i*KW + j, in the smallest unsigned
    dtype; ``indices()`` turns it into PyTorch's flat index h*Wd + w within each (n, c) input plane. The
    forward takes the max and argmax over the stack of all KH*KW taps (``_max_of_stack``). Ties go to the
    first maximum in row-major window order, as in PyTorch.
    """

    def __init__(self, kernel_size, stride, padding):
        self.args = kernel_size, stride, padding

    def forward(self, x):
        self.setup(x)
        y, self.tap = _max_of_stack(x, *self.geometry)
        return y

    def backward(self, gy):
        xp = get_array_module(gy)
        gx = xp.zeros(self.x_shape, dtype=gy.dtype)
        # Within one tap distinct outputs read distinct inputs, so `+=` on the strided slice never collides.
        for i, j, out, inp in self.taps:
            gx[inp] += gy[out] * (self.tap[out] == i * self.KW + j)
        return gx

    def setup(self, x):
        """Check x and keep what forward and backward share: the geometry, the clipped taps, the windows' corners."""
        xp = get_array_module(x)
        if x.dtype.kind != "f":
            raise TypeError(f"max_pool2d needs a floating x, got dtype {x.dtype}")
        kernel, stride, padding, (OH, OW) = self.geometry = _pool_geometry(x, *self.args, "max_pool2d")
        (SH, SW), (PH, PW) = stride, padding
        # top[oh], left[ow]: the window's first row and column, negative where it starts in the padding.
        self.top, self.left, self.x_shape, self.KW = (
            xp.arange(OH) * SH - PH,
            xp.arange(OW) * SW - PW,
            x.shape,
            kernel[1],
        )
        self.taps = list(_taps(kernel, stride, padding, x.shape[2:], (OH, OW)))

    def indices(self):
        """int64 (N, C, OH, OW): the flat index h*Wd + w of each window's winner in its (n, c) plane."""
        Wd, KW = self.x_shape[3], self.KW
        corner = self.top[:, None] * Wd + self.left[None, :]  # may point into the padding; a tap moves it inside
        tap = self.tap.astype(np.int64)
        return corner + (tap // KW) * Wd + tap % KW


def _max_of_stack(x, kernel, stride, padding, out_size):
    """(y, tap) from a max and an argmax over the stack of the KH*KW window taps.

    stack[i*KW + j, n, c, oh, ow] = xpad[n, c, oh*SH + i, ow*SW + j], the input padded with -inf.
    PyTorch's rules: ties go to the first maximum in window order, a window of -inf only is won by
    its first cell inside the image (never the padding), and a NaN wins, the last one if several.
    """
    xp = get_array_module(x)
    (KH, KW), (SH, SW), (PH, PW), (OH, OW) = kernel, stride, padding, out_size
    pad = ((0, 0), (0, 0), (PH, PH), (PW, PW))
    xpad = xp.pad(x, pad, constant_values=-xp.inf)
    inside = xp.pad(xp.ones((1, 1) + x.shape[2:], dtype=bool), pad)  # False in the padding

    def stack(a):  # (KH*KW, ..., OH, OW): tap (i, j) of every window
        return xp.stack([a[..., window(i, 1, SH, OH), window(j, 1, SW, OW)] for i in range(KH) for j in range(KW)])

    values, real = stack(xpad), stack(inside)
    y = values.max(axis=0)  # NaN propagates
    first = xp.argmax((values == y) & real, axis=0)  # the first maximum inside the image
    last_nan = KH * KW - 1 - xp.argmax(xp.isnan(values)[::-1], axis=0)
    tap = xp.where(xp.isnan(y), last_nan, first)
    return y, tap.astype(np.min_scalar_type(KH * KW - 1))


def max_pool2d(x, kernel_size, stride=None, padding=0, return_indices=False):
    """2-D max pooling, as ``torch.nn.functional.max_pool2d`` (ceil_mode=False, dilation 1).

    x (N, C, H, W) -> y (N, C, OH, OW) with OH = (H + 2*padding - kernel) // stride + 1 (same for OW).
    ``kernel_size``, ``stride`` (default: kernel_size) and ``padding`` are ints or (h, w) pairs; padding counts
    as -inf and may be at most half the kernel. The gradient goes to one element per window, the first maximum
    in row-major window order. With ``return_indices=True`` also returns int64 indices (N, C, OH, OW): the
    flat position h*Wd + w of each maximum in its (n, c) plane, as ``max_unpool2d`` expects.
    """
    f = MaxPool2d(kernel_size, stride, padding)
    y = f(x)
    # The indices are not a differentiable output, so they are made here rather than returned by forward.
    return (y, Tensor(f.indices())) if return_indices else y


class AvgPool2d(Function):
    """y = (sum of the window) / (KH*KW), padding counted as zeros (count_include_pad=True);
    gx spreads gy / (KH*KW) back over each window."""

    def __init__(self, kernel_size, stride, padding):
        self.args = kernel_size, stride, padding

    def forward(self, x):
        xp = get_array_module(x)
        if x.dtype.kind != "f":
            raise TypeError(f"avg_pool2d needs a floating x, got dtype {x.dtype}")
        (KH, KW), stride, padding, (OH, OW) = _pool_geometry(x, *self.args, "avg_pool2d")
        N, C, H, Wd = self.x_shape = x.shape
        self.taps, self.count = list(_taps((KH, KW), stride, padding, (H, Wd), (OH, OW))), KH * KW
        y = xp.zeros((N, C, OH, OW), dtype=x.dtype)
        for _, _, out, inp in self.taps:
            y[out] += x[inp]
        return y / self.count

    def backward(self, gy):
        xp = get_array_module(gy)
        gx = xp.zeros(self.x_shape, dtype=gy.dtype)
        g = gy / self.count
        for _, _, out, inp in self.taps:
            gx[inp] += g[out]
        return gx


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """2-D average pooling, as ``torch.nn.functional.avg_pool2d`` (count_include_pad=True, ceil_mode=False).

    x (N, C, H, W) -> y (N, C, OH, OW) with OH = (H + 2*padding - kernel) // stride + 1 (same for OW); every
    window is divided by KH*KW, padded zeros included. Arguments as for ``max_pool2d``.
    """
    return AvgPool2d(kernel_size, stride, padding)(x)


def _unpool_size(x, kernel_size, stride, padding, output_size):
    """PyTorch's output size for max_unpool2d: (H - 1)*S - 2P + K by default, or a checked ``output_size``."""
    op = "max_unpool2d"
    _check_4d(x, op)
    KH, KW = pair(kernel_size, "kernel_size", op)
    SH, SW = (KH, KW) if stride is None else pair(stride, "stride", op)
    PH, PW = pair(padding, "padding", op)
    if min(KH, KW, SH, SW) <= 0 or min(PH, PW) < 0:
        raise ValueError(
            f"{op}: kernel_size and stride must be positive and padding non-negative, got "
            f"kernel_size ({KH}, {KW}), stride ({SH}, {SW}), padding ({PH}, {PW})"
        )
    H, Wd = x.shape[2:]
    default = conv_transpose_out_size((H, Wd), (KH, KW), (SH, SW), (PH, PW))
    if output_size is None:
        size = default
    else:
        size = tuple(int(s) for s in output_size)
        size = size[2:] if len(size) == 4 else size  # PyTorch also accepts (N, C, H, W)
        if len(size) != 2:
            raise ValueError(f"{op}: output_size must be (H, W) or (N, C, H, W), got {tuple(output_size)}")
        for s, d, S, axis in zip(size, default, (SH, SW), "HW"):
            # Any size a max_pool2d with these arguments maps to x's size is allowed, and no other.
            if not d - S < s < d + S:
                raise ValueError(f"{op}: output_size {size}: {axis} must be strictly between {d - S} and {d + S}")
    if min(size) <= 0:
        raise ValueError(f"{op}: the output size {size} is not positive")
    return size


class MaxUnpool2d(Function):
    """y = zeros with y[n, c].flat[indices[n, c, h, w]] = x[n, c, h, w]; gx = gy gathered at the same indices.

    Forward scatters, backward gathers: each is the adjoint of the other.
    """

    def __init__(self, size):
        self.size = size

    def forward(self, x, indices):
        xp = get_array_module(x, indices)
        if indices.dtype.kind not in "iu":
            raise TypeError(f"max_unpool2d: indices must be integers, got dtype {indices.dtype}")
        if indices.shape != x.shape:
            raise ValueError(
                f"max_unpool2d: indices have shape {tuple(indices.shape)} but x has shape {tuple(x.shape)}; "
                "they must be equal"
            )
        N, C = x.shape[:2]
        OH, OW = self.size
        flat = indices.reshape(N * C, -1)
        if flat.size and (int(flat.min()) < 0 or int(flat.max()) >= OH * OW):
            bad = int(flat.min()) if int(flat.min()) < 0 else int(flat.max())
            raise ValueError(
                f"max_unpool2d: invalid index {bad}: indices must lie in [0, {OH * OW}) for an output plane of "
                f"size ({OH}, {OW})"
            )
        self.flat, self.x_shape = flat, x.shape
        y = xp.zeros((N * C, OH * OW), dtype=x.dtype)
        # Plain fancy assignment. Overlapping pooling windows can repeat an index; which value then lands there
        # is unspecified, as in PyTorch (whose loop runs in parallel). The backward gather is always exact.
        y[xp.arange(N * C)[:, None], flat] = x.reshape(N * C, -1)
        return y.reshape(N, C, OH, OW)

    def backward(self, gy):
        xp = get_array_module(gy)
        gx = xp.take_along_axis(gy.reshape(self.flat.shape[0], -1), self.flat, axis=1)
        return gx.reshape(self.x_shape), None


def max_unpool2d(x, indices, kernel_size, stride=None, padding=0, output_size=None):
    """The partial inverse of ``max_pool2d``, as ``torch.nn.functional.max_unpool2d`` (SegNet's upsampling).

    x (N, C, H, W) and the int indices (N, C, H, W) that ``max_pool2d(..., return_indices=True)`` returned ->
    y (N, C, OH, OW): zeros except each value of x put back where its window's maximum was. By default
    OH = (H - 1)*stride - 2*padding + kernel (same for OW); ``output_size`` (OH, OW) picks another size a
    max_pool2d could have come from, e.g. the odd size before pooling.
    """
    x, indices = as_tensor(x), as_tensor(indices)
    return MaxUnpool2d(_unpool_size(x, kernel_size, stride, padding, output_size))(x, indices)
