"""Fast im2col / col2im for the fast convolutions: scratch buffers, whole-row columns, CUDA kernels.

Same columns as the readable loops in ops/im2col.py (the tests compare them), built for speed:

- ``im2col`` / ``col2im`` pad into a scratch buffer reused from call to call (fast/workspace.py)
  instead of a fresh array, can write into a caller's ``out`` array, and skip work where the
  layout allows (a 1x1 kernel is a view; windows that tile the image make col2im one reorder).
- On CuPy each of the KH*KW slice copies is a kernel launch (~10 us of host time, more than the
  copy itself at U-Net sizes), so there both run one hand-written CUDA kernel instead, one
  thread per output value, with the formula of ops/im2col.py (``_IM2COL_CUDA``; col2im gathers
  each pixel's entries). ``MINISEGNET_CUDA_KERNELS=0`` turns them off (minisegnet/cuda.py).
- ``shifted_im2col`` / ``shifted_col2im``: for stride 1, columns in whole padded rows, so each
  kernel offset is one contiguous run per image (fast/conv.py uses them).
"""

import numpy as np

from ...backend import get_array_module
from ...cuda import cuda_kernel
from ..sizes import conv_geometry, window
from .workspace import scratch

# The CUDA kernels: arguments (input, sizes..., output). In CuPy's kernels ``i`` is the index of the
# output value a thread computes; b is the image, k = (c, ki, kj) the column row, m = (oh, ow).
_SIZES = (
    "int32 N, int32 C, int32 H, int32 Wd, int32 KH, int32 KW, int32 OH, int32 OW,"
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
    col = (h >= 0 && h < H && w >= 0 && w < Wd) ? x[((b * C + c) * H + h) * Wd + w] : (T)0;
    """,
    "minisegnet_im2col",
)
_COL2IM_CUDA = (
    "raw T col, " + _SIZES,
    "T gx",
    """
    const long long L = (long long)OH * OW, K = (long long)C * KH * KW;
    const int h = (i / Wd) % H, w = i % Wd;
    const long long c = (i / ((long long)H * Wd)) % C, b = i / ((long long)C * H * Wd);
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
    """``im2col.im2col`` fast: x (N, C, H, W) -> col (N, C*KH*KW, OH*OW), or (C*KH*KW, N*OH*OW).

    Same arguments and columns. ``out`` is an optional contiguous array of col's shape to fill,
    except where no copy is needed (a 1x1 kernel, stride 1, no padding, and one image or
    ``batch_first``): then col is a view of ``x``.
    """
    xp = get_array_module(x)
    N, C, H, Wd = x.shape
    (KH, KW), (SH, SW), (PH, PW), (DH, DW), (OH, OW) = conv_geometry(
        (H, Wd), kernel_size, stride, padding, dilation, windows
    )
    if (KH, KW, SH, SW, PH, PW, OH, OW) == (1, 1, 1, 1, 0, 0, H, Wd) and (batch_first or N == 1):
        return x.reshape(N, C, H * Wd) if batch_first else x.reshape(C, H * Wd)
    shape = (N, C * KH * KW, OH * OW) if batch_first else (C * KH * KW, N * OH * OW)
    col = xp.empty(shape, dtype=x.dtype) if out is None else out
    kernel = cuda_kernel(xp, *_IM2COL_CUDA)
    if kernel is not None:
        kernel(xp.ascontiguousarray(x), N, C, H, Wd, KH, KW, OH, OW, SH, SW, PH, PW, DH, DW, int(batch_first), col)
        return col
    if PH or PW:
        xpad = _zero_border(scratch(x, "pad", (N, C, H + 2 * PH, Wd + 2 * PW)), H, Wd, PH, PW)
        xpad[:, :, PH : PH + H, PW : PW + Wd] = x
    else:
        xpad = x
    for i in range(KH):
        for j in range(KW):
            _indexed(col, N, C, KH, KW, OH, OW, batch_first)[:, :, i, j] = xpad[
                :, :, window(i, DH, SH, OH), window(j, DW, SW, OW)
            ]
    return col


def _indexed(col, N, C, KH, KW, OH, OW, batch_first):
    # A view of col indexed [n, c, i, j, oh, ow] whichever its layout: writing into it fills col.
    if batch_first:
        return col.reshape(N, C, KH, KW, OH, OW)
    return col.reshape(C, KH, KW, N, OH, OW).transpose(3, 0, 1, 2, 4, 5)


def col2im(col, x_shape, kernel_size, stride=1, padding=0, dilation=1, windows=None, batch_first=True, out=None):
    """``im2col.col2im`` fast: col (N, C*KH*KW, OH*OW) or (C*KH*KW, N*OH*OW) -> gx (N, C, H, W).

    Same arguments and result; ``out`` is an optional (N, C, H, W) array to write the result into.
    """
    xp = get_array_module(col)
    N, C, H, Wd = x_shape
    (KH, KW), (SH, SW), (PH, PW), (DH, DW), (OH, OW) = conv_geometry(
        (H, Wd), kernel_size, stride, padding, dilation, windows
    )
    kernel = cuda_kernel(xp, *_COL2IM_CUDA)
    if kernel is not None:
        gx = xp.empty(x_shape, dtype=col.dtype) if out is None else out
        kernel(xp.ascontiguousarray(col), N, C, H, Wd, KH, KW, OH, OW, SH, SW, PH, PW, DH, DW, int(batch_first), gx)
        return gx
    col6 = _indexed(col, N, C, KH, KW, OH, OW, batch_first)
    if (KH, KW, PH, PW, DH, DW) == (SH, SW, 0, 0, 1, 1) and (H, Wd) == (OH * KH, OW * KW):
        # The windows tile the image exactly (e.g. a 2x2 kernel with stride 2): no pixel is shared,
        # so col2im is only a reordering [n, c, i, j, oh, ow] -> [n, c, oh, i, ow, j], one copy.
        gx = col6.transpose(0, 1, 4, 2, 5, 3).reshape(N, C, H, Wd)
    else:
        gxpad = scratch(col, "pad", (N, C, H + 2 * PH, Wd + 2 * PW))
        gxpad.fill(0)
        for i in range(KH):
            for j in range(KW):
                gxpad[:, :, window(i, DH, SH, OH), window(j, DW, SW, OW)] += col6[:, :, i, j]
        gx = gxpad[:, :, PH : PH + H, PW : PW + Wd]
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
    Same column rows (c, i, j) as ``im2col(batch_first=False)``; fast/conv.py uses this form for stride 1.
    """
    runs = shifted_runs(x, kernel_size, padding, dilation, windows)
    C, KH, KW, N, L = runs.shape
    xp = get_array_module(x)
    col = xp.empty((C * KH * KW, N * L), x.dtype) if out is None else out
    col.reshape(C, KH, KW, N, L)[...] = runs  # one copy instead of KH*KW, which matters when threads share copies
    return col


def shifted_runs(x, kernel_size, padding=0, dilation=1, windows=None):
    """The columns of ``shifted_im2col`` before they are copied: a strided view runs (C, KH, KW, N, OH*WP).

    runs[c, i, j, n] is the run flat[c, n, i*DH*WP + j*DW :][:OH*WP] of a padded copy of x in a scratch
    buffer (valid until the next call on this thread). A range of runs[..., r0*WP : r1*WP] is the
    columns of output rows r0..r1-1 alone (fast/conv.py builds those of a large image band by band).
    """
    N, C, H, Wd = x.shape
    (KH, KW), _, (PH, PW), (DH, DW), (OH, OW) = conv_geometry((H, Wd), kernel_size, 1, padding, dilation, windows)
    flat, xpad = _flat_padded(x, C, N, H, Wd, PH, PW, KW, DW)
    xpad[:, :, PH : PH + H, PW : PW + Wd] = x.transpose(1, 0, 2, 3)
    WP = Wd + 2 * PW
    sc, sn, sq = flat.strides
    return _as_strided(flat, (C, KH, KW, N, OH * WP), (sc, DH * WP * sq, DW * sq, sn, sq))  # ends inside the slack


def shifted_col2im(col, x_shape, kernel_size, padding=0, dilation=1, windows=None, out=None):
    """The adjoint of ``shifted_im2col``: col (C*KH*KW, N*OH*WP) -> gx (N, C, H, W).

    The junk entries of col (the last WP - OW of each row of WP) must be zero: they land on real
    pixels. fast/conv.py guarantees that by zeroing them in the output gradient before the product.
    """
    N, C, H, Wd = x_shape
    (KH, KW), _, (PH, PW), (DH, DW), (OH, OW) = conv_geometry((H, Wd), kernel_size, 1, padding, dilation, windows)
    flat, gpad = _flat_padded(col, C, N, H, Wd, PH, PW, KW, DW, zero=False)
    WP = Wd + 2 * PW
    L = OH * WP
    col5 = col.reshape(C, KH, KW, N, L)
    flat[:, :, :L] = col5[:, 0, 0]  # offset (0, 0) covers the first L values: copy instead of zero + add
    flat[:, :, L:] = 0
    for i in range(KH):
        for j in range(KW):
            if i or j:
                flat[:, :, i * DH * WP + j * DW :][:, :, :L] += col5[:, i, j]
    gx = gpad[:, :, PH : PH + H, PW : PW + Wd].transpose(1, 0, 2, 3)
    if out is None:
        return gx.copy()  # a fresh array, never the scratch buffer itself
    out[...] = gx
    return out


def _flat_padded(like, C, N, H, Wd, PH, PW, KW, DW, zero=True):
    # A scratch buffer flat (C, N, HP*WP + slack) and its padded-image view (C, N, HP, WP), with
    # the border and the slack zeroed (nothing zeroed with zero=False). The slack of (KW - 1)*DW
    # values lets the last shifted run read past the final row.
    HP, WP = H + 2 * PH, Wd + 2 * PW
    flat = scratch(like, "pad", (C, N, HP * WP + (KW - 1) * DW))
    padded = flat[:, :, : HP * WP].reshape(C, N, HP, WP)
    if zero:
        _zero_border(padded, H, Wd, PH, PW)
        flat[:, :, HP * WP :] = 0
    return flat, padded


def _zero_border(padded, H, Wd, PH, PW):
    # Zero the PH rows and PW columns around the H x W inside of a reused padded buffer (..., HP, WP):
    # the inside is about to be overwritten, so only the border needs zeros. Returns the buffer.
    for border in (np.s_[..., :PH, :], np.s_[..., PH + H :, :], np.s_[..., :PW], np.s_[..., PW + Wd :]):
        padded[border] = 0
    return padded


def _as_strided(a, shape, strides):
    # A read-only view of a with the given shape and byte strides (NumPy's or CuPy's as_strided). Nothing is
    # checked: every index of the view must land inside a.
    xp = get_array_module(a)
    if xp is np:
        return np.lib.stride_tricks.as_strided(a, shape, strides, writeable=False)
    return xp.lib.stride_tricks.as_strided(a, shape, strides)
