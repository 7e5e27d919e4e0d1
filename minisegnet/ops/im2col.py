"""im2col / col2im: the array plumbing that turns a convolution into one matrix product.

A convolution slides a KH x KW window over a padded image. ``im2col`` copies every window
into a column, so the convolution of a whole batch becomes one product
``weight (OC, C*KH*KW) @ col (C*KH*KW, N*OH*OW)``. It is written as a loop over the KH*KW
kernel *offsets*, not over the N*OH*OW windows: for a fixed offset (i, j), the pixels that
offset sees in all windows form one strided slice of the image, so each step is one array copy:

    col[c, i, j, n, oh, ow] = xpad[n, c, i*DH + oh*SH, j*DW + ow*SW]

``col2im`` is the adjoint (transpose) of ``im2col``: it sends every column entry back to the
pixel it was copied from, adding up where windows overlap (``+=`` on the same slices, never
``np.add.at``). Both run unchanged on NumPy and CuPy. On CuPy each of those copies is a kernel
launch (~10 us of host time, more than the copy itself at U-Net sizes), so there both functions
run one hand-written CUDA kernel instead, one thread per output value, with the same formula as
above (``_IM2COL_CUDA``; col2im gathers each pixel's entries). The generic loops stay the
reference: ``MINISEGNET_CUDA_KERNELS=0`` runs them on CuPy too, and the tests compare the two.

Output sizes (per dimension; ``conv_out_size`` and ``conv_transpose_out_size``):

    conv:        OH = floor((H + 2*PH - DH*(KH - 1) - 1) / SH) + 1
    transposed:  OH = (H - 1)*SH - 2*PH + DH*(KH - 1) + output_padding + 1
"""

import numbers

import numpy as np

from ..backend import as_strided, cuda_kernel, get_array_module
from .workspace import scratch


def pair(value, name):
    """``value`` as an (h, w) pair of ints: an int is used for both dimensions."""
    if type(value) is int:  # the common cases first: the generic checks below cost more than a conv of 8x8 pixels
        return value, value
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, numbers.Integral) for v in value):
        return int(value[0]), int(value[1])
    raise TypeError(f"{name} must be an int or a pair of ints (h, w), got {value!r}")


def _per_dim(f, *args):
    # Apply a one-dimension size formula to ints, or to (h, w) pairs dimension by dimension.
    if all(isinstance(a, numbers.Integral) for a in args):
        return f(*args)
    pairs = [pair(a, "size argument") for a in args]
    return tuple(f(*(p[d] for p in pairs)) for d in range(2))


def conv_out_size(size, kernel, stride=1, padding=0, dilation=1):
    """Output length of a convolution along one dimension, or an (OH, OW) pair from (H, W) pairs.

    ``floor((size + 2*padding - dilation*(kernel - 1) - 1) / stride) + 1``: the number of
    positions a window of dilated extent ``dilation*(kernel - 1) + 1`` takes, moving by
    ``stride``, inside the padded length.

        >>> conv_out_size(64, 3, padding=1), conv_out_size(7, 3, stride=2), conv_out_size((8, 9), (3, 2))
        (64, 3, (6, 8))
    """

    def one(n, k, s, p, d):
        return (n + 2 * p - d * (k - 1) - 1) // s + 1

    return _per_dim(one, size, kernel, stride, padding, dilation)


def conv_transpose_out_size(size, kernel, stride=1, padding=0, output_padding=0, dilation=1):
    """Output length of a transposed convolution along one dimension, or an (OH, OW) pair from (H, W).

    ``(size - 1)*stride - 2*padding + dilation*(kernel - 1) + output_padding + 1``: the
    largest input length a convolution with these arguments maps to ``size``, less the
    ``stride - 1 - output_padding`` lengths it would map to the same ``size`` too.

        >>> conv_transpose_out_size(16, 2, stride=2), conv_transpose_out_size(3, 3, 2, 1, output_padding=1)
        (32, 6)
    """

    def one(n, k, s, p, op, d):
        return (n - 1) * s - 2 * p + d * (k - 1) + op + 1

    return _per_dim(one, size, kernel, stride, padding, output_padding, dilation)


def _window(i, D, S, O):
    # The strided slice that kernel offset i reads for O output positions: i*D, i*D + S, ...
    return slice(i * D, i * D + S * (O - 1) + 1, S)


