"""Shape and reduction ops: sum, mean, max, reshape, transpose, broadcast_to, getitem, concat, pad, center_crop."""

import numpy as np

from ..backend import get_array_module
from ..tensor import Function, as_tensor
from .elementwise import sum_to


def _axes(axis, ndim):
    axes = range(ndim) if axis is None else (axis,) if np.isscalar(axis) else axis
    out = tuple(sorted(a % ndim for a in axes)) if ndim else ()
    for a in axes if axis is not None else ():
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for an array of {ndim} dimensions")
    return out


def _expand(gy, axes, keepdims):
    # Put the reduced axes back as size-1 axes so gy broadcasts against the input.
    if keepdims:
        return gy
    for a in axes:
        gy = get_array_module(gy).expand_dims(gy, a)
    return gy


class Sum(Function):
    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.axes, self.shape = _axes(self.axis, x.ndim), x.shape
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, gy):
        xp = get_array_module(gy)
        return xp.broadcast_to(_expand(gy, self.axes, self.keepdims), self.shape)


def sum(x, axis=None, keepdims=False):
    """Sum of x (any shape) over ``axis`` (int, tuple, or None for all axes)."""
    return Sum(axis, keepdims)(x)


def mean(x, axis=None, keepdims=False):
    """Mean of x (any shape) over ``axis``: the sum divided by the number of elements summed."""
    x = as_tensor(x)
    count = int(np.prod([x.shape[a] for a in _axes(axis, x.ndim)]))
    return sum(x, axis, keepdims) * (1.0 / (count or 1))


class Max(Function):
    """Maximum over axes; the gradient goes to the first maximal element, as argmax picks it."""

    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        xp = get_array_module(x)
        self.axes, self.shape = _axes(self.axis, x.ndim), x.shape
        rest = [a for a in range(x.ndim) if a not in self.axes]
        # Move the reduced axes last and flatten them, so one argmax finds the first maximum.
        flat = x.transpose(rest + list(self.axes)).reshape([x.shape[a] for a in rest] + [-1])
        self.arg = flat.argmax(axis=-1)
        self.perm = rest + list(self.axes)
        y = xp.take_along_axis(flat, self.arg[..., None], axis=-1)[..., 0]
        return _expand(y, self.axes, True) if self.keepdims else y

    def backward(self, gy):
        xp = get_array_module(gy)
        gy = gy.reshape(self.arg.shape)
        n = int(np.prod([self.shape[a] for a in self.axes]))
        gflat = xp.zeros(self.arg.shape + (n,), dtype=gy.dtype)
        xp.put_along_axis(gflat, self.arg[..., None], gy[..., None], axis=-1)
        gx = gflat.reshape([self.shape[a] for a in self.perm])
        return gx.transpose(np.argsort(self.perm))


def max(x, axis=None, keepdims=False):
    """Maximum of x (any shape) over ``axis``; the gradient flows to the first maximal element."""
    return Max(axis, keepdims)(x)


class Reshape(Function):
    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.x_shape = x.shape
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(f"cannot reshape an array of shape {tuple(x.shape)} into {self.shape}") from None

    def backward(self, gy):
        return gy.reshape(self.x_shape)


def reshape(x, shape):
    """The elements of x (any shape) in the new ``shape`` (one entry may be -1)."""
    return Reshape(shape)(x)


class Transpose(Function):
    def __init__(self, axes):
        self.axes = axes

    def forward(self, x):
        if self.axes is not None and sorted(a % x.ndim for a in self.axes) != list(range(x.ndim)):
            raise ValueError(f"transpose axes {tuple(self.axes)} are not a permutation of {x.ndim} axes")
        return x.transpose(self.axes)

    def backward(self, gy):
        return gy.transpose(None if self.axes is None else np.argsort([a % gy.ndim for a in self.axes]))


def transpose(x, axes=None):
    """Permute the axes of x (any shape; reversed when ``axes`` is None); the adjoint applies the inverse."""
    return Transpose(axes)(x)


