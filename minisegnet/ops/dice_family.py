"""The Dice family (Jaccard, Tversky, generalized Dice) and every switch of soft_dice_loss, as one general loss.

dice.py holds the lesson's soft Dice, (2 I + s) / (U + s) averaged over images and classes. ``soft_dice_loss``
hands any call that uses a switch to ``dice_family_loss`` here, which computes the general form below with one
derivation; at its default setting it gives the lesson's loss bit for bit (and its gradient to rounding).

Notation: p = probs (N, C, H, W), g = target as one-hot (N, C, H, W), m = 1 on counted pixels and 0 on ignored ones
(g is already 0 there). A term is one image and class, one class over the batch (``reduce_batch``), or, for
generalized Dice, one image (or the batch) with the classes summed inside. Over a term's pixels, with v the
generalized-Dice class weight (v = 1 otherwise) and e = 2 (squared) or 1 (linear):

    I = sum v m p g      P = sum v m p^e      G = sum v g^e      D = I + alpha (P - I) + beta (G - I)
    d = (k I + s_nr) / max(k D + s_dr, EPS)

k = 2 and alpha = beta = 1/2 give Dice, (2 I + s) / (P + G + s); alpha = beta = 1 gives Jaccard, I / (P + G - I)
(with k = 2, as MONAI); Tversky takes k = 1, (I + s_nr) / (I + alpha FP + beta FN + s_dr). Each term's loss is
l = 1 - d, or -log max(d, EPS) with ``log_loss``, and the result is sum_terms a l with a the averaging weights.
"""

from ..backend import get_array_module, read_host
from ..tensor import Function
from .validate import check_choice, check_class_weight, check_number, constant

EPS = 1e-7  # the clamp of the denominator (SMP's eps) and of d under the log
EMPTY = ("keep", "zero")


def _generalized(g, axes, keep):
    """v = 1 / (sum g)^2 per class and term (Sudre et al.); an absent class takes the largest weight of its term."""
    xp = get_array_module(g)
    Gc = g.sum(axis=axes, keepdims=True)
    present = Gc > 0
    w = xp.where(present, 1 / xp.where(present, Gc, 1) ** 2, 0) * keep
    return xp.where(present, w, w.max(axis=1, keepdims=True)) * keep


def _scaled(a, w):
    return a if w == 1 else a * w  # skips a pass over the array for Dice's weights of 1


class DiceFamilyLoss(Function):
    """L = sum_terms a l(d) with d = (k I + s_nr) / (k D + s_dr) (see the module docstring for I, P, G, D, v, m).

    Backward. Per pixel, dI/dp = v g, dP/dp = v m e p^(e-1) (2 m p squared, m linear) and dG/dp = 0, so
    dD/dp = (1 - alpha - beta) v g + alpha dP/dp, and the quotient rule gives

        dd/dp = k (dI/dp - d dD/dp) / (k D + s_dr) = k v ((1 - d (1 - alpha - beta)) g - d alpha m e p^(e-1)) / den

    (squared Dice: (2 g - 2 d m p) / (U + s) with U = P + G, the lesson's gradient). With dl/dd = -1 (or -1/d for
    ``log_loss``; 0 where d is clamped), gp = gy a (dl/dd) (dd/dp), each pixel taking the I, D, d, a of the term it
    is summed into. Where the clamp holds (k D + s_dr < EPS) the denominator is a constant and only the numerator's
    k v g remains.
    """

    def __init__(self, squared, reduce_batch, include_background, alpha, beta, k, s_nr, s_dr, opts):
        self.squared, self.reduce_batch, self.include_background = squared, reduce_batch, include_background
        self.alpha, self.k, self.s_nr, self.s_dr = alpha, k, s_nr, s_dr
        # k D = cI I + wP P + wG G; for Dice cI = 0 and wP = wG = 1, so k D is exactly P + G.
        self.cI, self.wP, self.wG = k * (1 - alpha - beta), k * alpha, k * beta
        self.log_loss, self.reduction, self.empty, self.generalized = opts

    def forward(self, p, g, m, weight):
        xp = get_array_module(p)
        C = p.shape[1]
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
        # wP P + wG G summed in one pass: for Dice, sum (p^2 + g^2), the lesson's U
        rest = _scaled(pm * p if self.squared else pm, self.wP) + _scaled(g * g if self.squared else g, self.wG)
        parts = (pm * g, rest, g) if self.empty == "zero" else (pm * g, rest)
        I, R, *G = [(v * part if self.generalized else part).sum(axis=axes, keepdims=True) for part in parts]
        if self.generalized:
            I, R, *G = [part.sum(axis=1, keepdims=True) for part in (I, R, *G)]
        raw = (R if self.cI == 0 else self.cI * I + R) + self.s_dr
        self.live = raw > EPS  # False where the clamp holds
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
            return 1 - (a * self.d).sum()  # the weights sum to 1, so this is sum a (1 - d), as dice.py writes it
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
        return gy * self.a * dl * dd / self.den, None, None, None


def dice_family_loss(
    probs,
    g,
    m,
    smooth,
    squared,
    reduce_batch,
    include_background,
    weight,
    *,
    jaccard,
    alpha,
    beta,
    smooth_nr,
    smooth_dr,
    log_loss,
    reduction,
    empty,
):
    """soft_dice_loss with its switches, as ``soft_dice_loss`` documents them: checks them, builds DiceFamilyLoss.

    ``probs`` a Tensor (N, C, ...), ``g`` its one-hot target (N, C, ...), ``m`` the mask of counted pixels
    (N, 1, ...) or None; ``weight`` None, (C,) class weights, or "generalized".
    """
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
    f = DiceFamilyLoss(squared, reduce_batch, include_background, alpha, beta, k, smooth_nr, smooth_dr, opts)
    return f(probs, g, m, constant(weight, probs))
