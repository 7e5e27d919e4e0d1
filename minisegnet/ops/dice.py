"""Soft Dice loss with a hand-derived backward, and the label checks it shares with loss.py.

Notation of the code: p = probs (N, C, H, W), g = target as one-hot (N, C, H, W), m = 1 on counted pixels and 0 on
ignored ones. For one Dice term (one image and class, or one class over the batch) with sums over its pixels:

    I = sum m p g          U = sum m p^2 + sum m g^2   (squared=True)      d = (2 I + s) / (U + s)
                           U = sum m p   + sum m g     (squared=False)

The loss is L = 1 - sum_{terms} a d, where a holds the averaging weights (1 / (N * C) by default).
"""

from ..backend import get_array_module
from ..tensor import Function


def constant(a, like):
    """A list or number given as a class / pixel weight, made an array on ``like``'s device; arrays pass through."""
    if isinstance(a, (list, tuple, int, float)):
        return get_array_module(like).asarray(a, dtype=float)
    return a


def first_bad(a, bad):
    """The first element of ``a`` where the boolean array ``bad`` holds, as a Python number (for error messages)."""
    return a[bad].ravel()[0].item()


def check_finite(x, what):
    """Raise a ValueError naming the first NaN or Inf in ``x``."""
    xp = get_array_module(x)
    finite = xp.isfinite(x)
    if not bool(finite.all()):
        raise ValueError(f"{what} contains {first_bad(x, ~finite)} at least once; expected finite values")


def check_labels(t, C, ignore_index, what):
    """Raise unless ``t`` holds integers in [0, C) or equal to ``ignore_index`` (which may be None)."""
    xp = get_array_module(t)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{what} must hold integer class labels, got dtype {t.dtype}")
    bad = (t < 0) | (t >= C)
    if ignore_index is not None:
        bad &= t != ignore_index
    if bool(bad.any()):
        extra = "" if ignore_index is None else f" or equal ignore_index={ignore_index}"
        raise ValueError(f"{what} holds label {first_bad(t, bad)}; labels must lie in [0, {C}) for C={C}{extra}")
    return xp


def check_unit_interval(a, what, hint=""):
    """Raise unless every value of ``a`` lies in [0, 1] (NaN fails too, since NaN compares false)."""
    inside = (a >= 0) & (a <= 1)
    if not bool(inside.all()):
        raise ValueError(f"{what} must lie in [0, 1]{hint}, got {first_bad(a, ~inside)}")


def check_class_weight(weight, C, what):
    """Raise unless ``weight`` is a 1-D array of C entries."""
    if weight.ndim != 1 or weight.shape[0] != C:
        raise ValueError(f"{what} must have shape ({C},), one entry per class, got shape {tuple(weight.shape)}")


def _one_hot_and_mask(p, target, ignore_index):
    """g (N, C, ...) as p's dtype, zero on ignored pixels, and m (N, 1, ...) or None when nothing is ignored."""
    xp = get_array_module(p)
    N, C = p.shape[:2]
    if target.dtype.kind in "iu":
        if tuple(target.shape) != (N,) + tuple(p.shape[2:]):
            raise ValueError(
                f"soft_dice_loss: integer target shape {tuple(target.shape)} does not fit probs shape "
                f"{tuple(p.shape)}; expected {(N,) + tuple(p.shape[2:])}"
            )
        check_labels(target, C, ignore_index, "soft_dice_loss target")
        classes = xp.arange(C).reshape((1, C) + (1,) * (p.ndim - 2))
        g = (target[:, None] == classes).astype(p.dtype)
        if ignore_index is None:
            return g, None
        m = (target != ignore_index)[:, None].astype(p.dtype)
        return g * m, m
    if target.dtype.kind not in "fb":
        raise TypeError(f"soft_dice_loss: target must be integer labels or a float/bool mask, got dtype {target.dtype}")
    if tuple(target.shape) != tuple(p.shape):
        raise ValueError(
            f"soft_dice_loss: one-hot target shape {tuple(target.shape)} does not match probs shape {tuple(p.shape)}"
            " (integer labels would be (N, H, W))"
        )
    if ignore_index is not None:
        raise ValueError("soft_dice_loss: ignore_index needs an integer label target, not a one-hot mask")
    g = target.astype(p.dtype)
    check_unit_interval(g, "soft_dice_loss: a one-hot / multi-label target")
    return g, None