def _conv_args(kernel_size, stride, padding, dilation):
    names = ("kernel_size", "stride", "padding", "dilation")
    return [pair(v, name) for v, name in zip((kernel_size, stride, padding, dilation), names)]


# The CUDA kernels: arguments (input, sizes..., output). In CuPy's kernels ``i`` is the index of the
# output value a thread computes; b is the image, k = (c, ki, kj) the column row, m = (oh, ow).
_SIZES = (
    "int32 N, int32 C, int32 H, int32 W, int32 KH, int32 KW, int32 OH, int32 OW,"
    " int32 SH, int32 SW, int32 PH, int32 PW, int32 DH, int32 DW, int32 BF"
)
_IM2COL_CUDA = (
    "raw T x, " + _SIZES,
    "T col",
    """
    const long long L = (long long)OH * OW, K = (long long)C * KH * KW;
    long long b, k, m;
    if (BF) { m = i % L; k = (i / L) % K; b = i / (L * K); }        // col (N, K, L)
    else { k = i / (N * L); b = (i % (N * L)) / L; m = i % L; }     // col (K, N*L)
    const int oh = m / OW, ow = m % OW, ki = (k / KW) % KH, kj = k % KW;
    const long long c = k / ((long long)KH * KW);
    const int h = oh * SH + ki * DH - PH, w = ow * SW + kj * DW - PW;
    col = (h >= 0 && h < H && w >= 0 && w < W) ? x[((b * C + c) * H + h) * W + w] : (T)0;
    """,
    "minisegnet_im2col",
)
_COL2IM_CUDA = (
    "raw T col, " + _SIZES,
    "T gx",
    """
    const long long L = (long long)OH * OW, K = (long long)C * KH * KW;
    const int h = (i / W) % H, w = i % W;
    const long long c = (i / ((long long)H * W)) % C, b = i / ((long long)C * H * W);
    T sum = 0;
    for (int ki = 0; ki < KH; ki++) {
        const int th = h + PH - ki * DH;                              // = oh * SH for a window that reads h
        if (th < 0 || th % SH != 0 || th / SH >= OH) continue;
        for (int kj = 0; kj < KW; kj++) {
            const int tw = w + PW - kj * DW;
            if (tw < 0 || tw % SW != 0 || tw / SW >= OW) continue;
            const long long k = (c * KH + ki) * KW + kj, m = (long long)(th / SH) * OW + tw / SW;
            sum += col[BF ? (b * K + k) * L + m : k * (N * L) + b * L + m];
        }
    }
    gx = sum;
    """,
    "minisegnet_col2im",
)


def cuda_columns(xp):
    """True when ``im2col`` and ``col2im`` run their CUDA kernels for arrays of module ``xp``."""
    return cuda_kernel(xp, *_IM2COL_CUDA) is not None


def im2col(x, kernel_size, stride=1, padding=0, dilation=1, windows=None, batch_first=True, out=None):
    """Copy every convolution window of ``x`` into a column: x (N, C, H, W) -> col (N, C*KH*KW, OH*OW).

    Rows of a column are ordered (c, i, j), like ``weight.reshape(OC, -1)``, so ``W2 @ col[n]`` is
    image n's convolution (PyTorch's ``unfold`` layout). ``batch_first=False`` gives the same
    columns as one matrix (C*KH*KW, N*OH*OW), columns ordered (n, oh, ow): then ``W2 @ col`` is
    the whole batch in one product (conv2d uses this). ``windows`` = (OH, OW) takes only the first
    OH x OW window positions (default: all, ``conv_out_size``). ``out`` is an optional contiguous
    array of col's shape to fill, except where no copy is needed (a 1x1 kernel, stride 1, no
    padding, and one image or ``batch_first``): then col is a view of ``x``.
    """
    xp = get_array_module(x)
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = _conv_args(kernel_size, stride, padding, dilation)
    N, C, H, W = x.shape
    OH, OW = windows or conv_out_size((H, W), (KH, KW), (SH, SW), (PH, PW), (DH, DW))
    if (KH, KW, SH, SW, PH, PW, OH, OW) == (1, 1, 1, 1, 0, 0, H, W) and (batch_first or N == 1):
        return x.reshape(N, C, H * W) if batch_first else x.reshape(C, H * W)
    shape = (N, C * KH * KW, OH * OW) if batch_first else (C * KH * KW, N * OH * OW)
    col = xp.empty(shape, dtype=x.dtype) if out is None else out
    kernel = cuda_kernel(xp, *_IM2COL_CUDA)
    if kernel is not None:
        kernel(xp.ascontiguousarray(x), N, C, H, W, KH, KW, OH, OW, SH, SW, PH, PW, DH, DW, int(batch_first), col)
        return col
    if PH or PW:
        xpad = _zero_border(scratch(x, "pad", (N, C, H + 2 * PH, W + 2 * PW)), H, W, PH, PW)
        xpad[:, :, PH : PH + H, PW : PW + W] = x
    else:
        xpad = x
    for i in range(KH):
        for j in range(KW):
            _indexed(col, N, C, KH, KW, OH, OW, batch_first)[:, :, i, j] = xpad[
                :, :, _window(i, DH, SH, OH), _window(j, DW, SW, OW)
            ]
    return col


