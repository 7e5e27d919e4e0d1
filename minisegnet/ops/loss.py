"""Losses: pixel-wise cross-entropy, binary cross-entropy with logits, and Dice + cross-entropy.

Cross-entropy and BCE are each one Function with a hand-derived backward (soft Dice lives in dice.py). Class weights
and pixel weights are constants: they may be arrays or Tensors, and no gradient flows into them.
"""

import inspect

import numpy as np

from ..backend import get_array_module
from ..tensor import Function
from .activation import log_softmax_array, sigmoid_array, softmax
from .dice import soft_dice_loss
from .validate import (
    check_class_weight,
    check_finite,
    check_int_not_one_hot,
    check_labels,
    check_number,
    check_unit_interval,
    constant,
)

REDUCTIONS = ("mean", "sum", "none")
# The switches of soft_dice_loss that dice_ce_loss passes on by name; weight, ignore_index and reduce_batch are
# dice_ce_loss's own arguments (dice_weight is the Dice weight).
DICE_SWITCHES = tuple(
    name
    for name in inspect.signature(soft_dice_loss).parameters
    if name not in ("probs", "target", "weight", "ignore_index", "reduce_batch")
)


def mean_scale(count, dtype):
    """1 / count, or 0 when nothing is counted: decided on the device, so no value is read back."""
    xp = get_array_module(count)
    return xp.where(count > 0, 1 / xp.where(count > 0, count, 1), 0).astype(dtype)


def reduced(loss, scale, reduction):
    """The per-pixel ``loss`` as ``reduction`` asks: itself ("none"), its sum, or its sum times ``scale`` ("mean")."""
    if reduction == "none":
        return loss
    return loss.sum() * scale if reduction == "mean" else loss.sum()


