"""Layers: each wraps one op from ``minisegnet.ops`` and owns its weights (use them as ``minisegnet.nn.Conv2d``).

Initialisation follows PyTorch's defaults so the same architecture starts from the same distribution:

* convolution weight ~ U(-b, b) with b = 1/sqrt(fan_in): that is ``kaiming_uniform_(a=sqrt(5))``, whose gain
  sqrt(2 / (1 + a^2)) = sqrt(1/3) times sqrt(3) / sqrt(fan_in) gives exactly 1/sqrt(fan_in);
* convolution bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in));
* ``fan_in = weight.shape[1] * KH * KW``. For Conv2d that is C*KH*KW. For ConvTranspose2d, whose weight is
  (C, OC, KH, KW), PyTorch uses the same formula, so its "fan_in" is OC*KH*KW; we copy that on purpose;
* BatchNorm: weight 1, bias 0, running mean 0, running variance 1.
"""

import math

import numpy as np

from . import ops as F
from .nn import Module, Parameter, default_rng
from .ops.sizes import pair as _pair


def _uniform(rng, bound, shape, dtype):
    return Parameter(rng.uniform(-bound, bound, size=shape).astype(dtype))


def _check_channels(value, name):
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _conv_args(module, in_channels, out_channels, kernel_size, stride, padding, dilation):
    # The arguments Conv2d and ConvTranspose2d share, checked and kept under PyTorch's names, (h, w) pairs.
    module.in_channels = _check_channels(in_channels, "in_channels")
    module.out_channels = _check_channels(out_channels, "out_channels")
    module.kernel_size = _pair(kernel_size, "kernel_size")
    module.stride, module.padding = _pair(stride, "stride"), _pair(padding, "padding")
    module.dilation = _pair(dilation, "dilation")


def _conv_params(module, shape, out_channels, bias, rng, dtype):
    # PyTorch's fan_in is weight.shape[1] * KH * KW for both Conv2d and ConvTranspose2d.
    rng = default_rng() if rng is None else rng
    bound = 1.0 / math.sqrt(shape[1] * shape[2] * shape[3])
    module.weight = _uniform(rng, bound, shape, dtype)
    module.bias = _uniform(rng, bound, (out_channels,), dtype) if bias else None


def _conv_repr(m):
    s = f"{m.in_channels}, {m.out_channels}, kernel_size={m.kernel_size}, stride={m.stride}"
    if m.padding != (0, 0):
        s += f", padding={m.padding}"
    if getattr(m, "output_padding", (0, 0)) != (0, 0):
        s += f", output_padding={m.output_padding}"
    if m.dilation != (1, 1):
        s += f", dilation={m.dilation}"
    return s + ("" if m.bias is not None else ", bias=False")


class Conv2d(Module):
    """2-D convolution. x (N, C, H, W) -> (N, OC, OH, OW); weight (OC, C, KH, KW), bias (OC,).

    OH = (H + 2*PH - DH*(KH-1) - 1) // SH + 1 (and the same for OW).
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        bias=True,
        rng=None,
        dtype=np.float32,
    ):
        super().__init__()
        _conv_args(self, in_channels, out_channels, kernel_size, stride, padding, dilation)
        _conv_params(
            self, (self.out_channels, self.in_channels) + self.kernel_size, self.out_channels, bias, rng, dtype
        )

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self):
        return _conv_repr(self)


class ConvTranspose2d(Module):
    """Transposed convolution (the adjoint of Conv2d). x (N, C, H, W) -> (N, OC, OH, OW); weight (C, OC, KH, KW).

    OH = (H - 1)*SH - 2*PH + DH*(KH-1) + output_padding + 1 (and the same for OW).
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        output_padding=0,
        dilation=1,
        bias=True,
        rng=None,
        dtype=np.float32,
    ):
        super().__init__()
        _conv_args(self, in_channels, out_channels, kernel_size, stride, padding, dilation)
        self.output_padding = _pair(output_padding, "output_padding")
        _conv_params(
            self, (self.in_channels, self.out_channels) + self.kernel_size, self.out_channels, bias, rng, dtype
        )

    def forward(self, x):
        return F.conv_transpose2d(
            x, self.weight, self.bias, self.stride, self.padding, self.output_padding, self.dilation
        )

    def extra_repr(self):
        return _conv_repr(self)


class BatchNorm2d(Module):
    """Batch normalisation over (N, H, W) for each of C channels. x (N, C, H, W) -> same shape.

    Training: normalise with the batch mean and (biased) variance and update the running statistics,
    ``running = (1 - momentum) * running + momentum * batch`` (the unbiased variance, as PyTorch does).
    Evaluation: normalise with the running statistics. Then scale by ``weight`` and shift by ``bias``, both (C,).
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        super().__init__()
        self.num_features = _check_channels(num_features, "num_features")
        self.eps, self.momentum = eps, momentum
        C = self.num_features
        self.weight = Parameter(np.ones(C, dtype=dtype))
        self.bias = Parameter(np.zeros(C, dtype=dtype))
        self.register_buffer("running_mean", np.zeros(C, dtype=dtype))
        self.register_buffer("running_var", np.ones(C, dtype=dtype))
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm2d({self.num_features}) expects (N, {self.num_features}, H, W), got {x.shape}")
        if self.training:
            self.num_batches_tracked += 1  # in place, so the 0-d array keeps its identity and device
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, self.training, self.momentum, self.eps
        )

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class ReLU(Module):
    """max(x, 0) elementwise."""

    def forward(self, x):
        return F.relu(x)


class Identity(Module):
    """Returns its input (a placeholder where an optional layer, e.g. a norm, is switched off)."""

    def forward(self, x):
        return x


class MaxPool2d(Module):
    """Max pooling. x (N, C, H, W) -> (N, C, OH, OW); stride defaults to kernel_size.

    With ``return_indices=True`` it returns ``(y, indices)``, the flat position of each maximum in its
    H*W plane, which ``MaxUnpool2d`` uses to put values back.
    """

    def __init__(self, kernel_size, stride=None, padding=0, return_indices=False):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding
        self.return_indices = return_indices

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, return_indices=self.return_indices)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxUnpool2d(Module):
    """The partial inverse of MaxPool2d: x (N, C, H, W) and its indices -> (N, C, OH, OW), zeros elsewhere."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding

    def forward(self, x, indices, output_size=None):
        return F.max_unpool2d(x, indices, self.kernel_size, self.stride, self.padding, output_size)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class Upsample(Module):
    """Fixed (not learned) upsampling by ``scale_factor`` with ``mode`` "nearest" or "bilinear"."""

    def __init__(self, scale_factor=2, mode="nearest", align_corners=False):
        super().__init__()
        if mode not in ("nearest", "bilinear"):
            raise ValueError(f"Upsample mode must be 'nearest' or 'bilinear', got {mode!r}")
        self.scale_factor, self.mode, self.align_corners = scale_factor, mode, align_corners

    def forward(self, x):
        return F.upsample(x, self.scale_factor, self.mode, self.align_corners)

    def extra_repr(self):
        return f"scale_factor={self.scale_factor}, mode={self.mode!r}"


class Dropout2d(Module):
    """Zero whole channels with probability ``p`` while training (scaling the rest by 1/(1-p)); identity in eval."""

    def __init__(self, p=0.5):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout2d probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout2d(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"
