"""2-D convolution and transposed convolution, both built on ``im2col`` / ``col2im``.

With ``col = im2col(x, batch_first=False)`` of shape (C*KH*KW, N*OH*OW) and ``W2 = weight.reshape(OC, C*KH*KW)``:

    conv2d forward          y   = W2 @ col                  (OC, N*OH*OW), one matrix product
    gradient for weight     gW  = gy @ col.T                gy laid out (OC, N*OH*OW)
    gradient for input      gx  = col2im(W2.T @ gy)         the adjoint of the forward

The transposed convolution is that input gradient used as a forward pass: it *is* the adjoint
of conv2d (<conv2d(x, W), y> = <x, conv_transpose2d(y, W)>), so its forward runs the same code
as conv2d's input gradient, and its input gradient is a conv2d forward. The two raw-array
helpers below, ``_forward`` (which can also return gW from the same columns) and
``_input_grad``, serve both ops. With stride 1 the input gradient is itself a forward pass:
gy correlated with the kernel flipped and its channels swapped, on "full" padding.

Speed (benchmarks/bench_conv.py): every product reads its operands as they lie in memory (BLAS
takes a transposed view such as ``col.T`` as it is; ``tensordot`` would copy it first). The
batch goes through in chunks of about ``CHUNK_BYTES`` of columns, built in scratch buffers
reused from call to call rather than in one fresh array KH*KW times the input's size, and with
``set_num_threads(n)`` n threads work through the chunks at once (ops/workspace.py). For stride
1 (every 3x3 convolution of a U-Net) the columns are whole padded rows (``shifted_im2col``): each
kernel offset is then one contiguous run per image instead of many short rows, which made the
copies 2-3x faster, for a product at most 12.5% wider (the WP - OW junk values per row). The
backward rebuilds the columns instead of keeping them from the forward pass: in a network,
keeping them would hold KH*KW copies of every layer's input until the backward pass.
"""

from ..backend import get_array_module
from ..tensor import Function
from .im2col import (
    col2im,
    conv_out_size,
    conv_transpose_out_size,
    cuda_columns,
    im2col,
    pair,
    shifted_col2im,
    shifted_im2col,
)
from .workspace import batch_chunks, run_chunks, scratch

# ---- raw-array helpers shared by both ops ----------------------------------------------------


def _forward(x, W, b, stride, padding, dilation, windows, g=None, want_y=True):
    """y (N, OC, OH, OW) = conv2d(x, W) + b for x (N, C, H, W), W (OC, C, KH, KW), b (OC,) or None.

    With ``g`` (N, OC, OH, OW), an output gradient, returns (y, gW) instead: gW = g @ im2col(x).T,
    conv2d's weight gradient, from the same columns (``want_y=False``: y is None, only gW).
    """
    xp = get_array_module(x)
    N, (OC, C, KH, KW), (OH, OW) = x.shape[0], W.shape, windows
    P = _pitch(xp, x.shape[3], W.shape, stride, padding, OW)
    K, L = C * KH * KW, OH * P
    W2 = W.reshape(OC, K)
    y = xp.empty((N, OC, OH, OW), dtype=x.dtype) if want_y else None

    def chunk(n0, n1):
        col = _columns(x[n0:n1], W.shape, stride, padding, dilation, windows, P)
        if want_y:
            yc = xp.matmul(W2, col, out=scratch(x, "prod", (OC, (n1 - n0) * L)))
            if b is not None:
                yc += b.reshape(OC, 1)  # here, where each row is one channel: faster than during the copy below
            y[n0:n1] = yc.reshape(OC, n1 - n0, OH, P)[..., :OW].transpose(1, 0, 2, 3)  # (OC, n, ...) -> (n, OC, ...)
        if g is not None:
            return _channels_first(g[n0:n1], P) @ col.T  # (OC, n*L) @ (n*L, K): this chunk's part of gW

    parts = run_chunks(chunk, batch_chunks(N, K * L * x.dtype.itemsize, xp))
    if g is None:
        return y
    gW = parts[0]
    for part in parts[1:]:  # in chunk order, whichever thread finished first
        gW += part
    return y, gW.reshape(W.shape)


