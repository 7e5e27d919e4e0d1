"""2-D convolution and transposed convolution, both built on ``im2col`` / ``col2im`` (lesson 3).

With ``col = im2col(x, batch_first=False)`` of shape (C*KH*KW, N*OH*OW) and ``W2 = weight.reshape(OC, C*KH*KW)``:

    conv2d forward          y   = W2 @ col                  (OC, N*OH*OW), one matrix product
    gradient for weight     gW  = gy @ col.T                gy laid out (OC, N*OH*OW)
    gradient for input      gx  = col2im(W2.T @ gy)         the adjoint of the forward

Those three lines are the three helpers below, ``conv_forward``, ``conv_weight_grad`` and
``conv_input_grad``. The transposed convolution is that input gradient used as a forward pass:
it *is* the adjoint of conv2d (<conv2d(x, W), y> = <x, conv_transpose2d(y, W)>), so its forward
is ``conv_input_grad`` and its gradients are ``conv_forward`` and ``conv_weight_grad`` with the
roles of input and output swapped.
"""

from ..tensor import Function
from .im2col import col2im, im2col
from .sizes import conv_out_size, conv_transpose_out_size, pair

# ---- the three products, shared by both ops --------------------------------------------------


def conv_forward(x, W, b, args, windows=None):
    """y (N, OC, OH, OW) = W2 @ im2col(x) + b for x (N, C, H, W), W (OC, C, KH, KW), b (OC,) or None.

    ``args`` = (stride, padding, dilation) as (h, w) pairs; ``windows`` = (OH, OW), the number of
    window positions to use (default: all, ``conv_out_size``).
    """
    N, OC = x.shape[0], W.shape[0]
    OH, OW = windows or conv_out_size(x.shape[2:], W.shape[2:], *args)
    col = im2col(x, W.shape[2:], *args, (OH, OW), batch_first=False)  # (C*KH*KW, N*OH*OW)
    y = W.reshape(OC, -1) @ col  # (OC, N*OH*OW)
    if b is not None:
        y += b.reshape(OC, 1)
    return y.reshape(OC, N, OH, OW).transpose(1, 0, 2, 3).copy()


def conv_weight_grad(x, gy, W_shape, args):
    """gW (OC, C, KH, KW) = gy @ im2col(x).T for x (N, C, H, W), gy (N, OC, OH, OW)."""
    col = im2col(x, W_shape[2:], *args, gy.shape[2:], batch_first=False)  # (C*KH*KW, N*OH*OW)
    return (_channels_first(gy) @ col.T).reshape(W_shape)


def conv_input_grad(gy, W, x_shape, args):
    """gx (N, C, H, W) = col2im(W2.T @ gy) for gy (N, OC, OH, OW), W (OC, C, KH, KW), x_shape (N, C, H, W)."""
    W2 = W.reshape(W.shape[0], -1)
    gcol = W2.T @ _channels_first(gy)  # (C*KH*KW, N*OH*OW)
    return col2im(gcol, x_shape, W.shape[2:], *args, gy.shape[2:], batch_first=False)


def _channels_first(gy):
    # gy (N, OC, OH, OW) -> (OC, N*OH*OW): the column order (n, oh, ow) of im2col(batch_first=False).
    return gy.transpose(1, 0, 2, 3).reshape(gy.shape[1], -1)


# ---- argument checks ----------------------------------------------------------------------


def check_args(op, x, W, b, stride, padding, dilation, output_padding=None):
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
    if not transposed:
        span = [d * (k - 1) + 1 for k, d in zip(W.shape[2:], D)]
        if x.shape[2] + 2 * P[0] < span[0] or x.shape[3] + 2 * P[1] < span[1]:
            raise ValueError(
                f"conv2d: padded input size ({x.shape[2] + 2 * P[0]} x {x.shape[3] + 2 * P[1]}) is smaller than "
                f"the dilated kernel size ({span[0]} x {span[1]})"
            )
    return S, P, D


def transposed_shape(x, W, args, output_padding):
    """The output shape (N, OC, OH, OW) of conv_transpose2d, checking ``output_padding`` and the size."""
    stride, padding, dilation = args
    op = pair(output_padding, "output_padding")
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
    return N, OC, OH, OW


# ---- convolution ---------------------------------------------------------------------------


class Conv2d(Function):
    """y = W2 @ im2col(x) + b; backward: gx = col2im(W2.T @ gy), gW = gy @ col.T, gb = sum of gy."""

    def __init__(self, stride, padding, dilation):
        self.args = stride, padding, dilation

    def forward(self, x, W, b):
        self.args = check_args("conv2d", x, W, b, *self.args)
        self.x, self.W, self.has_bias = x, W, b is not None
        return conv_forward(x, W, b, self.args)

    def backward(self, gy):
        x, W = self.x, self.W
        want_gx, want_gW, want_gb = self.needs_input_grad
        gx = conv_input_grad(gy, W, x.shape, self.args) if want_gx else None
        gW = conv_weight_grad(x, gy, W.shape, self.args) if want_gW else None
        gb = gy.sum(axis=(0, 2, 3)) if self.has_bias and want_gb else None
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
        self.args = check_args("conv_transpose2d", x, W, b, *self.args, self.output_padding)
        y_shape = transposed_shape(x, W, self.args, self.output_padding)
        self.x, self.W, self.has_bias = x, W, b is not None
        y = conv_input_grad(x, W, y_shape, self.args)
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        return y

    def backward(self, gy):
        x, W = self.x, self.W
        want_gx, want_gW, want_gb = self.needs_input_grad
        gx = conv_forward(gy, W, None, self.args, x.shape[2:]) if want_gx else None  # the adjoint of the adjoint
        gW = conv_weight_grad(gy, x, W.shape, self.args) if want_gW else None  # input gy, output gradient x
        gb = gy.sum(axis=(0, 2, 3)) if self.has_bias and want_gb else None
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
