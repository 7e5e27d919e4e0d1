"""Fixed (not learned) upsampling: nearest neighbour, bilinear, and bed of nails.

Each is linear in x, so each backward is the transpose (adjoint) of its forward: nearest's repeat becomes a
block sum, bed of nails' strided write becomes a strided read, and bilinear's interpolation matrix is
transposed. (Max unpooling lives in pool.py beside the max pooling that makes its indices.)
"""

import numpy as np

from ..backend import get_array_module
from ..tensor import Function
from .pool import _check_4d
from .sizes import pair


def _scale(scale_factor, op):
    """A positive integer scale factor as (SH, SW); integral floats such as 2.0 are accepted, 1.5 is not."""
    factors = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor, scale_factor)
    factors = [int(s) if isinstance(s, float) and s.is_integer() else s for s in factors]
    SH, SW = pair(factors if len(factors) == 2 else scale_factor, "scale_factor", op)
    if SH <= 0 or SW <= 0:
        raise ValueError(f"{op}: scale_factor must be positive, got ({SH}, {SW})")
    return SH, SW


class BedOfNails(Function):
    """y[..., s*h, s*w] = x[..., h, w] and zeros elsewhere; gx = gy[..., ::s, ::s] (the adjoint)."""

    def __init__(self, scale):
        self.scale = scale

    def forward(self, x):
        xp = get_array_module(x)
        _check_4d(x, "bed_of_nails")
        (N, C, H, W), (SH, SW) = x.shape, self.scale
        y = xp.zeros((N, C, H * SH, W * SW), dtype=x.dtype)
        y[:, :, ::SH, ::SW] = x
        return y

    def backward(self, gy):
        SH, SW = self.scale
        return gy[:, :, ::SH, ::SW]


def bed_of_nails(x, scale_factor=2):
    """Upsample by putting each value at the top-left of its s x s block, zeros elsewhere.

    x (N, C, H, W) -> y (N, C, H*SH, W*SW); ``scale_factor`` is a positive int or (SH, SW) pair.
    """
    return BedOfNails(_scale(scale_factor, "bed_of_nails"))(x)


class NearestRepeat(Function):
    """y = x repeated SH times along H and SW times along W; gx sums each SH x SW block of gy.

    Both are loops over the SH*SW positions (i, j) inside a block: y[..., i::SH, j::SW] is a copy of x, so
    forward writes x into each of those strided slices and backward adds them up. (A reshape to
    (N, C, H, SH, W, SW) and ``sum(axis=(3, 5))`` says the same but runs several times slower in NumPy.)
    """

    def __init__(self, scale):
        self.scale = scale

    def forward(self, x):
        xp = get_array_module(x)
        (N, C, H, W), (SH, SW) = x.shape, self.scale
        y = xp.empty((N, C, H * SH, W * SW), dtype=x.dtype)
        for i in range(SH):
            for j in range(SW):
                y[:, :, i::SH, j::SW] = x
        return y

    def backward(self, gy):
        SH, SW = self.scale
        gx = gy[:, :, ::SH, ::SW].copy()
        for i in range(SH):
            for j in range(SW):
                if i or j:
                    gx += gy[:, :, i::SH, j::SW]
        return gx


def _nearest_matrix(n_in, n_out, factor):
    """(n_out, n_in) 0/1 matrix of PyTorch's 'nearest': source = min(floor(dst * scale), n_in - 1).

    PyTorch computes ``dst * scale`` in float32 (scale = 1/scale_factor, or n_in/n_out when a size is given);
    doing the same here picks the same source pixel even where rounding matters.
    """
    scale = np.float32(1.0 / factor) if factor is not None else np.float32(n_in / n_out)
    src = np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64), n_in - 1)
    A = np.zeros((n_out, n_in))
    A[np.arange(n_out), src] = 1.0
    return A


