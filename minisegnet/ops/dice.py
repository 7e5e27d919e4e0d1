"""Soft Dice loss (lesson 8): the Dice score of the predicted and true regions, made differentiable.

For image n and class c, with p the probabilities and g the one-hot target over the pixels j of that image,

    I = sum_j p_j g_j      U = sum_j p_j^2 + sum_j g_j^2   (or sum_j p_j + sum_j g_j with squared=False)
    d_nc = (2 I + s) / (U + s)      L = 1 - (1 / NC) sum_{n, c} d_nc

SoftDiceLoss computes exactly that, forward and backward. The rest of the family (Jaccard, Tversky, generalized
Dice, batch Dice, class weights, ignored pixels, the empty-class policy, ...) are switches of ``soft_dice_loss``
computed by the general form in dice_family.py.
"""

from ..backend import get_array_module
from ..tensor import Function, as_tensor
from .dice_family import EPS, dice_family_loss
from .validate import check_int_not_one_hot, check_labels, check_number, check_unit_interval


class SoftDiceLoss(Function):
    """L = 1 - (1 / NC) sum_{n, c} d_nc with d = (2 I + s) / (U + s), sums over each image's pixels (lesson 8).

    p (N, C, H, W) probabilities in [0, 1], g (N, C, H, W) the one-hot target; returns a scalar.

    Backward. For a pixel j of the term (n, c), dI/dp_j = g_j and dU/dp_j = 2 p_j (squared) or 1 (linear), so the
    quotient rule (u / v)' = (u' v - u v') / v^2 with u = 2 I + s, v = U + s gives

        dd/dp_j = (2 g_j (U + s) - (2 I + s) dU/dp_j) / (U + s)^2 = (2 g_j - d dU/dp_j) / (U + s)

    and L = 1 - a sum d with a = 1 / NC, so dL/dp_j = -a (2 g_j - d dU/dp_j) / (U + s): three lines below.
    """

    def __init__(self, smooth, squared):
        self.s, self.squared = smooth, squared

    def forward(self, p, g):
        axes = tuple(range(2, p.ndim))  # the pixels of one image and class
        I = (p * g).sum(axis=axes, keepdims=True)
        if self.squared:
            U = (p * p + g * g).sum(axis=axes, keepdims=True)
        else:
            U = (p + g).sum(axis=axes, keepdims=True)
        self.d = (2 * I + self.s) / (U + self.s)  # (N, C, 1, 1): one Dice per image and class
        self.a = 1 / self.d.size  # each term's share of the mean
        self.p, self.g, self.U = p, g, U
        return 1 - (self.a * self.d).sum()

    def backward(self, gy):
        dU = 2 * self.p if self.squared else 1
        dd = (2 * self.g - self.d * dU) / (self.U + self.s)
        return -gy * self.a * dd, None