def _indexed(col, N, C, KH, KW, OH, OW, batch_first):
    # A view of col indexed [n, c, i, j, oh, ow] whichever its layout: writing into it fills col.
    if batch_first:
        return col.reshape(N, C, KH, KW, OH, OW)
    return col.reshape(C, KH, KW, N, OH, OW).transpose(3, 0, 1, 2, 4, 5)


def col2im(col, x_shape, kernel_size, stride=1, padding=0, dilation=1, windows=None, batch_first=True, out=None):
    """The adjoint of ``im2col``: add every column entry back onto the pixel it came from.

    col (N, C*KH*KW, OH*OW), or (C*KH*KW, N*OH*OW) with ``batch_first=False`` -> gx (N, C, H, W)
    with x_shape = (N, C, H, W). Pixels that several windows share receive the sum of their
    entries; pixels no window reaches get 0. ``windows`` = (OH, OW) as in ``im2col`` (default
    ``conv_out_size`` of H, W). ``out`` is an optional (N, C, H, W) array to write the result into.
    """
    xp = get_array_module(col)
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = _conv_args(kernel_size, stride, padding, dilation)
    N, C, H, W = x_shape
    OH, OW = windows or conv_out_size((H, W), (KH, KW), (SH, SW), (PH, PW), (DH, DW))
    kernel = cuda_kernel(xp, *_COL2IM_CUDA)
    if kernel is not None:
        gx = xp.empty(x_shape, dtype=col.dtype) if out is None else out
        kernel(xp.ascontiguousarray(col), N, C, H, W, KH, KW, OH, OW, SH, SW, PH, PW, DH, DW, int(batch_first), gx)
        return gx
    col6 = _indexed(col, N, C, KH, KW, OH, OW, batch_first)
    if (KH, KW, PH, PW, DH, DW) == (SH, SW, 0, 0, 1, 1) and (H, W) == (OH * KH, OW * KW):
        # The windows tile the image exactly (e.g. a 2x2 kernel with stride 2): no pixel is shared,
        # so col2im is only a reordering [n, c, i, j, oh, ow] -> [n, c, oh, i, ow, j], one copy.
        gx = col6.transpose(0, 1, 4, 2, 5, 3).reshape(N, C, H, W)
    else:
        gxpad = scratch(col, "pad", (N, C, H + 2 * PH, W + 2 * PW))
        gxpad.fill(0)
        for i in range(KH):
            for j in range(KW):
                gxpad[:, :, _window(i, DH, SH, OH), _window(j, DW, SW, OW)] += col6[:, :, i, j]
        gx = gxpad[:, :, PH : PH + H, PW : PW + W]
    if out is None:
        return gx.copy()  # a fresh array, never the scratch buffer itself (the next call reuses it)
    out[...] = gx
    return out


