"""Window geometry shared by conv, im2col, pool and upsample: one pair parser, one formula per size.

Output sizes, per dimension (a window of dilated extent D*(K - 1) + 1 moving by S over the input
padded by P on each side):

    conv, pool:         OH = floor((H + 2*PH - DH*(KH - 1) - 1) / SH) + 1           conv_out_size
    transposed, unpool: OH = (H - 1)*SH - 2*PH + DH*(KH - 1) + output_padding + 1   conv_transpose_out_size

Pooling is the dilation-1 case of the first (``(H + 2*PH - KH) // SH + 1``) and max unpooling's
default size the output_padding-0, dilation-1 case of the second.
"""

import numbers


def pair(value, name, op=None):
    """``value`` as an (h, w) pair of Python ints: an int is used for both dimensions.

    Accepts an int (or NumPy integer) or a tuple or list of two of them; anything else (a float,
    a bool, three numbers) is a TypeError naming ``name``, prefixed by ``op`` when given.
    """
    if type(value) is int:  # the common cases first: the generic checks below cost more than a conv of 8x8 pixels
        return value, value
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        return value
    if _is_int(value):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        return int(value[0]), int(value[1])
    where = f"{op}: " if op else ""
    raise TypeError(f"{where}{name} must be an int or a pair of ints (h, w), got {value!r}")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _per_dim(f, *args):
    # Apply a one-dimension size formula to ints, or to (h, w) pairs dimension by dimension.
    if all(_is_int(a) for a in args):
        return f(*args)
    pairs = [pair(a, "size argument") for a in args]
    return tuple(f(*(p[d] for p in pairs)) for d in range(2))


def conv_out_size(size, kernel, stride=1, padding=0, dilation=1):
    """Output length of a convolution along one dimension, or an (OH, OW) pair from (H, W) pairs.

    ``floor((size + 2*padding - dilation*(kernel - 1) - 1) / stride) + 1``: the number of
    positions a window of dilated extent ``dilation*(kernel - 1) + 1`` takes, moving by
    ``stride``, inside the padded length. Pooling uses it with dilation 1.

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


def conv_geometry(size, kernel_size, stride, padding, dilation, windows=None):
    """(KH, KW), (SH, SW), (PH, PW), (DH, DW), (OH, OW) of a convolution of an image of ``size`` (H, W).

    The arguments are ints or pairs; ``windows`` = (OH, OW) takes only the first OH x OW window positions
    (default: all of them, ``conv_out_size``).
    """
    names = ("kernel_size", "stride", "padding", "dilation")
    K, S, P, D = (pair(v, name) for v, name in zip((kernel_size, stride, padding, dilation), names))
    return K, S, P, D, tuple(windows or conv_out_size(tuple(size), K, S, P, D))


def window(i, D, S, O):
    """The strided slice that kernel offset ``i`` reads for ``O`` output positions: i*D, i*D + S, ..."""
    return slice(i * D, i * D + S * (O - 1) + 1, S)