def soft_dice_loss(
    probs,
    target,
    smooth=1e-6,
    squared=True,
    reduce_batch=False,
    include_background=True,
    weight=None,
    ignore_index=None,
    *,
    jaccard=False,
    alpha=None,
    beta=None,
    smooth_nr=None,
    smooth_dr=None,
    log_loss=False,
    reduction="mean",
    empty="keep",
):
    """Soft Dice loss, 1 - mean over (n, c) of (2 sum p g + smooth) / (sum p^2 + sum g^2 + smooth), sums over H, W.

    probs (N, C, H, W) in [0, 1] (after softmax, or sigmoid for multi-label); any trailing spatial axes work.
    target: integer labels (N, H, W), turned into a one-hot g inside, or a float / bool one-hot or multi-label mask
    (N, C, H, W) (an integer (N, C, H, W) mask is refused: use a float or bool one). Returns a scalar in [0, 1]
    (reduction "mean", without ``log_loss``). ``smooth`` and ``squared`` are the lesson's; every other argument is a
    switch giving another common definition (formulas in dice_family.py):

    - ``squared=False``: denominator sum p + sum g (the V-Net paper uses squares, many libraries the linear form).
    - ``reduce_batch=True``: sums run over N as well, one Dice per class for the batch, then the mean over classes.
    - ``include_background=False``: class 0 is left out of the mean.
    - ``weight`` (C,): a weighted mean over classes, sum_c w_c l_c / sum_c w_c (weights >= 0).
      ``weight="generalized"``: generalized Dice (Sudre et al. 2017, MONAI's GeneralizedDiceLoss): one term per
      image, d = (2 sum_c v_c I_c + s_nr) / (sum_c v_c U_c + s_dr) with v_c = 1 / (sum g_c)^2 and an absent class
      given its term's largest v (as MONAI); use ``squared=False`` for MONAI's linear denominator.
    - ``ignore_index``: pixels with that label are dropped from every sum (needs an integer target).
    - ``jaccard=True``: soft IoU, (2 I + s_nr) / (2 (P + G - I) + s_dr) (MONAI's ``jaccard``; SMP's JaccardLoss with
      smooth s is smooth 2 s here).
    - ``alpha``, ``beta`` (both or neither, >= 0): Tversky, (I + s_nr) / (I + alpha FP + beta FN + s_dr) with
      FP = P - I, FN = G - I; 0.5 / 0.5 is Dice and 1 / 1 Jaccard (up to the smoothing's scale).
    - ``smooth_nr``, ``smooth_dr`` (default ``smooth``): separate numerator / denominator smoothing (MONAI). 0 is
      allowed: the denominator is clamped at EPS = 1e-7, as SMP does (so is it for any ``smooth`` <= EPS).
    - ``log_loss=True``: each term's loss is -log max(d, EPS) instead of 1 - d (SMP's ``log_loss``).
    - ``reduction``: "mean" (the weighted mean above), "sum" (sum_terms w l) or "none": w l per term, shape (N, C),
      or (C,) with ``reduce_batch``, (N,) or () for generalized Dice.
    - ``empty``: the policy for a term whose class is absent from the target (G = 0). "keep" (default, as MONAI):
      the term stays, d = s_nr / (P + s_dr), so it costs ~1 as soon as any mass is predicted and ~0 only when
      nothing is (sum p^2 << s). "zero" (as SMP's DiceLoss): such a term's loss is set to 0 and its gradient too,
      while it still counts in the mean's denominator.

    ``reduce_batch=True`` makes a class empty only if it is absent from every image, so images missing a class no
    longer each add a near-0 or near-1 term. ``include_background=False`` or ``weight`` 0 removes such a class from
    the mean altogether; ``ignore_index`` counts a class present only in ignored pixels as absent.

    >>> import numpy as np
    >>> t = np.array([[[0, 1], [1, 2]]])                    # labels (1, 2, 2), C = 3
    >>> perfect = np.eye(3)[t].transpose(0, 3, 1, 2)       # probs (1, 3, 2, 2) equal to the one-hot target
    >>> soft_dice_loss(perfect, t).item(), round(soft_dice_loss(np.full((1, 3, 2, 2), 1 / 3), t).item(), 4)
    (0.0, 0.5105)
    """
    check_number(smooth, "soft_dice_loss: smooth")
    probs = as_tensor(probs)
    if probs.ndim and probs.shape[0] == 0:
        raise ValueError(f"soft_dice_loss: probs of shape {tuple(probs.shape)} hold no image: the mean needs one")
    g, m = _one_hot_and_mask(probs.data, as_tensor(target).data, ignore_index)
    # The lesson's loss: one term per image and class, all counted alike, and s > EPS so that U + s never needs
    # the family's clamp. Any switch runs the family's general form.
    lesson = (
        not reduce_batch
        and include_background
        and weight is None
        and ignore_index is None
        and not (jaccard or log_loss)
        and alpha is None
        and beta is None
        and smooth_nr is None
        and smooth_dr is None
        and reduction == "mean"
        and empty == "keep"
        and smooth > EPS
    )
    if lesson:
        return SoftDiceLoss(smooth, squared)(probs, g)
    return dice_family_loss(
        probs,
        g,
        m,
        smooth,
        squared,
        reduce_batch,
        include_background,
        weight,
        jaccard=jaccard,
        alpha=alpha,
        beta=beta,
        smooth_nr=smooth_nr,
        smooth_dr=smooth_dr,
        log_loss=log_loss,
        reduction=reduction,
        empty=empty,
    )


def _one_hot_and_mask(p, target, ignore_index):
    """Check probs p and the target; g (N, C, ...) as p's dtype, zero on ignored pixels, and m (N, 1, ...) or None.

    m is 1 on counted pixels and 0 on ignored ones; it is None when nothing is ignored.
    """
    xp = get_array_module(p, target)  # raises on a mix of NumPy and CuPy arrays
    if p.dtype.kind != "f" or p.ndim < 2:
        raise ValueError(f"soft_dice_loss: probs must be a float array (N, C, ...), got {p.dtype} {tuple(p.shape)}")
    check_unit_interval(p, "soft_dice_loss: probs", " (apply softmax or sigmoid to the logits first)")
    N, C = p.shape[:2]
    check_int_not_one_hot(target, p.ndim, "soft_dice_loss")
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