class SoftDiceLoss(Function):
    """L = 1 - sum a d with d = (2 I + s) / (U + s) per term (see the module docstring for I, U, m).

    Backward. The quotient rule, with dI/dp = m g and dU/dp = 2 m p (squared) or m (linear), gives

        dd/dp = (2 m g (U + s) - (2 I + s) 2 m p) / (U + s)^2 = m (2 g - 2 p d) / (U + s)      (squared)
        dd/dp = m (2 g - d) / (U + s)                                                        (linear)

    so gp = -gy a dd/dp, where each pixel takes the I, U, d, a of the term it is summed into. Since g is already
    zero where m is, ``m g = g`` below.
    """

    def __init__(self, smooth, squared, reduce_batch, include_background, ignore_index):
        self.s, self.squared, self.reduce_batch = smooth, squared, reduce_batch
        self.include_background, self.ignore_index = include_background, ignore_index

    def forward(self, p, target, weight):
        xp = get_array_module(p)
        if p.dtype.kind != "f" or p.ndim < 2:
            raise ValueError(f"soft_dice_loss: probs must be a float array (N, C, ...), got {p.dtype} {tuple(p.shape)}")
        N, C = p.shape[:2]
        check_unit_interval(p, "soft_dice_loss: probs", " (apply softmax or sigmoid to the logits first)")
        g, m = _one_hot_and_mask(p, target, self.ignore_index)
        # a: mean over images (unless pooled) of a weighted mean over the kept classes.
        if weight is not None:
            check_class_weight(weight, C, "soft_dice_loss: weight")
            if bool((weight < 0).any()):
                raise ValueError(f"soft_dice_loss: weight must be >= 0, got {first_bad(weight, weight < 0)}")
        a = xp.ones(C, dtype=p.dtype) if weight is None else weight.astype(p.dtype)  # a copy: a[0] = 0 is safe
        if not self.include_background:
            a[0] = 0
        kept = C - (not self.include_background) if weight is None else float(a.sum())  # no device sync unweighted
        if not kept > 0:
            raise ValueError("soft_dice_loss: the kept classes' weights sum to 0 (C=1 without background?)")
        a = (a / (a.sum() * (1 if self.reduce_batch else N))).reshape((1, C) + (1,) * (p.ndim - 2))

        pm = p if m is None else p * m
        axes = ((0,) if self.reduce_batch else ()) + tuple(range(2, p.ndim))
        I = (pm * g).sum(axis=axes, keepdims=True)
        U = (pm * p + g * g if self.squared else pm + g).sum(axis=axes, keepdims=True)
        self.d = (2 * I + self.s) / (U + self.s)
        self.p, self.g, self.m, self.a, self.U = p, g, m, a, U
        return 1 - (a * self.d).sum()

    def backward(self, gy):
        dp = 2 * self.p * self.d if self.squared else self.d
        if self.m is not None:
            dp = dp * self.m
        return -gy * self.a * (2 * self.g - dp) / (self.U + self.s), None, None


def soft_dice_loss(
    probs,
    target,
    smooth=1e-6,
    squared=True,
    reduce_batch=False,
    include_background=True,
    weight=None,
    ignore_index=None,
):
    """Soft Dice loss, 1 - mean over (n, c) of (2 sum p g + smooth) / (sum p^2 + sum g^2 + smooth), sums over H, W.

    probs (N, C, H, W) in [0, 1] (after softmax, or sigmoid for multi-label); any trailing spatial axes work.
    target: integer labels (N, H, W), turned into a one-hot g inside, or a one-hot / multi-label mask (N, C, H, W).
    Returns a scalar in [0, 1].

    Switches, each giving another common definition:

    - ``squared=False``: denominator sum p + sum g (the V-Net paper uses squares, many libraries the linear form).
    - ``reduce_batch=True``: sums run over N as well, one Dice per class for the batch, then the mean over classes.
    - ``include_background=False``: class 0 is left out of the mean.
    - ``weight`` (C,): a weighted mean over classes, sum_c w_c d_c / sum_c w_c (weights >= 0).
    - ``ignore_index``: pixels with that label are dropped from every sum (needs an integer target).
    - ``smooth`` > 0 keeps 0 / 0 away and is added to numerator and denominator.

    The empty class. When class c is absent from the target (g = 0) the term is d = s / (sum p^2 + s): it equals 1
    (loss 0) only when the prediction is also empty to within smooth (sum p^2 << s); any real predicted mass gives
    d ~ 0, i.e. the full loss 1 for that term, and a gradient 2 p d / (U + s) pushing p down. So with the default tiny
    smooth, an absent class scores "perfect" if and only if nothing is predicted for it. ``squared=False`` behaves the
    same with sum p in place of sum p^2. ``reduce_batch=True`` makes a class empty only if it is absent from every
    image, so images missing a class no longer each add a near-0 or near-1 term. ``include_background=False`` or
    ``weight`` 0 removes such a class from the mean altogether; ``ignore_index`` counts a class present only in
    ignored pixels as absent. A larger smooth (e.g. 1) softens the jump.

    >>> import numpy as np
    >>> t = np.array([[[0, 1], [1, 2]]])                    # labels (1, 2, 2), C = 3
    >>> perfect = np.eye(3)[t].transpose(0, 3, 1, 2)       # probs (1, 3, 2, 2) equal to the one-hot target
    >>> soft_dice_loss(perfect, t).item(), round(soft_dice_loss(np.full((1, 3, 2, 2), 1 / 3), t).item(), 4)
    (0.0, 0.5105)
    """
    if not smooth > 0:
        raise ValueError(f"soft_dice_loss: smooth must be > 0 (it keeps 0 / 0 away from empty classes), got {smooth}")
    f = SoftDiceLoss(smooth, squared, reduce_batch, include_background, ignore_index)
    return f(probs, target, constant(weight, probs))
