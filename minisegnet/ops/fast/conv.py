"""Fast Conv2d and ConvTranspose2d: the same sums as ops/conv.py's ``W2 @ im2col(x)``, arranged for speed.

``conv_forward``, ``conv_weight_grad`` and ``conv_input_grad`` take the arguments of their
namesakes in ops/conv.py and return the same arrays (the tests compare them in float64); the two
Function classes at the bottom are ops/conv.py's with these products, registered in
ops/fast/__init__.py. What the products do differently (benchmarks/bench_conv.py measures them):

- Every product reads its operands as they lie in memory (BLAS takes a transposed view such as
  ``col.T`` as it is; ``tensordot`` would copy it first). The weight gradient is taken transposed,
  ``col @ gy.T`` (K, OC), then viewed back: the same sums, in the order OpenBLAS's AVX-512 kernels
  multiply fastest (benchmarks/results/cpu_2026-12-02.md).
- The batch goes through in chunks of about ``CHUNK_BYTES`` of columns, built in scratch buffers
  reused from call to call rather than in one fresh array KH*KW times the input's size, and with
  ``set_num_threads(n)`` n threads work through the chunks at once (fast/workspace.py). An image
  whose whole-row columns alone are larger than a chunk (16 channels at 128 x 128: 9.6 MB) goes
  through in bands of output rows (``workspace.row_bands``), padded once, so a band stays in cache.
- For stride 1 (every 3x3 convolution of a U-Net) the columns are whole padded rows
  (``shifted_im2col``): each kernel offset is then one contiguous run per image instead of many
  short rows, for a product wider by the ``pitch - OW`` junk values per row, dropped afterwards
  (``_row_pitch`` says where that pays).
- A 3x3 stride-1 convolution with many channels goes through Winograd's F(4x4, 3x3) (fast/winograd.py),
  forward and input gradient: 4x fewer multiplications for the cost of its tile transforms.
- Where the windows tile the image (kernel = stride, no padding: the 2x2 stride-2 transposed
  convolution of a U-Net), the columns are a plain reordering: one product per image and one
  reordering copy, forward and backward (``_tiled``).
- With stride 1 the input gradient is itself a forward pass: gy correlated with the kernel
  flipped and its channels swapped, on "full" padding (copies instead of col2im's additions).

The backward rebuilds the columns instead of keeping them from the forward pass: in a network,
keeping them would hold KH*KW copies of every layer's input until the backward pass.
"""

import numpy as np

from ...backend import get_array_module
from ...threads import get_num_threads
from .. import conv as taught
from ..sizes import conv_out_size
from . import winograd
from .im2col import col2im, cuda_columns, im2col, shifted_col2im, shifted_runs
from .workspace import CHUNK_BYTES, batch_chunks, row_bands, run_chunks, scratch, total

# A 3x3 stride-1 convolution goes through Winograd's F(4x4, 3x3) on the CPU (its forward, and its input gradient,
# which is a forward pass of gy) where both channel counts are at least WINOGRAD_CHANNELS and its transformed input,
# 36 values per 4x4 tile and channel, fits in CHUNK_BYTES: there the 4x fewer multiplications pay for the transforms.
# With fewer channels the transforms cost more than they save, and a larger batch of tiles leaves the cache
# (benchmarks/results/winograd_cpu.md).
WINOGRAD_CHANNELS = 64


def conv_forward(x, W, b, args, windows=None):
    """y (N, OC, OH, OW) = W2 @ im2col(x) + b for x (N, C, H, W), W (OC, C, KH, KW), b (OC,) or None.

    By Winograd's F(4x4, 3x3) where ``_winograd`` says it pays, else by ``im2col_forward``.
    """
    every = conv_out_size(x.shape[2:], W.shape[2:], *args)
    if _winograd(get_array_module(x), x, W.shape, args) and tuple(windows or every) == every:
        return winograd.conv2d_forward(x, W, b, args[1])
    return im2col_forward(x, W, b, args, windows)


def im2col_forward(x, W, b, args, windows=None):
    """conv_forward's column path: the columns of x built a block at a time, one product per block."""
    xp = get_array_module(x)
    N, OC = x.shape[0], W.shape[0]
    OH, OW = windows = tuple(windows or conv_out_size(x.shape[2:], W.shape[2:], *args))
    y = xp.empty((N, OC, OH, OW), dtype=x.dtype)
    W2 = W.reshape(OC, -1)

    def product(col, n0, n1, r0, r1, pitch):  # y's images n0..n1-1, rows r0..r1-1
        yc = xp.matmul(W2, col, out=scratch(x, "prod", (OC, col.shape[1])))
        if b is not None:
            yc += b.reshape(OC, 1)  # here, where each row is one channel: faster than during the copy below
        y[n0:n1, :, r0:r1] = yc.reshape(OC, n1 - n0, r1 - r0, pitch)[..., :OW].transpose(1, 0, 2, 3)

    _for_columns(x, W.shape, args, windows, product)
    return y


