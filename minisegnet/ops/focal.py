"""Focal loss (Lin et al. 2017) on softmax probabilities, with a hand-derived backward."""

from ..backend import get_array_module
from ..tensor import Function
from .activation import log_softmax_array
from .loss import mean_scale, reduced
from .validate import check_choice, check_class_weight, check_finite, check_labels, check_number, constant


class FocalLoss(Function):
    """Pixel i with label t_i: y_i = log p_{i, t_i} (log-softmax over C), q_i = 1 - p_{i, t_i}, a_i = alpha[t_i]
    (1 without alpha, 0 if ignored):

        l_i = -a_i q_i^gamma y_i            (gamma = 0: the cross-entropy a_i (-log p_{i, t_i}))

    reduction "none" returns l (N, H, W); "sum" sum_i l_i; "mean" that sum over the number of counted pixels.

    Backward. dq/dy = -p_t, so dl/dy = -a (q^gamma - gamma q^(gamma - 1) p_t y), and d y / d x_c = [c = t] - p_c:

        dl_i / dx_{i, c} = dl_i/dy_i ([c = t_i] - p_{i, c})

    each times gy (or gy / count for "mean"). q^(gamma - 1) p_t y is taken as 0 where q = 0 (then y = 0 too).
    """

    def __init__(self, gamma, ignore_index, reduction):
        self.gamma, self.ignore_index, self.reduction = gamma, ignore_index, reduction

    def forward(self, x, t, alpha):
        xp = get_array_module(x)
        if x.dtype.kind != "f" or x.ndim < 2:
            raise ValueError(f"focal_loss: logits must be a float array (N, C, ...), got {x.dtype} {tuple(x.shape)}")
        expected = (x.shape[0],) + tuple(x.shape[2:])
        if tuple(t.shape) != expected:
            raise ValueError(
                f"focal_loss: target shape {tuple(t.shape)} does not fit logits {tuple(x.shape)}; expected {expected}"
            )
        check_finite(x, "focal_loss: logits")
        C = x.shape[1]
        check_labels(t, C, self.ignore_index, "focal_loss: target")
        if alpha is not None:
            check_class_weight(alpha, C, "focal_loss: alpha", nonnegative=True)
        valid = xp.ones(t.shape, dtype=bool) if self.ignore_index is None else t != self.ignore_index
        t0 = xp.where(valid, t, 0)
        logp = log_softmax_array(x, axis=1)
        y = xp.take_along_axis(logp, t0[:, None], axis=1)[:, 0]
        pt = xp.exp(y)
        q = -xp.expm1(y)  # 1 - p_t without cancellation
        a = valid.astype(x.dtype) if alpha is None else alpha.astype(x.dtype)[t0] * valid
        qg = q**self.gamma
        loss = -a * qg * y
        # gamma q^(gamma - 1) = gamma q^gamma / q where q > 0; 0 where q = 0 (y = 0 there).
        safe_q = xp.where(q > 0, q, 1)
        self.dy = -a * (qg - xp.where(q > 0, self.gamma * qg / safe_q * pt * y, 0))
        self.p, self.t0, self.C = xp.exp(logp), t0, C
        self.scale = mean_scale(valid.sum(), x.dtype)
        return reduced(loss, self.scale, self.reduction)

    def backward(self, gy):
        xp = get_array_module(gy)
        gy = gy * self.scale if self.reduction == "mean" else gy
        classes = xp.arange(self.C).reshape((1, self.C) + (1,) * (self.p.ndim - 2))
        one_hot = self.t0[:, None] == classes
        return (one_hot - self.p) * (self.dy * gy)[:, None], None, None


def focal_loss(logits, target, gamma=2.0, alpha=None, ignore_index=-100, reduction="mean"):
    """Softmax focal loss, mean over pixels of -alpha_t (1 - p_t)^gamma log p_t; gamma = 0 and no alpha is CE.

    logits (N, C, H, W) (or (N, C)), target integer labels (N, H, W). ``gamma`` >= 0 down-weights pixels already
    classified well. ``alpha``: None, a (C,) list / array of class weights, or a number in [0, 1] meaning
    [1 - alpha, alpha, ..., alpha] (class 0 is the background, as MONAI's and torchvision's alpha). Pixels labelled
    ``ignore_index`` count for nothing. reduction "mean" (over counted pixels; MONAI's FocalLoss(use_softmax=True)
    "mean" also divides by C), "sum" or "none" (N, H, W).

    >>> import numpy as np
    >>> round(focal_loss(np.zeros((1, 2, 1, 1)), np.zeros((1, 1, 1), dtype=int)).item(), 4)  # 0.5^2 log 2
    0.1733
    """
    check_number(gamma, "focal_loss: gamma")
    check_choice(reduction, ("mean", "sum", "none"), "focal_loss: reduction")
    if isinstance(alpha, (int, float)):
        check_number(alpha, "focal_loss: alpha", 0.0, 1.0)
        alpha = [1 - alpha] + [alpha] * (logits.shape[1] - 1)
    alpha = constant(alpha, logits)
    if alpha is not None:
        check_class_weight(
            get_array_module(alpha).asarray(alpha), logits.shape[1], "focal_loss: alpha", nonnegative=True
        )
    return FocalLoss(float(gamma), ignore_index, reduction)(logits, target, constant(alpha, logits))
