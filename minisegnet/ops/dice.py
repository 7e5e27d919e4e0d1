"""The Dice family (soft Dice, Jaccard, Tversky, generalized Dice) as switches of one loss with one derivation.

Notation of the code: p = probs (N, C, H, W), g = target as one-hot (N, C, H, W), m = 1 on counted pixels and 0 on
ignored ones (g is already 0 there). A term is one image and class, one class over the batch (``reduce_batch``), or,
for generalized Dice, one image (or the batch) with the classes summed inside. Over a term's pixels, with v the
generalized-Dice class weight (v = 1 otherwise) and e = 2 (squared) or 1 (linear):

    I = sum v m p g      P = sum v m p^e      G = sum v g^e      D = I + alpha (P - I) + beta (G - I)
    d = (k I + s_nr) / max(k D + s_dr, EPS)

k = 2 and alpha = beta = 1/2 give Dice, (2 I + s) / (P + G + s); alpha = beta = 1 gives Jaccard, I / (P + G - I)
(with k = 2, as MONAI); Tversky takes k = 1, (I + s_nr) / (I + alpha FP + beta FN + s_dr). Each term's loss is
l = 1 - d, or -log max(d, EPS) with ``log_loss``, and the result is sum_terms a l with a the averaging weights.
"""

from ..backend import get_array_module, read_host
from ..tensor import Function
from .validate import (
    check_choice,
    check_class_weight,
    check_int_not_one_hot,
    check_labels,
    check_number,
    check_unit_interval,
    constant,
)

EPS = 1e-7  # the clamp of the denominator (SMP's eps) and of d under the log
EMPTY = ("keep", "zero")


def _one_hot_and_mask(p, target, ignore_index):
    """g (N, C, ...) as p's dtype, zero on ignored pixels, and m (N, 1, ...) or None when nothing is ignored."""
    xp = get_array_module(p)
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


def _generalized(g, axes, keep):
    """v = 1 / (sum g)^2 per class and term (Sudre et al.); an absent class takes the largest weight of its term."""
    xp = get_array_module(g)
    Gc = g.sum(axis=axes, keepdims=True)
    present = Gc > 0
    w = xp.where(present, 1 / xp.where(present, Gc, 1) ** 2, 0) * keep
    return xp.where(present, w, w.max(axis=1, keepdims=True)) * keep


def _scaled(a, w):
    return a if w == 1 else a * w  # skips a pass over the array for Dice's weights of 1