def _linear_matrix(n_in, n_out, factor, align_corners):
    """(n_out, n_in) matrix of PyTorch's 1-D linear interpolation; each row holds two weights summing to 1.

    Source coordinate of output pixel dst:
      align_corners=True:  src = dst * (n_in - 1) / (n_out - 1)   (corner pixel centres line up)
      align_corners=False: src = (dst + 0.5) * ratio - 0.5, clamped at 0, with ratio = 1/factor (the scale
                           factor), or n_in/n_out when a size is given (factor None)   (pixel areas line up)
    then y[dst] = (1 - t) * x[i0] + t * x[i1] with i0 = floor(src), i1 = min(i0 + 1, n_in - 1), t = src - i0.
    """
    dst = np.arange(n_out, dtype=np.float64)
    if n_in == n_out:
        src = dst  # PyTorch copies the axis unchanged
    elif align_corners:
        src = dst * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        ratio = 1.0 / factor if factor is not None else n_in / n_out
        src = np.maximum((dst + 0.5) * ratio - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    t = np.clip(src - i0, 0.0, 1.0)
    i1 = np.minimum(i0 + 1, n_in - 1)
    rows = np.arange(n_out)
    A = np.zeros((n_out, n_in))
    A[rows, i0] = 1.0 - t
    A[rows, i1] += t  # each row is written once per line, so `+=` is safe (i1 == i0 only at the last pixel)
    return A


class Interpolate2d(Function):
    """y = A_H x A_W^T on the last two axes: separable interpolation with one small matrix per axis.

    A 1-D nearest or linear interpolation is a linear map, i.e. a matrix A (n_out, n_in) whose row dst holds
    the one or two weights of dst's source pixels. Building the two matrices once costs nothing (they have
    n_out * n_in entries) and turns the whole op into two matrix products: no index gathers, and no
    scatter-add in the backward, which is simply multiplication by the transposes, gx = A_H^T gy A_W.
    The H pass is ``A_H @ x``, one small product per (n, c) plane; the W pass multiplies all N*C*OH rows at
    once by A_W^T, one large product. Every operand is a contiguous array, transposes included: NumPy's
    stacked ``@`` with a transposed view (``x @ A.T``) can fall off BLAS and run 10x slower.
    """

    def __init__(self, build, key):
        self.build, self.key = build, key  # build() -> (AH, AW) as float64 NumPy arrays

    def forward(self, x):
        self.AH, self.AHt, self.AW, self.AWt = _device_matrices(x, self.build, self.key)
        N, C, H, W = self.x_shape = x.shape
        OH, OW = self.AH.shape[0], self.AW.shape[0]
        return ((self.AH @ x).reshape(N * C * OH, W) @ self.AWt).reshape(N, C, OH, OW)

    def backward(self, gy):
        N, C, OH, OW = gy.shape
        W = self.x_shape[3]
        return self.AHt @ (gy.reshape(N * C * OH, OW) @ self.AW).reshape(N, C, OH, W)


_cache = {}


def _device_matrices(x, build, key):
    # (AH, AH.T, AW, AW.T) as contiguous arrays in x's dtype on x's device, built once per size, mode,
    # dtype and device: on a GPU this saves four host-to-device copies on every call.
    full = key + (x.dtype.str, str(getattr(x, "device", "cpu")))
    if full not in _cache:
        xp = get_array_module(x)
        if len(_cache) > 64:  # a bounded cache: a few sizes per network, not every size ever seen
            _cache.clear()
        AH, AW = (xp.asarray(A, dtype=x.dtype) for A in build())
        _cache[full] = AH, xp.ascontiguousarray(AH.T), AW, xp.ascontiguousarray(AW.T)
    return _cache[full]


_MODES = ("nearest", "bilinear")


def upsample(x, scale_factor=None, mode="nearest", align_corners=False, size=None):
    """Resize x (N, C, H, W) -> (N, C, OH, OW), as ``torch.nn.functional.interpolate``.

    Give either ``scale_factor`` (a positive int or (SH, SW) pair; default 2 when ``size`` is not given):
    OH = H*SH, OW = W*SW; or ``size`` = (OH, OW). ``mode`` is "nearest" (copy the nearest source pixel) or
    "bilinear" (weighted mean of the 2 x 2 nearest pixels); ``align_corners`` (bilinear only) chooses
    PyTorch's source-coordinate convention, see ``_linear_matrix``.
    """
    op = "upsample"
    if mode not in _MODES:
        raise ValueError(f"{op}: mode must be one of {_MODES}, got {mode!r}")
    if align_corners and mode == "nearest":
        raise ValueError(f"{op}: align_corners=True only applies to mode='bilinear', not {mode!r}")
    _check_4d(x, op)
    H, W = x.shape[2:]
    if size is not None:
        if scale_factor is not None:
            raise ValueError(f"{op}: give either size or scale_factor, not both (got {size!r} and {scale_factor!r})")
        OH, OW = pair(size, "size", op)
        if OH <= 0 or OW <= 0:
            raise ValueError(f"{op}: size must be positive, got ({OH}, {OW})")
        SH = SW = None
    else:
        SH, SW = _scale(2 if scale_factor is None else scale_factor, op)
        OH, OW = H * SH, W * SW
    if mode == "nearest" and OH % H == 0 and OW % W == 0:
        # An integer factor: PyTorch's floor(dst / factor) is exactly a repeat (checked against torch in the tests).
        return NearestRepeat((OH // H, OW // W))(x)
    if mode == "nearest":

        def build():
            return _nearest_matrix(H, OH, SH), _nearest_matrix(W, OW, SW)
    else:

        def build():
            return _linear_matrix(H, OH, SH, align_corners), _linear_matrix(W, OW, SW, align_corners)

    return Interpolate2d(build, (mode, align_corners, H, W, OH, OW, SH, SW))(x)
