"""Fast activations: ops/activation.py's ReLU, softmax and log-softmax in fewer passes over memory.

- ReLU keeps its output y instead of a mask: y > 0 exactly where x > 0, so the backward rebuilds the mask from
  y one cache-sized block at a time (fast/blocks.py) and no mask as large as x is ever written. Forward: one
  pass, y = max(x, 0), where the taught op also writes and keeps the mask x > 0.
- Softmax divides e = exp(x - max) by its sum in place instead of taking exp(log-softmax): one array
  allocated instead of four. Its backward writes every pass into gx.
- Log-softmax writes exp(x - max) into a reused scratch buffer: the same passes, two allocations fewer.

ReLU's slices of the batch run on ``set_num_threads(n)`` threads (fast/workspace.py).
"""

from ...backend import get_array_module
from .. import activation as taught
from .blocks import as_rows, over_blocks
from .workspace import over_batch, scratch


class ReLU(taught.ReLU):
    """ops/activation.py's ReLU for float arrays with one dimension or more; keeps y, not a mask."""

    def forward(self, x):
        self.y = None
        if x.ndim == 0 or x.dtype.kind != "f":
            return super().forward(x)
        xp = get_array_module(x)
        y = xp.empty(x.shape, dtype=x.dtype)  # C-contiguous, whatever x's strides: the backward reads it in rows
        over_batch(lambda n0, n1: xp.maximum(x[n0:n1], 0, out=y[n0:n1]), x)
        self.y = y
        return y

    def backward(self, gy):
        if self.y is None:
            return super().backward(gy)
        xp = get_array_module(gy)
        per_image = self.y.size // max(1, len(self.y))  # one row per element
        G, Y = as_rows(xp.ascontiguousarray(gy), per_image), as_rows(self.y, per_image)
        gx = xp.empty(gy.shape, dtype=gy.dtype)
        GX = as_rows(gx, per_image)
        flag = xp.empty(0, dtype=bool)  # names the dtype of the mask's scratch buffer

        def block(r0, r1):
            mask = xp.greater(Y[r0:r1], 0, out=scratch(flag, "relu_mask", (r1 - r0, 1)))
            xp.multiply(G[r0:r1], mask, out=GX[r0:r1])

        over_blocks(block, gx, per_image)
        return gx


class Softmax(taught.Softmax):
    """ops/activation.py's Softmax: y = e / sum(e) with e = exp(x - max), computed in y itself."""

    def forward(self, x):
        if x.dtype.kind != "f":
            return super().forward(x)
        xp = get_array_module(x)
        y = xp.subtract(x, x.max(axis=self.axis, keepdims=True))
        xp.exp(y, out=y)
        y /= y.sum(axis=self.axis, keepdims=True)
        self.y = y
        return y

    def backward(self, gy):
        # gx = y * (gy - sum(gy * y)): the product, its sum, then the difference and the product again in place.
        xp = get_array_module(gy)
        gx = xp.multiply(gy, self.y)
        s = gx.sum(axis=self.axis, keepdims=True)
        xp.subtract(gy, s, out=gx)
        gx *= self.y
        return gx


class LogSoftmax(taught.LogSoftmax):
    """ops/activation.py's LogSoftmax: y = (x - max) - log sum exp(x - max), the exponentials in a scratch buffer."""

    def forward(self, x):
        if x.dtype.kind != "f":
            return super().forward(x)
        xp = get_array_module(x)
        y = xp.subtract(x, x.max(axis=self.axis, keepdims=True))
        e = xp.exp(y, out=scratch(y, "log_softmax", y.shape))
        y -= xp.log(e.sum(axis=self.axis, keepdims=True))
        self.y = y
        return y

    def backward(self, gy):
        # gx = gy - exp(y) * sum(gy), built in gx: exp, scale, add.
        if gy.dtype != self.y.dtype:
            return super().backward(gy)
        xp = get_array_module(gy)
        gx = xp.exp(self.y)
        gx *= -gy.sum(axis=self.axis, keepdims=True)
        gx += gy
        return gx