def _input_grad(gy, W, x_shape, stride, padding, dilation):
    """gx (N, C, H, W) = col2im(W2.T @ gy): conv2d's input gradient for gy (N, OC, OH, OW), W (OC, C, KH, KW)."""
    xp = get_array_module(gy)
    N, OC, OH, OW = gy.shape
    _, C, KH, KW = W.shape
    full = [d * (k - 1) - p for k, p, d in zip((KH, KW), padding, dilation)]
    reached = conv_out_size(x_shape[2:], (KH, KW), 1, padding, dilation) == (OH, OW)  # no output_padding
    if stride == (1, 1) and (KH, KW) != (1, 1) and OC <= C and min(full) >= 0 and reached:
        # With stride 1 the same sum reads as a forward convolution of gy with the kernel flipped
        # and its channels swapped, zero-padded by d*(k - 1) - p ("full" correlation): copies into
        # columns instead of col2im's additions (1.2-1.34x faster, one thread, bench shapes). col2im
        # stays for OC > C (the columns of gy would be larger than those of gx), and where
        # output_padding leaves rows of gx that no window reaches.
        Wf = W.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
        return _forward(gy, Wf, None, (1, 1), tuple(full), dilation, x_shape[2:])
    P = _pitch(xp, x_shape[3], W.shape, stride, padding, OW)
    K, L = C * KH * KW, OH * P
    W2T = W.reshape(OC, K).T  # a transposed view: BLAS reads it as it is
    gx = xp.empty(x_shape, dtype=gy.dtype)

    def chunk(n0, n1):
        gcol = xp.matmul(W2T, _channels_first(gy[n0:n1], P), out=scratch(gy, "col", (K, (n1 - n0) * L)))
        if P == OW:
            col2im(gcol, gx[n0:n1].shape, (KH, KW), stride, padding, dilation, (OH, OW), False, out=gx[n0:n1])
        else:  # junk columns of gcol are zero: _channels_first zeroed them in gy
            shifted_col2im(gcol, gx[n0:n1].shape, (KH, KW), padding, dilation, (OH, OW), out=gx[n0:n1])

    run_chunks(chunk, batch_chunks(N, K * L * gy.dtype.itemsize, xp))
    return gx


def _pitch(xp, width, W_shape, stride, padding, OW):
    # Values per output row in the column matrix: the padded width WP for a stride-1 kernel wider
    # or taller than 1 (shifted_im2col: contiguous copies, WP - OW junk values per row), else OW.
    # Not where junk would be over 1/9 of the products: at 8 x 8 pixels (10 padded) the strided
    # copies are cheaper than 25% more multiplications (measured 4-9% faster; 16 x 16: 3% slower).
    # Not on a GPU with the CUDA im2col kernel either: it builds any layout in one launch.
    WP = width + 2 * padding[1]
    shifted = stride == (1, 1) and W_shape[2:] != (1, 1) and 8 * WP <= 9 * OW
    shifted = shifted and not cuda_columns(xp)
    return WP if shifted else OW


def _columns(x, W_shape, stride, padding, dilation, windows, P):
    # im2col of the chunk x (n, C, H, W) as (C*KH*KW, n*OH*P), in a reused scratch buffer.
    K, L = W_shape[1] * W_shape[2] * W_shape[3], windows[0] * P
    buf = scratch(x, "col", (K, x.shape[0] * L))
    if P == windows[1]:
        return im2col(x, W_shape[2:], stride, padding, dilation, windows, batch_first=False, out=buf)
    return shifted_im2col(x, W_shape[2:], padding, dilation, windows, out=buf)