def _check_reduction(reduction, what):
    if reduction not in REDUCTIONS:
        raise ValueError(f"{what}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


class CrossEntropy(Function):
    """Pixel i has logits x_i (C,), label t_i, and weight w_i = weight[t_i] * pixel_weight_i (0 if ignored).

    Forward, with log p_{i, c} = x_{i, c} - log sum_k exp x_{i, k} (the shared log-sum-exp of activation.py):

        l_i = -(1 - eps) w_i log p_{i, t_i} - (eps / C) r_i sum_c weight_c log p_{i, c}

    with eps = ``label_smoothing`` and r_i = pixel_weight_i (0 if ignored); eps = 0 is the plain -w_i log p_{i, t_i}.
    A soft target q (N, C, ...) gives l_i = -r_i sum_c weight_c q'_{i, c} log p_{i, c}, q' = (1 - eps) q + eps / C.
    Both are l_i = -sum_c u_{i, c} log p_{i, c} for some constant u >= 0. Reduction "none" returns l; "sum" returns
    S = sum_i l_i; "mean" returns S / D with D = sum_i weight[t_i] over counted pixels (soft targets: D = the number
    of pixels), PyTorch's normaliser; pixel weights are not in it. When D = 0 (every pixel ignored, or only classes of
    weight 0 counted) the mean is 0 with a zero gradient; PyTorch returns NaN there.

    Backward. d log p_{i, k} / d x_{i, c} = [c = k] - p_{i, c}, so

        dl_i / dx_{i, c} = (sum_k u_{i, k}) p_{i, c} - u_{i, c}.

    Labels: w_i (p_{i, c} - [c = t_i]) scaled by 1 - eps, plus (eps / C) r_i (p_{i, c} sum_k weight_k - weight_c).
    Then times gy ("none", "sum") or gy / D ("mean").
    """

    def __init__(self, ignore_index, reduction, label_smoothing):
        self.ignore_index, self.reduction, self.eps = ignore_index, reduction, label_smoothing

    def forward(self, x, t, weight, pixel_weight):
        xp = get_array_module(x)
        self._check(x, t, weight, pixel_weight)
        C = x.shape[1]
        shape = (1, C) + (1,) * (x.ndim - 2)
        logp = log_softmax_array(x, axis=1)
        self.p, self.C = xp.exp(logp), C
        wc = 1 if weight is None else weight.astype(x.dtype).reshape(shape)
        if self.soft:  # probabilities (N, C, ...): u = r weight_c q'
            q = t.astype(x.dtype) * (1 - self.eps) + self.eps / C
            self.u = q * wc if pixel_weight is None else q * wc * pixel_weight.astype(x.dtype)[:, None]
            D = xp.asarray(t[:, 0].size, dtype=x.dtype)
            loss = -(self.u * logp).sum(axis=1)
            self.t0 = None
        else:
            valid = xp.ones(t.shape, dtype=bool) if self.ignore_index is None else t != self.ignore_index
            t0 = xp.where(valid, t, 0)  # any real class where ignored, so that indexing stays in range
            w = valid.astype(x.dtype) if weight is None else weight.astype(x.dtype)[t0] * valid
            D = w.sum()
            r = valid.astype(x.dtype)
            if pixel_weight is not None:
                w = w * pixel_weight.astype(x.dtype)
                r = r * pixel_weight.astype(x.dtype)
            loss = -w * xp.take_along_axis(logp, t0[:, None], axis=1)[:, 0]
            if self.eps > 0:
                loss = loss * (1 - self.eps) - (self.eps / C) * r * (logp * wc).sum(axis=1)
                self.r, self.wc, self.weight_sum = r, wc, C if weight is None else weight.astype(x.dtype).sum()
            self.w, self.t0 = w, t0
        self.scale = mean_scale(D, x.dtype)
        return reduced(loss, self.scale, self.reduction)

    def backward(self, gy):
        xp = get_array_module(gy)
        gy = gy * self.scale if self.reduction == "mean" else gy
        if self.t0 is None:
            gy = gy[:, None] if gy.ndim else gy
            return (self.u.sum(axis=1, keepdims=True) * self.p - self.u) * gy, None, None, None
        classes = xp.arange(self.C).reshape((1, self.C) + (1,) * (self.p.ndim - 2))
        one_hot = self.t0[:, None] == classes
        gx = (self.p - one_hot) * (self.w * gy)[:, None]
        if self.eps > 0:
            gx = (
                gx * (1 - self.eps)
                + (self.eps / self.C) * (self.p * self.weight_sum - self.wc) * (self.r * gy)[:, None]
            )
        return gx, None, None, None

    def _check(self, x, t, weight, pixel_weight):
        if x.dtype.kind != "f" or x.ndim < 2:
            raise ValueError(f"cross_entropy: logits must be a float array (N, C, ...), got {x.dtype} {tuple(x.shape)}")
        expected = (x.shape[0],) + tuple(x.shape[2:])
        check_finite(x, "cross_entropy: logits")
        self.soft = t.dtype.kind in "fb" and tuple(t.shape) == tuple(x.shape)
        if self.soft:
            check_unit_interval(t, "cross_entropy: a probability target")
            if self.ignore_index not in (None, -100):
                raise ValueError(f"cross_entropy: ignore_index={self.ignore_index} needs integer labels, not probs")
        else:
            check_int_not_one_hot(t, x.ndim, "cross_entropy")
            if tuple(t.shape) != expected:
                raise ValueError(
                    f"cross_entropy: target shape {tuple(t.shape)} does not match logits shape {tuple(x.shape)}; "
                    f"expected {expected} (labels) or {tuple(x.shape)} (probabilities)"
                )
            check_labels(t, x.shape[1], self.ignore_index, "cross_entropy: target")
        if weight is not None:
            check_class_weight(weight, x.shape[1], "cross_entropy: weight")
        if pixel_weight is not None and tuple(pixel_weight.shape) != expected:
            raise ValueError(
                f"cross_entropy: pixel_weight shape {tuple(pixel_weight.shape)} does not match target shape {expected}"
            )


def cross_entropy(
    logits, target, weight=None, ignore_index=-100, reduction="mean", pixel_weight=None, label_smoothing=0.0
):
    """Softmax cross-entropy per pixel, as torch.nn.functional.cross_entropy (class-index or probability targets).

    logits (N, C) or (N, C, H, W) (any trailing axes); target integer labels (N) or (N, H, W), or float
    probabilities (N, C, H, W) (soft targets, as torch: each pixel's loss -sum_c weight_c q_c log p_c, and "mean"
    divides by the number of pixels; ``ignore_index`` does not apply to them). weight (C,) class weights,
    pixel_weight (N, H, W) (e.g. U-Net border weights from ``unet_weight_map``) multiplying each pixel's loss.
    ``label_smoothing`` eps in [0, 1] mixes the target with the uniform distribution, (1 - eps) target + eps / C
    (torch's formula, class weights included). Pixels whose label is ``ignore_index`` count for nothing.
    reduction "mean" -> scalar divided by the summed class weights of the counted pixels (pixel_weight is NOT in
    that normaliser, so with weight=None and nothing ignored it is the plain mean of pixel_weight * loss over
    pixels); "sum" -> scalar; "none" -> (N) or (N, H, W), 0 where ignored. If every pixel is ignored, "mean" gives 0
    and a zero gradient (PyTorch gives NaN).

    At initialisation (equal scores) every class has probability 1 / C, so the loss is log C:

    >>> import numpy as np
    >>> round(cross_entropy(np.zeros((2, 4, 3, 3)), np.zeros((2, 3, 3), dtype=int)).item(), 4)  # log 4
    1.3863
    """
    _check_reduction(reduction, "cross_entropy")
    check_number(label_smoothing, "cross_entropy: label_smoothing", 0.0, 1.0)
    f = CrossEntropy(ignore_index, reduction, float(label_smoothing))
    return f(logits, target, constant(weight, logits), pixel_weight)


class BCEWithLogits(Function):
    """l = -[q t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))] with q = pos_weight (1 when None).

    With L = log(1 + e^-|x|), log sigmoid(x) = -max(-x, 0) - L and log(1 - sigmoid(x)) = -max(x, 0) - L, so

        l = (1 - t) max(x, 0) + q t max(-x, 0) + c L,   c = 1 + (q - 1) t

    a sum of terms >= 0 that neither overflows nor cancels (q = 1 gives the familiar max(x, 0) - x t + L).

    Backward. d/dx log sigmoid(x) = sigmoid(-x) and d/dx log(1 - sigmoid(x)) = -sigmoid(x), so

        dl/dx = (1 - t) sigmoid(x) - q t sigmoid(-x)      (= sigmoid(x) - t when q = 1)
        dl/dt = -x + (q - 1) (max(-x, 0) + L)

    each times gy, and times 1 / (number of elements) for "mean".
    """

    def __init__(self, reduction):
        self.reduction = reduction

    def forward(self, x, t, q):
        xp = get_array_module(x)
        if x.dtype.kind != "f":
            raise ValueError(f"binary_cross_entropy_with_logits: logits must be float, got {x.dtype}")
        if tuple(t.shape) != tuple(x.shape):
            raise ValueError(
                f"binary_cross_entropy_with_logits: target shape {tuple(t.shape)} does not match logits shape "
                f"{tuple(x.shape)}"
            )
        check_finite(x, "binary_cross_entropy_with_logits: logits")
        t = t.astype(x.dtype)
        check_unit_interval(t, "binary_cross_entropy_with_logits: target")
        q = None if q is None else self._pos_weight(q, x)
        qt = t if q is None else q * t
        L = xp.log1p(xp.exp(-xp.abs(x)))
        loss = (1 - t) * xp.maximum(x, 0) + qt * xp.maximum(-x, 0) + (L if q is None else (1 + (q - 1) * t) * L)
        self.x, self.t, self.qt, self.q, self.L = x, t, qt, q, L
        self.n = 1.0 / max(loss.size, 1) if self.reduction == "mean" else 1.0  # the mean of nothing is 0, as in CE
        return loss if self.reduction == "none" else loss.sum() * self.n

    def backward(self, gy):
        xp = get_array_module(gy)
        gy = gy * self.n
        sig = sigmoid_array(self.x)  # sigmoid(-x) = 1 - sig would lose the tiny values, so it gets its own call
        sig_neg = sigmoid_array(-self.x)
        gx = gy * ((1 - self.t) * sig - self.qt * sig_neg)
        gt = None
        if self.needs_input_grad[1]:
            gt = gy * (-self.x if self.q is None else -self.x + (self.q - 1) * (xp.maximum(-self.x, 0) + self.L))
        return gx, gt, None

    def _pos_weight(self, q, x):
        q = q.astype(x.dtype)
        if q.ndim == 1 and x.ndim > 2:  # (C,) weighs the class axis 1 of (N, C, H, W)
            check_class_weight(q, x.shape[1], "binary_cross_entropy_with_logits: pos_weight")
            q = q.reshape((-1,) + (1,) * (x.ndim - 2))
        try:
            ok = np.broadcast_shapes(q.shape, x.shape) == tuple(x.shape)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                f"binary_cross_entropy_with_logits: pos_weight shape {tuple(q.shape)} does not broadcast to logits "
                f"shape {tuple(x.shape)}"
            )
        return q