class SoftDiceLoss(Function):
    """L = sum_terms a l(d) with d = (k I + s_nr) / (k D + s_dr) (see the module docstring for I, P, G, D, v, m).

    Backward. Per pixel, dI/dp = v g, dP/dp = v m e p^(e-1) (2 m p squared, m linear) and dG/dp = 0, so
    dD/dp = (1 - alpha - beta) v g + alpha dP/dp, and the quotient rule gives

        dd/dp = k (dI/dp - d dD/dp) / (k D + s_dr) = k v ((1 - d (1 - alpha - beta)) g - d alpha m e p^(e-1)) / den

    (squared Dice: (2 g - 2 d m p) / (U + s) with U = P + G). With dl/dd = -1 (or -1/d for ``log_loss``; 0 where
    d is clamped), gp = gy a (dl/dd) (dd/dp), each pixel taking the I, D, d, a of the term it is summed into. Where
    the clamp holds (k D + s_dr < EPS) the denominator is a constant and only the numerator's k v g remains.
    """

    def __init__(self, squared, reduce_batch, include_background, ignore_index, alpha, beta, k, s_nr, s_dr, opts):
        self.squared, self.reduce_batch, self.include_background = squared, reduce_batch, include_background
        self.ignore_index, self.alpha, self.k, self.s_nr, self.s_dr = ignore_index, alpha, k, s_nr, s_dr
        # k D = cI I + (k alpha) P + (k beta) G; for Dice cI = 0 and both others 1, so k D is exactly P + G.
        self.cI, self.wP, self.wG = k * (1 - alpha - beta), k * alpha, k * beta
        self.log_loss, self.reduction, self.empty, self.generalized = opts

    def forward(self, p, target, weight):
        xp = get_array_module(p)
        if p.dtype.kind != "f" or p.ndim < 2:
            raise ValueError(f"soft_dice_loss: probs must be a float array (N, C, ...), got {p.dtype} {tuple(p.shape)}")
        N, C = p.shape[:2]
        check_unit_interval(p, "soft_dice_loss: probs", " (apply softmax or sigmoid to the logits first)")
        g, m = _one_hot_and_mask(p, target, self.ignore_index)
        shape = (1, C) + (1,) * (p.ndim - 2)
        keep = xp.ones(shape, dtype=p.dtype)
        if not self.include_background:
            keep[:, 0] = 0
        if weight is not None:
            check_class_weight(weight, C, "soft_dice_loss: weight", nonnegative=True)
            keep = keep * weight.astype(p.dtype).reshape(shape)

        pm = p if m is None else p * m
        axes = ((0,) if self.reduce_batch else ()) + tuple(range(2, p.ndim))
        v = _generalized(g, axes, keep) if self.generalized else 1
        # the sum of alpha P and beta G, scaled by k, in one pass (the seed's sum p^2 + g^2 for Dice)
        rest = _scaled(pm * p if self.squared else pm, self.wP) + _scaled(g * g if self.squared else g, self.wG)
        parts = (pm * g, rest, g) if self.empty == "zero" else (pm * g, rest)
        I, R, *G = [(v * part if self.generalized else part).sum(axis=axes, keepdims=True) for part in parts]
        if self.generalized:
            I, R, *G = [part.sum(axis=1, keepdims=True) for part in (I, R, *G)]
        raw = (R if self.cI == 0 else self.cI * I + R) + self.s_dr
        self.live = raw > EPS
        self.den = xp.maximum(raw, EPS)
        self.d = (self.k * I + self.s_nr) / self.den

        # a: the terms' weights. "mean" divides by the kept weights' sum (per image) and by the number of images.
        a = xp.ones_like(self.d) if self.generalized else xp.broadcast_to(keep, self.d.shape)
        if self.reduction == "mean":
            kept = C - (not self.include_background) if weight is None else read_host(keep.sum())  # no sync unweighted
            total = float(a.size) if self.generalized else kept * a.shape[0]
            if not total > 0:
                raise ValueError("soft_dice_loss: the kept classes' weights sum to 0 (C=1 without background?)")
            a = a / total
        if self.empty == "zero":
            a = a * (G[0] > 0)
        self.p, self.g, self.m, self.v, self.a, self.term_shape = p, g, m, v, a, self.d.shape
        if self.log_loss:
            loss = -xp.log(xp.maximum(self.d, EPS))
        elif self.reduction == "mean" and self.empty == "keep":
            return 1 - (a * self.d).sum()  # the weights sum to 1: the seed's 1 - mean d, bit for bit
        else:
            loss = 1 - self.d
        if self.reduction == "none":
            return (a * loss).reshape(self._out_shape(loss.shape))
        return (a * loss).sum()

    def _out_shape(self, shape):
        """(N, C), (C,), (N,) or () for per-image, batch, generalized per-image and generalized batch terms."""
        return tuple(n for n, kept in zip(shape[:2], (not self.reduce_batch, not self.generalized)) if kept)

    def backward(self, gy):
        gy = gy.reshape(self.term_shape) if self.reduction == "none" else gy
        xp = get_array_module(gy)
        dl = xp.where(self.d > EPS, -1 / xp.maximum(self.d, EPS), 0) if self.log_loss else -1
        e_p = 2 * self.p if self.squared else 1  # e p^(e - 1)
        e_p = e_p if self.m is None else e_p * self.m
        dD = _scaled(e_p, self.wP) if self.cI == 0 else self.cI * self.g + self.wP * e_p  # d(k D)/dp without v
        dd = self.k * self.g - (self.d * self.live) * dD
        dd = self.v * dd if self.generalized else dd
        return gy * self.a * dl * dd / self.den, None, None


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
    (reduction "mean", without ``log_loss``). Switches, each giving another common definition (formulas in the
    module docstring):

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
      allowed: the denominator is clamped at EPS = 1e-7, as SMP does.
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
    smooth_nr = smooth if smooth_nr is None else smooth_nr
    smooth_dr = smooth if smooth_dr is None else smooth_dr
    check_number(smooth_nr, "soft_dice_loss: smooth_nr")
    check_number(smooth_dr, "soft_dice_loss: smooth_dr")
    check_choice(reduction, ("mean", "sum", "none"), "soft_dice_loss: reduction")
    check_choice(empty, EMPTY, "soft_dice_loss: empty")
    check_choice(bool(jaccard), (False, True), "soft_dice_loss: jaccard")
    check_choice(bool(log_loss), (False, True), "soft_dice_loss: log_loss")
    if (alpha is None) != (beta is None):
        raise ValueError(f"soft_dice_loss: give both alpha and beta for Tversky, got alpha={alpha}, beta={beta}")
    tversky = alpha is not None
    if tversky and jaccard:
        raise ValueError("soft_dice_loss: jaccard=True and alpha/beta exclude each other (Jaccard is alpha=beta=1)")
    if tversky:
        check_number(alpha, "soft_dice_loss: alpha")
        check_number(beta, "soft_dice_loss: beta")
    else:
        alpha = beta = 1.0 if jaccard else 0.5
    generalized = isinstance(weight, str)
    if generalized:
        check_choice(weight, ("generalized",), "soft_dice_loss: weight given as a string")
        weight = None
    opts = (bool(log_loss), reduction, empty, generalized)
    k = 1 if tversky else 2
    f = SoftDiceLoss(
        squared, reduce_batch, include_background, ignore_index, alpha, beta, k, smooth_nr, smooth_dr, opts
    )
    return f(probs, target, constant(weight, probs))
