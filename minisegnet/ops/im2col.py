"""im2col / col2im: the array plumbing that turns a convolution into one matrix product.

A convolution slides a KH x KW window over a padded image. ``im2col`` copies every window
into a column, so the convolution of a whole batch becomes one product
``weight (OC, C*KH*KW) @ col (C*KH*KW, N*OH*OW)``. It is written as a loop over the KH*KW
kernel *offsets*, not over the N*OH*OW windows: for a fixed offset (i, j), the pixels that
offset sees in all windows form one strided slice of the image, so each step is one array copy:

    col[c, i, j, n, oh, ow] = xpad[n, c, i*DH + oh*SH, j*DW + ow*SW]

``col2im`` is the adjoint (transpose) of ``im2col``: it sends every column entry back to the
pixel it was copied from, adding up where windows overlap (``+=`` on the same slices, never
``np.add.at``). Both run unchanged on NumPy and CuPy.

Output sizes (per dimension; ``conv_out_size`` and ``conv_transpose_out_size``, in ops/sizes.py):

    conv:        OH = floor((H + 2*PH - DH*(KH - 1) - 1) / SH) + 1
    transposed:  OH = (H - 1)*SH - 2*PH + DH*(KH - 1) + output_padding + 1
"""

from ..backend import get_array_module
from .sizes import conv_geometry, conv_out_size, conv_transpose_out_size, pair, window  # noqa: F401  (re-exported)


def im2col(x, kernel_size, stride=1, padding=0, dilation=1, windows=None, batch_first=True):
    """Copy every convolution window of ``x`` into a column: x (N, C, H, W) -> col (N, C*KH*KW, OH*OW).

    Rows of a column are ordered (c, i, j), like ``weight.reshape(OC, -1)``, so ``W2 @ col[n]`` is
    image n's convolution (PyTorch's ``unfold`` layout). ``batch_first=False`` gives the same
    columns as one matrix (C*KH*KW, N*OH*OW), columns ordered (n, oh, ow): then ``W2 @ col`` is
    the whole batch in one product (conv2d uses this). ``windows`` = (OH, OW) takes only the first
    OH x OW window positions (default: all, ``conv_out_size``).
    """
    xp = get_array_module(x)
    N, C, H, Wd = x.shape
    (KH, KW), (SH, SW), (PH, PW), (DH, DW), (OH, OW) = conv_geometry(
        (H, Wd), kernel_size, stride, padding, dilation, windows
    )
    xpad = xp.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    col = xp.empty((N, C, KH, KW, OH, OW), dtype=x.dtype)
    for i in range(KH):
        for j in range(KW):
            col[:, :, i, j] = xpad[:, :, window(i, DH, SH, OH), window(j, DW, SW, OW)]
    if batch_first:
        col = col.reshape(N, C * KH * KW, OH * OW)
    else:
        col = col.transpose(1, 2, 3, 0, 4, 5).reshape(C * KH * KW, N * OH * OW)
    return col


def col2im(col, x_shape, kernel_size, stride=1, padding=0, dilation=1, windows=None, batch_first=True):
    """The adjoint of ``im2col``: add every column entry back onto the pixel it came from.

    col (N, C*KH*KW, OH*OW), or (C*KH*KW, N*OH*OW) with ``batch_first=False`` -> gx (N, C, H, W)
    with x_shape = (N, C, H, W). Pixels that several windows share receive the sum of their
    entries; pixels no window reaches get 0. ``windows`` = (OH, OW) as in ``im2col`` (default
    ``conv_out_size`` of H, W).
    """
    xp = get_array_module(col)
    N, C, H, Wd = x_shape
    (KH, KW), (SH, SW), (PH, PW), (DH, DW), (OH, OW) = conv_geometry(
        (H, Wd), kernel_size, stride, padding, dilation, windows
    )
    if batch_first:
        col = col.reshape(N, C, KH, KW, OH, OW)
    else:
        col = col.reshape(C, KH, KW, N, OH, OW).transpose(3, 0, 1, 2, 4, 5)  # indexed [n, c, i, j, oh, ow]
    gxpad = xp.zeros((N, C, H + 2 * PH, Wd + 2 * PW), dtype=col.dtype)
    for i in range(KH):
        for j in range(KW):
            gxpad[:, :, window(i, DH, SH, OH), window(j, DW, SW, OW)] += col[:, :, i, j]
    return gxpad[:, :, PH : PH + H, PW : PW + Wd].copy()