def conv_weight_grad(x, gy, W_shape, args):
    """gW (OC, C, KH, KW) = gy @ im2col(x).T for x (N, C, H, W), gy (N, OC, OH, OW)."""

    def product(col, n0, n1, r0, r1, pitch):  # (K, n*L) @ (n*L, OC): this block's part of gW.T
        return col @ _channels_first(gy[n0:n1, :, r0:r1], pitch).T

    gWT = _for_columns(x, W_shape, args, gy.shape[2:], product)
    return gWT.T.reshape(W_shape)


def _for_columns(x, W_shape, args, windows, product):
    # Builds the columns of x a block at a time and calls product(col, n0, n1, r0, r1, pitch) on each: col
    # (C*KH*KW, n*(r1 - r0)*pitch) holds images n0..n1-1, output rows r0..r1-1. Blocks of images run on the
    # threads; returns the sum of product's results in block order (None when it returns None).
    xp = get_array_module(x)
    stride, padding, dilation = args
    N, (OH, OW) = x.shape[0], windows
    K = W_shape[1] * W_shape[2] * W_shape[3]
    pitch = _row_pitch(xp, x.shape[3], W_shape, stride, padding, OW)
    # An image whose whole-row columns are larger than CHUNK_BYTES goes through in bands of output rows.
    bands = row_bands(OH, K * pitch * x.dtype.itemsize, xp) if pitch != OW else [(0, OH)]

    def chunk(n0, n1):
        result = None
        # Whole-row columns: the chunk padded once, each band copied from its runs (one band for a small image).
        runs = shifted_runs(x[n0:n1], W_shape[2:], padding, dilation, windows) if pitch != OW else None
        for r0, r1 in bands:
            col = _columns(x[n0:n1], W_shape, args, windows) if runs is None else _band(runs, r0, r1, pitch)
            part = product(col, n0, n1, r0, r1, pitch)
            if part is not None:
                result = part if result is None else xp.add(result, part, out=result)
        return result

    parts = run_chunks(chunk, batch_chunks(N, K * OH * pitch * x.dtype.itemsize, xp))
    return None if parts[0] is None else total(parts)


def conv_input_grad(gy, W, x_shape, args):
    """gx (N, C, H, W) = col2im(W2.T @ gy) for gy (N, OC, OH, OW), W (OC, C, KH, KW)."""
    xp = get_array_module(gy)
    stride, padding, dilation = args
    N, OC, OH, OW = gy.shape
    _, C, KH, KW = W.shape
    if _tiled(W.shape, args, x_shape[2:], (OH, OW)):
        return _tiled_input_grad(gy, W, x_shape)
    full = [d * (k - 1) - p for k, p, d in zip((KH, KW), padding, dilation)]
    reached = conv_out_size(x_shape[2:], (KH, KW), 1, padding, dilation) == (OH, OW)  # no output_padding
    if stride == (1, 1) and (KH, KW) != (1, 1) and OC <= C and min(full) >= 0 and reached:
        # With stride 1 the same sum reads as a forward convolution of gy with the kernel flipped
        # and its channels swapped, zero-padded by d*(k - 1) - p ("full" correlation): copies into
        # columns instead of col2im's additions. col2im stays for OC > C (the columns of gy would be
        # larger than those of gx), and where output_padding leaves rows of gx that no window reaches.
        W_flipped = W.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
        return conv_forward(gy, W_flipped, None, ((1, 1), tuple(full), dilation), x_shape[2:])
    pitch = _row_pitch(xp, x_shape[3], W.shape, stride, padding, OW)
    K, L = C * KH * KW, OH * pitch
    W2T = W.reshape(OC, K).T  # a transposed view: BLAS reads it as it is
    gx = xp.empty(x_shape, dtype=gy.dtype)

    def chunk(n0, n1):
        gcol = xp.matmul(W2T, _channels_first(gy[n0:n1], pitch), out=scratch(gy, "col", (K, (n1 - n0) * L)))
        if pitch == OW:
            col2im(gcol, gx[n0:n1].shape, (KH, KW), stride, padding, dilation, (OH, OW), False, out=gx[n0:n1])
        else:  # junk columns of gcol are zero: _channels_first zeroed them in gy
            shifted_col2im(gcol, gx[n0:n1].shape, (KH, KW), padding, dilation, (OH, OW), out=gx[n0:n1])

    run_chunks(chunk, batch_chunks(N, K * L * gy.dtype.itemsize, xp))
    return gx