def binary_cross_entropy_with_logits(logits, target, pos_weight=None, reduction="mean"):
    """Sigmoid + binary cross-entropy in one stable step, for multi-label masks.

    logits (N, C, H, W) (any shape), target of the same shape with values in [0, 1] (float, bool or int),
    pos_weight (C,) multiplies the loss of positive targets of class c. A (C,) pos_weight weighs axis 1 of a 3-D or
    larger input; PyTorch broadcasts it against the LAST axis, so its equivalent for (N, C, H, W) is a (C, 1, 1)
    pos_weight (which works here too). reduction "mean" (over all elements), "sum" or "none".
    """
    _check_reduction(reduction, "binary_cross_entropy_with_logits")
    return BCEWithLogits(reduction)(logits, target, constant(pos_weight, logits))


def dice_ce_loss(
    logits,
    target,
    lambda_dice=1.0,
    lambda_ce=1.0,
    weight=None,
    ignore_index=-100,
    pixel_weight=None,
    *,
    dice_weight=None,
    reduce_batch=True,
    **dice_switches,
):
    """lambda_ce * cross_entropy(logits, target) + lambda_dice * soft_dice_loss(softmax(logits), target).

    logits (N, C, H, W), target integer labels (N, H, W). ``weight``, ``ignore_index`` and ``pixel_weight`` go to
    the cross-entropy; ``ignore_index`` also masks those pixels out of the Dice sums. ``dice_weight`` is the Dice
    ``weight``, and every other keyword is a switch of ``soft_dice_loss`` passed to it by name (``smooth``,
    ``squared``, ``include_background``, ``jaccard``, ``alpha`` / ``beta``, ``log_loss``, ``reduction``, ...,
    acting on the Dice term only); an unknown name is an error. A lambda of 0 leaves its term out (not computed),
    so this one function is the "ce", "dice" and "ce+dice" of ``recipe.make_loss``. Built from the library's ops,
    so its gradient is the sum of the two hand-derived ones.

    ``reduce_batch=True`` (batch Dice, one Dice per class over the whole batch) is the default here, while
    ``soft_dice_loss`` keeps the lesson's per-image terms. Per image, a class the image lacks scores a perfect term
    for predicting nothing, so a network trained on per-image Dice is pulled towards predicting background (lesson
    8, section 4); in batch Dice a class is empty only when the whole batch lacks it.

    >>> import numpy as np
    >>> z, t = np.zeros((1, 2, 2, 2)), np.array([[[0, 1], [1, 1]]])
    >>> dice = dice_ce_loss(z, t, lambda_ce=0)  # probabilities 1/2 everywhere: batch soft Dice, then soft IoU
    >>> round(dice.item(), 4), round(dice_ce_loss(z, t, lambda_ce=0, jaccard=True).item(), 4)
    (0.375, 0.5333)
    """
    unknown = [name for name in dice_switches if name not in DICE_SWITCHES]
    if unknown:
        raise TypeError(
            f"dice_ce_loss: unknown argument {unknown[0]!r}; expected a soft_dice_loss switch "
            f"({', '.join(DICE_SWITCHES)}) or one of lambda_dice, lambda_ce, weight, ignore_index, pixel_weight, "
            "dice_weight, reduce_batch"
        )
    for name, lam in (("lambda_dice", lambda_dice), ("lambda_ce", lambda_ce)):
        check_number(lam, f"dice_ce_loss: {name}")
    if lambda_ce != 0 and lambda_dice != 0 and dice_switches.get("reduction", "mean") == "none":
        raise ValueError(
            "dice_ce_loss: reduction='none' gives one Dice loss per term, which cannot be added to the "
            "cross-entropy's mean; expected 'mean' or 'sum', or lambda_ce=0"
        )
    total = None
    if lambda_ce != 0:
        ce = cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, pixel_weight=pixel_weight)
        total = ce * lambda_ce
    if lambda_dice != 0:
        probs = softmax(logits, axis=1)
        dice = soft_dice_loss(
            probs, target, weight=dice_weight, ignore_index=ignore_index, reduce_batch=reduce_batch, **dice_switches
        )
        total = dice * lambda_dice if total is None else total + dice * lambda_dice
    if total is None:
        raise ValueError("dice_ce_loss: lambda_dice and lambda_ce are both 0; expected at least one > 0")
    return total