class BroadcastTo(Function):
    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.x_shape = x.shape
        return get_array_module(x).broadcast_to(x, self.shape)

    def backward(self, gy):
        return sum_to(gy, self.x_shape)


def broadcast_to(x, shape):
    """x repeated along new or size-1 axes to ``shape`` (NumPy broadcasting rules); the adjoint is ``sum_to``."""
    return BroadcastTo(shape)(x)


def _check_basic_index(index):
    for i in index if isinstance(index, tuple) else (index,):
        if not (i is None or i is Ellipsis or isinstance(i, (slice, int, np.integer))):
            raise TypeError(f"only basic indexing (ints, slices, None, ...) is differentiable, got {type(i).__name__}")


class GetItem(Function):
    def __init__(self, index):
        _check_basic_index(index)
        self.index = index

    def forward(self, x):
        self.x_shape, self.dtype = x.shape, x.dtype
        try:
            return x[self.index]
        except IndexError as e:
            raise IndexError(f"index {self.index!r} does not fit an array of shape {tuple(x.shape)}: {e}") from None

    def backward(self, gy):
        # Basic indexing never selects an element twice, so plain assignment is the adjoint.
        gx = get_array_module(gy).zeros(self.x_shape, dtype=self.dtype)
        gx[self.index] = gy
        return gx


def getitem(x, index):
    """x[index] for x of any shape and basic slicing; the gradient is scattered back into zeros of x's shape."""
    return GetItem(index)(x)


class Concat(Function):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, *xs):
        first = xs[0]
        axis = self.axis % first.ndim
        for x in xs[1:]:
            bad = [a for a in range(first.ndim) if a != axis and x.shape[a] != first.shape[a]]
            if x.ndim != first.ndim or bad:
                raise ValueError(
                    f"concat on axis {self.axis}: shapes {tuple(first.shape)} and {tuple(x.shape)} "
                    f"differ on axes {bad or 'count'} (only axis {self.axis} may differ)"
                )
        self.sizes = [x.shape[axis] for x in xs]
        return get_array_module(*xs).concatenate(xs, axis=axis)

    def backward(self, gy):
        # The adjoint of concatenation is the split at the same boundaries.
        bounds = np.cumsum(self.sizes)[:-1].tolist()
        return tuple(get_array_module(gy).split(gy, bounds, axis=self.axis))


def concat(tensors, axis=1):
    """Join tensors along ``axis`` (channels of (N, C, H, W) by default); other sizes must agree."""
    if len(tensors) == 0:
        raise ValueError("concat needs at least one tensor")
    return Concat(axis)(*tensors)


class Pad(Function):
    def __init__(self, pad_width, value):
        self.pad_width, self.value = pad_width, value

    def forward(self, x):
        width = np.broadcast_to(np.asarray(self.pad_width, dtype=int), (x.ndim, 2))
        if (width < 0).any():
            raise ValueError(f"pad widths must be >= 0, got {self.pad_width}")
        self.crop = tuple(slice(b, b + n) for (b, _), n in zip(width.tolist(), x.shape))
        return get_array_module(x).pad(x, width.tolist(), mode="constant", constant_values=self.value)

    def backward(self, gy):
        return gy[self.crop]


def pad(x, pad_width, value=0.0):
    """Constant padding of x (any shape) with NumPy's ``pad_width``: an int, (before, after), or a pair per axis."""
    return Pad(pad_width, value)(x)


def center_crop(x, size):
    """The central (H, W) window of x (N, C, H0, W0) with H <= H0, W <= W0 (U-Net's skip cropping)."""
    x = as_tensor(x)
    H, W = (size, size) if np.isscalar(size) else size
    H0, W0 = x.shape[-2:]
    if H > H0 or W > W0:
        raise ValueError(f"center_crop to ({H}, {W}) is larger than the input's ({H0}, {W0})")
    top, left = (H0 - H) // 2, (W0 - W) // 2
    return getitem(x, (Ellipsis, slice(top, top + H), slice(left, left + W)))