def _channels_first(gy, P):
    # gy (n, OC, OH, OW) -> (OC, n*OH*P), the column order of the columns, with zeros in the
    # P - OW junk places of each row: a view for one image without junk, else a copy.
    n, OC, OH, OW = gy.shape
    if n == 1 and P == OW:
        return gy.reshape(OC, -1)
    out = scratch(gy, "gy", (OC, n, OH, P))
    out[..., OW:] = 0
    out[..., :OW] = gy.transpose(1, 0, 2, 3)
    return out.reshape(OC, -1)


def _check(op, x, W, b, stride, padding, dilation, output_padding=None):
    """Validate the arguments PyTorch-style; return (stride, padding, dilation) as (h, w) pairs."""
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D input x (N, C, H, W), got shape {tuple(x.shape)}")
    if W.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D weight, got shape {tuple(W.shape)}")
    S, P, D = pair(stride, "stride"), pair(padding, "padding"), pair(dilation, "dilation")
    if min(S) <= 0:
        raise ValueError(f"{op}: stride must be positive, got {stride!r}")
    if min(D) <= 0:
        raise ValueError(f"{op}: dilation must be positive, got {dilation!r}")
    if min(P) < 0:
        raise ValueError(f"{op}: padding must be non-negative, got {padding!r}")
    transposed = output_padding is not None
    C, OC = (W.shape[0], W.shape[1]) if transposed else (W.shape[1], W.shape[0])
    layout = "(C, OC, KH, KW)" if transposed else "(OC, C, KH, KW)"
    if x.shape[1] != C:
        raise ValueError(
            f"{op}: weight {layout} of shape {tuple(W.shape)} expects {C} input channels, "
            f"but x of shape {tuple(x.shape)} has {x.shape[1]} channels"
        )
    if b is not None and tuple(b.shape) != (OC,):
        raise ValueError(f"{op}: bias must have shape ({OC},), one value per output channel, got {tuple(b.shape)}")
    if x.dtype != W.dtype or (b is not None and b.dtype != x.dtype):
        dtypes = (x.dtype, W.dtype) + ((b.dtype,) if b is not None else ())
        raise TypeError(f"{op}: x, weight and bias must share one dtype, got {', '.join(map(str, dtypes))}")
    return S, P, D


# ---- convolution ---------------------------------------------------------------------------


class Conv2d(Function):
    """y = W2 @ im2col(x) + b; backward: gx = col2im(W2.T @ gy), gW = gy @ col.T, gb = sum of gy."""

    def __init__(self, stride, padding, dilation):
        self.args = stride, padding, dilation

    def forward(self, x, W, b):
        stride, padding, dilation = self.args = _check("conv2d", x, W, b, *self.args)
        (H, Wd), (KH, KW) = x.shape[2:], W.shape[2:]
        span = [d * (k - 1) + 1 for k, d in zip((KH, KW), dilation)]
        if H + 2 * padding[0] < span[0] or Wd + 2 * padding[1] < span[1]:
            raise ValueError(
                f"conv2d: padded input size ({H + 2 * padding[0]} x {Wd + 2 * padding[1]}) is smaller than "
                f"the dilated kernel size ({span[0]} x {span[1]})"
            )
        self.x, self.W, self.has_bias = x, W, b is not None
        return _forward(x, W, b, *self.args, conv_out_size((H, Wd), (KH, KW), *self.args))

    def backward(self, gy):
        x, W = self.x, self.W
        gx = _input_grad(gy, W, x.shape, *self.args) if self.needs_input_grad[0] else None
        gW = _forward(x, W, None, *self.args, gy.shape[2:], g=gy, want_y=False)[1] if self.needs_input_grad[1] else None
        gb = gy.sum(axis=(0, 2, 3)) if self.has_bias and self.needs_input_grad[2] else None
        return gx, gW, gb


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1):
    """2-D convolution (cross-correlation, as in PyTorch): x (N, C, H, W) -> y (N, OC, OH, OW).

    weight (OC, C, KH, KW), bias (OC,) or None. ``stride``, ``padding`` (zeros on each side) and
    ``dilation`` are ints or (h, w) pairs. ``y[n, o, p, q] = bias[o] + sum over c, i, j of
    weight[o, c, i, j] * xpad[n, c, p*SH + i*DH, q*SW + j*DW]`` with
    ``OH = floor((H + 2*PH - DH*(KH - 1) - 1) / SH) + 1`` (likewise OW; see ``conv_out_size``).
    """
    return Conv2d(stride, padding, dilation)(x, weight, bias)


