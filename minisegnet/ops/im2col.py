"""im2col / col2im: the array plumbing that turns a convolution into one matrix product.

A convolution slides a KH x KW window over a padded image. ``im2col`` copies every window
into a column, so the convolution becomes ``weight (OC, C*KH*KW) @ col (C*KH*KW, OH*OW)``.
It is written as a loop over the KH*KW kernel *offsets*, not over the OH*OW windows: for a
fixed offset (i, j), the pixels that offset sees in all windows form one strided slice of
the image, so each step is a single array copy:

    col[n, c, i, j, oh, ow] = xpad[n, c, i*DH + oh*SH, j*DW + ow*SW]

``col2im`` is the adjoint (transpose) of ``im2col``: it sends every column entry back to the
pixel it was copied from, adding up where windows overlap (``+=`` on the same slices, never
``np.add.at``). Both run unchanged on NumPy and CuPy.

Output sizes (per dimension; ``conv_out_size`` and ``conv_transpose_out_size``):

    conv:        OH = floor((H + 2*PH - DH*(KH - 1) - 1) / SH) + 1
    transposed:  OH = (H - 1)*SH - 2*PH + DH*(KH - 1) + output_padding + 1
"""

import numbers

from ..backend import get_array_module

# Convolutions work through the batch in chunks whose column matrix takes about this many bytes
# (at least one image per chunk). A small reused buffer stays in the CPU cache and avoids both the
# page faults of a fresh KH*KW-times-the-input allocation and holding it in memory.
CHUNK_BYTES = 4 << 20


def pair(value, name):
    """``value`` as an (h, w) pair of ints: an int is used for both dimensions."""
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


def im2col(x, kernel_size, stride=1, padding=0, dilation=1, windows=None, out=None):
    """Copy every convolution window of ``x`` into a column: (N, C, H, W) -> (N, C*KH*KW, OH*OW).

    x (N, C, H, W); the result col (N, C*KH*KW, OH*OW) is ordered (c, i, j) down a column and
    (oh, ow) along a row, so ``weight.reshape(OC, -1) @ col`` is the convolution. ``windows``
    = (OH, OW) takes only the first OH x OW window positions (default: all of them,
    ``conv_out_size``). ``out`` is an optional buffer of col's shape to fill, except that a 1x1
    kernel with stride 1 and no padding needs no copy: then the columns are ``x`` itself (a view).
    """
    xp = get_array_module(x)
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = _conv_args(kernel_size, stride, padding, dilation)
    N, C, H, W = x.shape
    OH, OW = windows or conv_out_size((H, W), (KH, KW), (SH, SW), (PH, PW), (DH, DW))
    if (KH, KW, SH, SW, PH, PW, OH, OW) == (1, 1, 1, 1, 0, 0, H, W):
        return x.reshape(N, C, H * W)
    if PH or PW:
        xpad = xp.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=x.dtype)
        xpad[:, :, PH : PH + H, PW : PW + W] = x
    else:
        xpad = x
    col = xp.empty((N, C * KH * KW, OH * OW), dtype=x.dtype) if out is None else out
    col6 = col.reshape(N, C, KH, KW, OH, OW)  # a view: writing into it fills col
    for i in range(KH):
        for j in range(KW):
            col6[:, :, i, j] = xpad[:, :, _window(i, DH, SH, OH), _window(j, DW, SW, OW)]
    return col


def col2im(col, x_shape, kernel_size, stride=1, padding=0, dilation=1, windows=None, out=None):
    """The adjoint of ``im2col``: add every column entry back onto the pixel it came from.

    col (N, C*KH*KW, OH*OW) -> gx (N, C, H, W) with x_shape = (N, C, H, W). Pixels that
    several windows share receive the sum of their entries; pixels no window reaches get 0.
    ``windows`` = (OH, OW) as in ``im2col`` (default ``conv_out_size`` of H, W). ``out`` is an
    optional (N, C, H, W) array to write the result into.
    """
    xp = get_array_module(col)
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = _conv_args(kernel_size, stride, padding, dilation)
    N, C, H, W = x_shape
    OH, OW = windows or conv_out_size((H, W), (KH, KW), (SH, SW), (PH, PW), (DH, DW))
    col6 = col.reshape(N, C, KH, KW, OH, OW)
    if (KH, KW, PH, PW, DH, DW) == (SH, SW, 0, 0, 1, 1) and (H, W) == (OH * KH, OW * KW):
        # The windows tile the image exactly (e.g. a 2x2 kernel with stride 2): no pixel is shared,
        # so col2im is only a reordering (n, c, i, j, oh, ow) -> (n, c, oh, i, ow, j), one copy.
        gx = col6.transpose(0, 1, 4, 2, 5, 3).reshape(N, C, H, W)
    else:
        gxpad = xp.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=col.dtype)
        for i in range(KH):
            for j in range(KW):
                gxpad[:, :, _window(i, DH, SH, OH), _window(j, DW, SW, OW)] += col6[:, :, i, j]
        gx = gxpad[:, :, PH : PH + H, PW : PW + W]
    if out is None:
        return xp.ascontiguousarray(gx)
    out[...] = gx
    return out


def batch_chunks(N, bytes_per_image):
    """[(n0, n1), ...] covering range(N) in chunks of about ``CHUNK_BYTES`` (at least one image each)."""
    B = max(1, min(N, CHUNK_BYTES // max(1, bytes_per_image)))
    return [(n0, min(n0 + B, N)) for n0 in range(0, N, B)]