def conv_transpose_grads(gy, x, W, args, want_gx, want_gW):
    """(gx, gW) of conv_transpose2d for gy (N, OC, OH, OW), x (N, C, H, W), W (C, OC, KH, KW); None if not wanted."""
    if _tiled(W.shape, args, gy.shape[2:], x.shape[2:]):
        return _tiled_transpose_grads(gy, x, W, want_gx, want_gW)
    gx = conv_forward(gy, W, None, args, x.shape[2:]) if want_gx else None
    gW = conv_weight_grad(gy, x, W.shape, args) if want_gW else None
    return gx, gW


def _winograd(xp, x, W_shape, args):
    # True for a 3x3, stride-1, undilated convolution of x (N, C, H, Wd) on NumPy with at least WINOGRAD_CHANNELS
    # channels in and out, whose transformed input (36 values per 4x4 output tile and channel) fits in CHUNK_BYTES,
    # while BLAS has its own threads (set_num_threads(0), the default).
    stride, padding, dilation = args
    square = W_shape[2:] == (3, 3) and stride == (1, 1) and dilation == (1, 1)
    if xp is not np or not square or min(W_shape[:2]) < WINOGRAD_CHANNELS or get_num_threads() > 1:
        return False  # with minisegnet's own threads (BLAS held to one), the column path shares the work out
    OH, OW = (n + 2 * p - 2 for n, p in zip(x.shape[2:], padding))
    tiles = x.shape[0] * -(-OH // 4) * -(-OW // 4)
    return 36 * x.shape[1] * tiles * x.dtype.itemsize <= CHUNK_BYTES


def _tiled(W_shape, args, size, windows):
    # True when the windows tile the image exactly (kernel = stride, no padding, no dilation: the 2x2
    # stride-2 upsampling of a U-Net): every pixel is in exactly one window, so the columns are a reordering.
    stride, padding, dilation = args
    KH, KW = W_shape[2:]
    exact = tuple(size) == (windows[0] * KH, windows[1] * KW)
    return stride == (KH, KW) and padding == (0, 0) and dilation == (1, 1) and exact


def _tiled_input_grad(gy, W, x_shape):
    # gx (N, C, H, Wd) = col2im(W2.T @ gy) for tiling windows: one product per image, col2im one reordering copy.
    xp = get_array_module(gy)
    N, OC, OH, OW = gy.shape
    _, C, KH, KW = W.shape
    W2T = W.reshape(OC, -1).T
    gx = xp.empty(x_shape, dtype=gy.dtype)

    def chunk(n0, n1):
        gcol = xp.matmul(W2T, gy[n0:n1].reshape(n1 - n0, OC, OH * OW))  # (n, C*KH*KW, OH*OW)
        tiles = gx[n0:n1].reshape(n1 - n0, C, OH, KH, OW, KW)  # a view: writing into it fills gx
        taps = gcol.reshape(n1 - n0, C, KH, KW, OH, OW)
        # One copy per kernel tap, each reading whole rows: faster than one copy of the 6-axis transposed
        # view, whose innermost run is KW = 2 values.
        for i in range(KH):
            for j in range(KW):
                tiles[:, :, :, i, :, j] = taps[:, :, i, j]

    run_chunks(chunk, batch_chunks(N, W2T.shape[0] * OH * OW * gy.dtype.itemsize, xp))
    return gx


def _tiled_transpose_grads(gy, x, W, want_gx, want_gW):
    # ConvTranspose2d's (gx, gW) for tiling windows: the columns of gy are one reordering copy (n, OC*KH*KW, H*Wd)
    # per chunk, then gx = W2 @ col and gW = sum over images of x @ col.T, one product each.
    xp = get_array_module(gy)
    N, C, H, Wd = x.shape
    _, OC, KH, KW = W.shape
    W2 = W.reshape(C, -1)
    gx = xp.empty(x.shape, dtype=gy.dtype) if want_gx else None

    def chunk(n0, n1):
        n = n1 - n0
        col = scratch(gy, "col", (n, OC, KH, KW, H, Wd))
        col[...] = gy[n0:n1].reshape(n, OC, H, KH, Wd, KW).transpose(0, 1, 3, 5, 2, 4)
        col = col.reshape(n, OC * KH * KW, H * Wd)
        if want_gx:
            xp.matmul(W2, col, out=gx[n0:n1].reshape(n, C, H * Wd))
        if want_gW:  # gW.T, image by image: (n, OC*KH*KW, H*Wd) @ (n, H*Wd, C), summed over the images
            return xp.matmul(col, x[n0:n1].reshape(n, C, H * Wd).transpose(0, 2, 1)).sum(axis=0)

    parts = run_chunks(chunk, batch_chunks(N, W2.shape[1] * H * Wd * gy.dtype.itemsize, xp))
    if not want_gW:
        return gx, None
    return gx, total(parts).T.reshape(W.shape)


def _row_pitch(xp, width, W_shape, stride, padding, OW):
    # Values per output row in the column matrix: the padded width WP for a stride-1 kernel wider
    # or taller than 1 (shifted_im2col: contiguous copies, WP - OW junk values per row), else OW.
    # The junk costs OC multiply-adds per junk column, while the strided copies it saves cost about
    # the same per column whatever OC: so shifted where junk is at most 1/8 of the products, or where
    # OC * junk / OW <= 32 (the crossover measured in benchmarks/results/cpu_2026-12-02.md).
    # Not on a GPU with the CUDA im2col kernel either: it builds any layout in one launch.
    WP = width + 2 * padding[1]
    junk = WP - OW
    few = 8 * junk <= OW or W_shape[0] * junk <= 32 * OW
    shifted = stride == (1, 1) and W_shape[2:] != (1, 1) and few and not cuda_columns(xp)
    return WP if shifted else OW


def _columns(x, W_shape, args, windows):
    # im2col of the chunk x (n, C, H, Wd) as (C*KH*KW, n*OH*OW), in a reused scratch buffer.
    stride, padding, dilation = args
    K, L = W_shape[1] * W_shape[2] * W_shape[3], windows[0] * windows[1]
    buf = scratch(x, "col", (K, x.shape[0] * L))
    return im2col(x, W_shape[2:], stride, padding, dilation, windows, batch_first=False, out=buf)


def _band(runs, r0, r1, pitch):
    # shifted_im2col's columns of output rows r0..r1-1, copied from shifted_runs' view (C, KH, KW, n, OH*pitch)
    # into the "col" scratch buffer.
    C, KH, KW, n, _ = runs.shape
    L = (r1 - r0) * pitch
    buf = scratch(runs, "col", (C * KH * KW, n * L))
    buf.reshape(C, KH, KW, n, L)[...] = runs[..., r0 * pitch : r1 * pitch]
    return buf


def _channels_first(gy, pitch):
    # gy (n, OC, OH, OW) -> (OC, n*OH*pitch), the column order of the columns, with zeros in the
    # pitch - OW junk places of each row: a view for one image without junk, else a copy.
    n, OC, OH, OW = gy.shape
    if n == 1 and pitch == OW:
        return gy.reshape(OC, -1)
    out = scratch(gy, "gy", (OC, n, OH, pitch))
    out[..., OW:] = 0
    out[..., :OW] = gy.transpose(1, 0, 2, 3)
    return out.reshape(OC, -1)


class Conv2d(taught.Conv2d):
    """ops/conv.py's Conv2d with the products above."""

    def forward(self, x, W, b):
        self.args = taught.check_args("conv2d", x, W, b, *self.args)
        self.x, self.W, self.has_bias = x, W, b is not None
        return conv_forward(x, W, b, self.args)

    def backward(self, gy):
        x, W = self.x, self.W
        want_gx, want_gW, want_gb = self.needs_input_grad
        gx = conv_input_grad(gy, W, x.shape, self.args) if want_gx else None
        gW = conv_weight_grad(x, gy, W.shape, self.args) if want_gW else None
        gb = gy.sum(axis=(0, 2, 3)) if self.has_bias and want_gb else None
        return gx, gW, gb


class ConvTranspose2d(taught.ConvTranspose2d):
    """ops/conv.py's ConvTranspose2d with the products above (and the tiled ones of a U-Net's upsampling)."""

    def forward(self, x, W, b):
        self.args = taught.check_args("conv_transpose2d", x, W, b, *self.args, self.output_padding)
        y_shape = taught.transposed_shape(x, W, self.args, self.output_padding)
        self.x, self.W, self.has_bias = x, W, b is not None
        y = conv_input_grad(x, W, y_shape, self.args)
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        return y

    def backward(self, gy):
        want_gx, want_gW, want_gb = self.needs_input_grad
        gx, gW = conv_transpose_grads(gy, self.x, self.W, self.args, want_gx, want_gW)
        gb = gy.sum(axis=(0, 2, 3)) if self.has_bias and want_gb else None
        return gx, gW, gb
