"""Fast cross-entropy for integer labels without label smoothing (the training loss); anything else is ops/loss.py's.

On CuPy the forward and the backward are one CUDA kernel each (fast/cuda_fused.py). Elsewhere, with C classes:

- Forward: p = e / sum(e) with e = exp(x - max), computed in p itself, and log p only at the label,
  x_t - max - log sum(e), one value per pixel: five passes over (N, C, ...) and one array (p), where the taught op
  takes log-softmax, then exp of it (six passes, four arrays).
- Backward: gx = p * (w gy) in one pass, then w gy subtracted at each pixel's label (a gather and a scatter of one
  value per pixel), instead of a one-hot array, p - one_hot and the product (three passes, three arrays).
"""

from ...backend import get_array_module
from .. import loss as taught
from . import cuda_fused


class CrossEntropy(taught.CrossEntropy):
    """ops/loss.py's CrossEntropy; its label branch as one CUDA kernel each way, or with p reused, where it applies."""

    def forward(self, x, t, weight, pixel_weight):
        xp = get_array_module(x)
        self.fused = self.lean = False
        if self.eps != 0 or t.dtype.kind not in "iu" or not hasattr(xp, "put_along_axis"):  # (an older CuPy lacks it)
            return super().forward(x, t, weight, pixel_weight)
        self._check(x, t, weight, pixel_weight)
        self.C = x.shape[1]
        fused = None
        if cuda_fused.runs_on(xp) and pixel_weight is None:
            fused = cuda_fused.cross_entropy_forward(x, t, weight, self.ignore_index)
        if fused is not None:  # the same p, w and loss as the label branch of ops/loss.py
            self.fused, (self.p, self.w, loss), self.t0 = True, fused, t
            self.scale = taught.mean_scale(self.w.sum(), x.dtype)
            return taught.reduced(loss, self.scale, self.reduction)
        self.lean = True
        valid = xp.ones(t.shape, dtype=bool) if self.ignore_index is None else t != self.ignore_index
        self.t0 = xp.where(valid, t, 0)[:, None]  # any real class where ignored, so that indexing stays in range
        w = valid.astype(x.dtype) if weight is None else weight.astype(x.dtype)[self.t0[:, 0]] * valid
        self.scale = taught.mean_scale(w.sum(), x.dtype)
        self.w = w if pixel_weight is None else w * pixel_weight.astype(x.dtype)
        p = xp.subtract(x, x.max(axis=1, keepdims=True))
        shifted_t = xp.take_along_axis(p, self.t0, axis=1)[:, 0]  # x_t - max, before p is overwritten
        xp.exp(p, out=p)
        total = p.sum(axis=1)
        p /= total[:, None]
        self.p = p
        loss = -self.w * (shifted_t - xp.log(total))
        return taught.reduced(loss, self.scale, self.reduction)

    def backward(self, gy):
        if self.fused:
            gx = cuda_fused.cross_entropy_backward(self.p, self.t0, self.w, gy, self.scale, self.reduction)
            if gx is not None:
                return gx, None, None, None
        if not self.lean:
            return super().backward(gy)
        xp = get_array_module(gy)
        wg = self.w * (gy * self.scale if self.reduction == "mean" else gy)  # (N, ...): the weight of each pixel
        gx = self.p * wg[:, None]
        at_label = xp.take_along_axis(gx, self.t0, axis=1)
        at_label -= wg[:, None]
        xp.put_along_axis(gx, self.t0, at_label, axis=1)
        return gx, None, None, None