# ---- transposed convolution: the adjoint -----------------------------------------------------


class ConvTranspose2d(Function):
    """y = conv2d's input gradient applied to x (col2im(W2.T @ x)) + b: the adjoint of Conv2d.

    Backward: gx = conv2d(gy, W), the adjoint of the adjoint; gW is conv2d's weight gradient
    with the roles of input and output gradient swapped (input gy, output gradient x).
    """

    def __init__(self, stride, padding, output_padding, dilation):
        self.args, self.output_padding = (stride, padding, dilation), output_padding

    def forward(self, x, W, b):
        stride, padding, dilation = self.args = _check("conv_transpose2d", x, W, b, *self.args, self.output_padding)
        op = pair(self.output_padding, "output_padding")
        if any(o < 0 or (o >= s and o >= d) for o, s, d in zip(op, stride, dilation)):
            raise ValueError(
                f"conv_transpose2d: output_padding must be non-negative and smaller than either stride or dilation, "
                f"got output_padding={op}, stride={stride}, dilation={dilation}"
            )
        (N, _, H, Wd), (_, OC, KH, KW) = x.shape, W.shape
        OH, OW = conv_transpose_out_size((H, Wd), (KH, KW), stride, padding, op, dilation)
        if OH <= 0 or OW <= 0:
            raise ValueError(
                f"conv_transpose2d: input size ({H} x {Wd}) gives a non-positive output size ({OH} x {OW}); "
                f"padding {padding} is too large"
            )
        self.x, self.W, self.has_bias = x, W, b is not None
        y = _input_grad(x, W, (N, OC, OH, OW), *self.args)
        if b is not None:
            y += b.reshape(1, OC, 1, 1)
        return y

    def backward(self, gy):
        x, W = self.x, self.W
        windows = x.shape[2:]  # conv2d of gy visits exactly the H x W positions that made y
        want_gx, want_gW = self.needs_input_grad[:2]
        if want_gW:  # both products read the columns of gy: build them once
            gx, gW = _forward(gy, W, None, *self.args, windows, g=x, want_y=want_gx)
        else:
            gx, gW = _forward(gy, W, None, *self.args, windows) if want_gx else None, None
        gb = gy.sum(axis=(0, 2, 3)) if self.has_bias and self.needs_input_grad[2] else None
        return gx, gW, gb


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1):
    """Transposed convolution, the adjoint of ``conv2d``: x (N, C, H, W) -> y (N, OC, OH, OW).

    weight (C, OC, KH, KW) (PyTorch's layout: input channels first), bias (OC,) or None.
    Each input pixel x[n, c, h, w] adds ``x[n, c, h, w] * weight[c, :, :, :]`` into the output
    window at (h*SH - PH, w*SW - PW) with taps DH, DW apart, so with stride 2 it upsamples by 2.
    ``OH = (H - 1)*SH - 2*PH + DH*(KH - 1) + output_padding + 1`` (``conv_transpose_out_size``);
    ``output_padding`` (smaller than stride or dilation) picks among the sizes a strided conv2d
    maps to H. ``conv_transpose2d(y, W)`` equals the gradient of <conv2d(x, W), y> with respect to x.
    """
    return ConvTranspose2d(stride, padding, output_padding, dilation)(x, weight, bias)
