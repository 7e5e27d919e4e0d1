"""Fast ReLU: ops/activation.py's two NumPy calls on slices of the batch, each slice writing into its part of
one output, on ``set_num_threads(n)`` threads (fast/workspace.py): one core does not use the memory bandwidth
of two, and NumPy releases the GIL in these loops."""

from ...backend import get_array_module
from .. import activation as taught
from .workspace import over_batch


class ReLU(taught.ReLU):
    """ops/activation.py's ReLU, on slices of the batch."""

    def forward(self, x):
        if x.ndim == 0:
            return super().forward(x)
        xp = get_array_module(x)
        y, self.mask = xp.empty_like(x), xp.empty(x.shape, dtype=bool)

        def part(n0, n1):
            mask = xp.greater(x[n0:n1], 0, out=self.mask[n0:n1])
            xp.multiply(x[n0:n1], mask, out=y[n0:n1])

        over_batch(part, x)
        return y

    def backward(self, gy):
        if gy.ndim == 0:
            return super().backward(gy)
        xp = get_array_module(gy)
        gx = xp.empty_like(gy)

        def part(n0, n1):
            xp.multiply(gy[n0:n1], self.mask[n0:n1], out=gx[n0:n1])

        over_batch(part, gy)
        return gx