def shifted_im2col(x, kernel_size, padding=0, dilation=1, windows=None, out=None):
    """Stride-1 columns in whole padded rows: x (N, C, H, W) -> col (C*KH*KW, N*OH*WP), WP = W + 2*PW.

    With stride 1, kernel offset (i, j) sees the padded image shifted by i*DH rows and j*DW
    columns. Read row by row, a shift of a flat image is one contiguous run, so each column row
    is N contiguous copies instead of N*C*OH short strided ones:

        col[c, i, j, n, oh*WP + q] = xpad_flat[c, n, (oh + i*DH)*WP + j*DW + q],  q < WP

    Only the first OW of every WP values per output row are real windows; the other WP - OW
    straddle the edge into the next row (junk, zero-padded at the very end) and callers drop
    them. ``windows`` = (OH, OW) as in ``im2col``. ``out`` is an optional array of col's shape.
    Same column rows (c, i, j) as ``im2col(batch_first=False)``; conv.py uses this form for stride 1.
    """
    (KH, KW), _, (PH, PW), (DH, DW) = _conv_args(kernel_size, 1, padding, dilation)
    N, C, H, W = x.shape
    OH, OW = windows or conv_out_size((H, W), (KH, KW), 1, (PH, PW), (DH, DW))
    flat, xpad = _flat_padded(x, C, N, H, W, PH, PW, KW, DW)
    xpad[:, :, PH : PH + H, PW : PW + W] = x.transpose(1, 0, 2, 3)
    WP = W + 2 * PW
    L = OH * WP
    xp = get_array_module(x)
    col = xp.empty((C * KH * KW, N * L), x.dtype) if out is None else out
    # The KH*KW runs flat[:, :, i*DH*WP + j*DW :][:, :, :L] side by side, as one strided view of flat
    # (axes c, i, j, n, q): one copy instead of KH*KW, which matters when threads share the copies.
    sc, sn, sq = flat.strides
    runs = as_strided(flat, (C, KH, KW, N, L), (sc, DH * WP * sq, DW * sq, sn, sq))  # ends inside flat's slack
    col.reshape(C, KH, KW, N, L)[...] = runs
    return col


def shifted_col2im(col, x_shape, kernel_size, padding=0, dilation=1, windows=None, out=None):
    """The adjoint of ``shifted_im2col``: col (C*KH*KW, N*OH*WP) -> gx (N, C, H, W).

    The junk entries of col (the last WP - OW of each row of WP) must be zero: they land on real
    pixels. conv.py guarantees that by zeroing them in the output gradient before the product.
    """
    (KH, KW), _, (PH, PW), (DH, DW) = _conv_args(kernel_size, 1, padding, dilation)
    N, C, H, W = x_shape
    OH, OW = windows or conv_out_size((H, W), (KH, KW), 1, (PH, PW), (DH, DW))
    flat, gpad = _flat_padded(col, C, N, H, W, PH, PW, KW, DW, zero=False)
    WP = W + 2 * PW
    L = OH * WP
    col5 = col.reshape(C, KH, KW, N, L)
    flat[:, :, :L] = col5[:, 0, 0]  # offset (0, 0) covers the first L values: copy instead of zero + add
    flat[:, :, L:] = 0
    for i in range(KH):
        for j in range(KW):
            if i or j:
                flat[:, :, i * DH * WP + j * DW :][:, :, :L] += col5[:, i, j]
    gx = gpad[:, :, PH : PH + H, PW : PW + W].transpose(1, 0, 2, 3)
    if out is None:
        return gx.copy()  # a fresh array, never the scratch buffer itself
    out[...] = gx
    return out


def _flat_padded(like, C, N, H, W, PH, PW, KW, DW, zero=True):
    # A scratch buffer flat (C, N, HP*WP + slack) and its padded-image view (C, N, HP, WP), with
    # the border and the slack zeroed (nothing zeroed with zero=False). The slack of (KW - 1)*DW
    # values lets the last shifted run read past the final row.
    HP, WP = H + 2 * PH, W + 2 * PW
    flat = scratch(like, "pad", (C, N, HP * WP + (KW - 1) * DW))
    padded = flat[:, :, : HP * WP].reshape(C, N, HP, WP)
    if zero:
        _zero_border(padded, H, W, PH, PW)
        flat[:, :, HP * WP :] = 0
    return flat, padded


def _zero_border(padded, H, W, PH, PW):
    # Zero the PH rows and PW columns around the H x W inside of a reused padded buffer (..., HP, WP):
    # the inside is about to be overwritten, so only the border needs zeros. Returns the buffer.
    for border in (np.s_[..., :PH, :], np.s_[..., PH + H :, :], np.s_[..., :PW], np.s_[..., PW + W :]):
        padded[border] = 0
    return padded
