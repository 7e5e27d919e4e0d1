"""The gradient-check suite behind ``minisegnet gradcheck``: every op and loss, float64, against central differences.

A case is (name, fn, make_inputs): ``make_inputs(device)`` builds small float64 Tensors (plus constant labels or
weights that take no gradient) and ``fn(*inputs)`` is checked with ``gradcheck`` in full mode. The first word of a
name is the op it checks, and ``run_checks(names=["soft_dice_loss"])`` runs every case of that op.

    >>> rows = run_checks(names=["relu", "cross_entropy (N,C)"])
    >>> all(row.ok for row in rows)
    True
"""

import math
from collections import namedtuple

import numpy as np

from .. import ops as F
from ..backend import check_device, get_array_module, to_device
from ..tensor import Tensor
from .checker import gradcheck

Case = namedtuple("Case", "name fn make_inputs")


class Row(namedtuple("Row", "name max_abs_err max_rel_err ok")):
    """One line of the table; ``error`` holds the exception text when the case could not run."""

    error = ""


# Ops that are not differentiable Functions themselves, with where their gradient is checked instead.
NOT_CHECKED = {
    "sum_to": "a helper on raw arrays (the adjoint of broadcasting), checked through add/sub/mul",
    "conv_out_size": "output-size arithmetic on ints, no gradient",
    "conv_transpose_out_size": "output-size arithmetic on ints, no gradient",
    "unet_weight_map": "preprocessing of label masks into constant pixel weights, no gradient",
}


# ---- inputs -------------------------------------------------------------------------------------------------------
def _t(a, device, grad=True):
    return Tensor(to_device(np.asarray(a), device), requires_grad=grad)


def normal(*shape, seed=0, shift=None):
    """Standard normal values; ``shift`` (C,) is added along axis 1 (e.g. to make one class's logits tiny)."""

    def make(device):
        a = np.random.default_rng(seed).standard_normal(shape)
        if shift is not None:
            a = a + np.reshape(shift, (1, -1) + (1,) * (len(shape) - 2))
        return _t(a, device)

    return make


def uniform(low, high, *shape, seed=0, grad=True):
    return lambda device: _t(np.random.default_rng(seed).uniform(low, high, shape), device, grad)


def distinct(*shape, seed=0):
    """Values 0.1 apart and none near 0: no ties for max / max-pool and no point at relu's kink."""
    n = int(np.prod(shape))
    a = (np.random.default_rng(seed).permutation(n) - n / 2 + 0.25) * 0.1
    return lambda device: _t(a.reshape(shape), device)


def labels(C, *shape, seed=0, ignore=None, grad=False):
    """Integer labels in [0, C); with ``ignore`` set, some become that value."""

    def make(device):
        rng = np.random.default_rng(seed)
        t = rng.integers(0, C, shape)
        if ignore is not None:
            t[rng.random(shape) < 0.3] = ignore
        return _t(t, device, grad=False)

    return make


def const(a):
    return lambda device: _t(np.asarray(a, dtype=np.float64), device, grad=False)


def ints(a):
    return lambda device: _t(np.asarray(a, dtype=np.int64), device, grad=False)


def inputs(*makers):
    return lambda device: [m(device) for m in makers]


def case(name, fn, *makers):
    return Case(name, fn, inputs(*makers))


def _seeded(f):
    # Dropout draws a fresh mask per call; reseeding makes every call of the check use the same mask.
    def run(x, *args):
        get_array_module(x).random.seed(0)
        return f(x, *args)

    return run


def _pooled_with_indices(device):
    x = distinct(1, 2, 4, 6, seed=3)(device)
    y, idx = F.max_pool2d(x.detach(), 2, return_indices=True)
    return [_t(np.random.default_rng(4).standard_normal(y.shape), device), idx]


# ---- the registry ---------------------------------------------------------------------------------------------------
W3 = [0.5, 1.0, 2.0]
probs = uniform(0.05, 0.95, 2, 3, 4, 4)
lab = labels(3, 2, 4, 4)
dice_kw = {
    "default": {},
    "squared=False": {"squared": False},
    "reduce_batch": {"reduce_batch": True},
    "no background": {"include_background": False},
    "weight": {"weight": W3},
    "ignore_index": {"ignore_index": 255},
    "all switches": {"squared": False, "reduce_batch": True, "include_background": False, "weight": W3},
    "squared+ignore+weight": {"ignore_index": 255, "weight": W3, "reduce_batch": True},
    "jaccard": {"jaccard": True},
    "jaccard linear batch": {"jaccard": True, "squared": False, "reduce_batch": True},
    "tversky": {"alpha": 0.3, "beta": 0.7, "squared": False},
    "tversky squared ignore": {"alpha": 0.8, "beta": 0.2, "ignore_index": 255},
    "generalized": {"weight": "generalized", "squared": False},
    "generalized batch no background": {"weight": "generalized", "reduce_batch": True, "include_background": False},
    "log_loss": {"log_loss": True, "weight": W3},
    "smooth_nr=0": {"smooth_nr": 0.0, "smooth_dr": 1e-3},
    "sum": {"reduction": "sum", "jaccard": True},
    "none": {"reduction": "none", "weight": W3},
    "none generalized": {"reduction": "none", "weight": "generalized"},
    "empty=zero batch": {"empty": "zero", "reduce_batch": True},
}

CASES = [
    # elementwise
    case("add (broadcast)", F.add, normal(2, 3, 4), normal(3, 1, seed=1)),
    case("sub (broadcast)", F.sub, normal(2, 3, 4), normal(4, seed=1)),
    case("mul (broadcast)", F.mul, normal(2, 3, 4), normal(2, 1, 4, seed=1)),
    case("div (broadcast)", F.div, normal(2, 3, 4), uniform(0.5, 2.0, 3, 4, seed=1)),
    case("neg", F.neg, normal(3, 4)),
    case("pow 3", lambda x: F.pow(x, 3), normal(3, 4)),
    case("pow 2.5", lambda x: F.pow(x, 2.5), uniform(0.5, 2.0, 3, 4)),
    case("pow -1.5", lambda x: F.pow(x, -1.5), uniform(0.3, 3.0, 3, 4)),
    case("exp", F.exp, normal(3, 4)),
    case("log", F.log, uniform(0.5, 2.0, 3, 4)),
    case("sqrt", F.sqrt, uniform(0.5, 2.0, 3, 4)),
    case("matmul", F.matmul, normal(3, 4), normal(4, 2, seed=1)),
    # activation
    case("relu", F.relu, distinct(2, 3, 4)),
    case("sigmoid", F.sigmoid, normal(2, 3, 4)),
    case("tanh", F.tanh, normal(2, 3, 4)),
    case("softmax axis 1", F.softmax, normal(2, 3, 2, 2)),
    case("softmax axis -1", lambda x: F.softmax(x, axis=-1), normal(3, 5)),
    case("log_softmax", F.log_softmax, normal(2, 3, 2, 2)),
    case("dropout", _seeded(lambda x: F.dropout(x, 0.3)), normal(3, 8)),
    case("dropout2d", _seeded(lambda x: F.dropout2d(x, 0.5)), normal(2, 4, 2, 2)),
    # array
    case("sum axis (1, 2)", lambda x: F.sum(x, (1, 2)), normal(2, 3, 4)),
    case("mean keepdims", lambda x: F.mean(x, 1, keepdims=True), normal(2, 3, 4)),
    case("max axis 1", lambda x: F.max(x, 1), distinct(2, 3, 4)),
    case("reshape", lambda x: F.reshape(x, (4, 6)), normal(2, 3, 4)),
    case("transpose", lambda x: F.transpose(x, (2, 0, 1)), normal(2, 3, 4)),
    case("broadcast_to", lambda x: F.broadcast_to(x, (2, 3, 4)), normal(3, 1)),
    case("getitem", lambda x: F.getitem(x, (slice(None), 1, slice(1, None, 2))), normal(2, 3, 4)),
    case("concat", lambda a, b: F.concat([a, b], axis=1), normal(2, 1, 3), normal(2, 2, 3, seed=1)),
    case("pad", lambda x: F.pad(x, ((0, 0), (1, 2)), value=0.5), normal(2, 3)),
    case("center_crop", lambda x: F.center_crop(x, (2, 3)), normal(1, 2, 5, 5)),
    # convolution, pooling, upsampling, normalisation
    case(
        "conv2d pad 1",
        lambda x, w, b: F.conv2d(x, w, b, padding=1),
        normal(2, 3, 5, 5),
        normal(4, 3, 3, 3, seed=1),
        normal(4, seed=2),
    ),
    case(
        "conv2d stride 2 dilation 2",
        lambda x, w: F.conv2d(x, w, stride=2, padding=(1, 2), dilation=2),
        normal(1, 2, 7, 6),
        normal(3, 2, 3, 2, seed=1),
    ),
    case(
        "conv_transpose2d",
        lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
        normal(2, 3, 3, 3),
        normal(3, 2, 3, 3, seed=1),
        normal(2, seed=2),
    ),
    case("max_pool2d 2x2", lambda x: F.max_pool2d(x, 2), distinct(2, 2, 4, 6)),
    case("max_pool2d k3 s2 p1", lambda x: F.max_pool2d(x, 3, stride=2, padding=1), distinct(1, 2, 5, 5)),
    case("avg_pool2d 2x2", lambda x: F.avg_pool2d(x, 2), normal(2, 2, 4, 6)),
    case("avg_pool2d k3 s2 p1", lambda x: F.avg_pool2d(x, 3, stride=2, padding=1), normal(1, 2, 5, 5)),
    Case("max_unpool2d", lambda x, idx: F.max_unpool2d(x, idx, 2), _pooled_with_indices),
    case("upsample nearest x2", lambda x: F.upsample(x, 2), normal(1, 2, 3, 4)),
    case("upsample nearest to (5, 7)", lambda x: F.upsample(x, size=(5, 7)), normal(1, 2, 3, 4)),
    case("upsample bilinear x2", lambda x: F.upsample(x, 2, mode="bilinear"), normal(1, 2, 3, 4)),
    case(
        "upsample bilinear align_corners",
        lambda x: F.upsample(x, 2, mode="bilinear", align_corners=True),
        normal(1, 2, 3, 4),
    ),
    case("bed_of_nails", lambda x: F.bed_of_nails(x, 2), normal(1, 2, 3, 4)),
    case(
        "batch_norm training",
        lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
        normal(4, 3, 2, 2),
        normal(3, seed=1),
        normal(3, seed=2),
    ),
    case(
        "batch_norm eval",
        lambda x, w, b, m, v: F.batch_norm(x, m, v, w, b, training=False),
        normal(4, 3, 2, 2),
        normal(3, seed=1),
        normal(3, seed=2),
        const([0.1, -0.2, 0.3]),
        const([0.5, 1.0, 2.0]),
    ),
    # losses: cross-entropy
    case("cross_entropy (N,C)", F.cross_entropy, normal(5, 4), labels(4, 5)),
    case("cross_entropy (N,C,H,W) weight", lambda x, t: F.cross_entropy(x, t, weight=W3), normal(2, 3, 4, 4), lab),
    case("cross_entropy ignore_index", F.cross_entropy, normal(2, 3, 3, 5), labels(3, 2, 3, 5, ignore=-100)),
    case(
        "cross_entropy pixel_weight",
        lambda x, t, pw: F.cross_entropy(x, t, weight=W3, pixel_weight=pw),
        normal(2, 3, 3, 4),
        labels(3, 2, 3, 4, ignore=-100),
        uniform(0.5, 3.0, 2, 3, 4, grad=False),
    ),
    case("cross_entropy sum", lambda x, t: F.cross_entropy(x, t, weight=W3, reduction="sum"), normal(2, 3, 4, 4), lab),
    case(
        "cross_entropy none",
        lambda x, t: F.cross_entropy(x, t, ignore_index=1, reduction="none"),
        normal(2, 3, 4, 4),
        lab,
    ),
    case("cross_entropy all ignored", F.cross_entropy, normal(2, 3), ints([-100, -100])),
    case(
        "cross_entropy label_smoothing",
        lambda x, t, pw: F.cross_entropy(x, t, weight=W3, pixel_weight=pw, label_smoothing=0.2),
        normal(2, 3, 3, 4),
        labels(3, 2, 3, 4, ignore=-100),
        uniform(0.5, 3.0, 2, 3, 4, grad=False),
    ),
    case(
        "cross_entropy soft target", F.cross_entropy, normal(2, 3, 3, 4), uniform(0, 1, 2, 3, 3, 4, seed=1, grad=False)
    ),
    case(
        "cross_entropy soft target smoothing weight none",
        lambda x, q: F.cross_entropy(x, q, weight=W3, label_smoothing=0.1, reduction="none"),
        normal(2, 3, 3, 4),
        uniform(0, 1, 2, 3, 3, 4, seed=1, grad=False),
    ),
    # losses: focal
    case("focal_loss", F.focal_loss, normal(2, 3, 4, 4), lab),
    case(
        "focal_loss alpha ignore_index",
        lambda x, t: F.focal_loss(x, t, gamma=1.5, alpha=W3),
        normal(2, 3, 4, 4),
        labels(3, 2, 4, 4, ignore=-100),
    ),
    case(
        "focal_loss gamma 0.5 sum", lambda x, t: F.focal_loss(x, t, 0.5, 0.25, reduction="sum"), normal(2, 3, 4, 4), lab
    ),
    case("focal_loss none", lambda x, t: F.focal_loss(x, t, 3.0, reduction="none"), normal(2, 3, 4, 4), lab),
    # losses: binary cross-entropy with logits (the target gets a gradient too)
    case(
        "binary_cross_entropy_with_logits",
        F.binary_cross_entropy_with_logits,
        normal(2, 3, 2, 2),
        uniform(0, 1, 2, 3, 2, 2, seed=1),
    ),
    case(
        "binary_cross_entropy_with_logits pos_weight",
        lambda x, t: F.binary_cross_entropy_with_logits(x, t, pos_weight=[1.0, 2.0, 0.5]),
        normal(2, 3, 2, 2),
        uniform(0, 1, 2, 3, 2, 2, seed=1),
    ),
    case(
        "binary_cross_entropy_with_logits sum",
        lambda x, t: F.binary_cross_entropy_with_logits(x, t, reduction="sum"),
        normal(4, 3),
        uniform(0, 1, 4, 3, seed=1, grad=False),
    ),
    case(
        "binary_cross_entropy_with_logits none",
        lambda x, t: F.binary_cross_entropy_with_logits(x, t, reduction="none"),
        normal(4, 3),
        uniform(0, 1, 4, 3, seed=1, grad=False),
    ),
    # losses: soft Dice, every switch, labels and one-hot targets, a tiny and an empty class ("default" and
    # "squared=False" run dice.py's SoftDiceLoss, the lesson's; a switch runs dice_family.py's DiceFamilyLoss)
    *[
        case(
            f"soft_dice_loss {k}",
            lambda p, t, kw=kw: F.soft_dice_loss(p, t, **kw),
            probs,
            labels(3, 2, 4, 4, ignore=255 if "ignore_index" in kw else None),
        )
        for k, kw in dice_kw.items()
    ],
    case("soft_dice_loss multi-label target", F.soft_dice_loss, probs, uniform(0, 1, 2, 3, 4, 4, seed=1, grad=False)),
    # class 2 gets logits near -8, so probabilities near 3e-4: the small-denominator regime of the Dice gradient
    case(
        "soft_dice_loss tiny class",
        lambda z, t: F.soft_dice_loss(F.softmax(z), t),
        normal(2, 3, 4, 4, shift=[0, 0, -8]),
        lab,
    ),
    case("soft_dice_loss empty class", lambda p, t: F.soft_dice_loss(p, t, smooth=1e-3), probs, labels(2, 2, 4, 4)),
    case("soft_dice_loss empty=zero", lambda p, t: F.soft_dice_loss(p, t, empty="zero"), probs, labels(2, 2, 4, 4)),
    case(
        "soft_dice_loss generalized empty class",
        lambda p, t: F.soft_dice_loss(p, t, weight="generalized"),
        probs,
        labels(2, 2, 4, 4),
    ),
    case(
        "dice_ce_loss",
        lambda z, t: F.dice_ce_loss(z, t, lambda_dice=0.7, weight=W3),
        normal(2, 3, 4, 4),
        labels(3, 2, 4, 4, ignore=-100),
    ),
]


# ---- running and printing -------------------------------------------------------------------------------------------
def run_checks(device="cpu", names=None, tol=1e-6):
    """Gradient-check the cases (all, or those named in ``names``: a full case name or an op's name) on ``device``.

    Returns a list of ``Row(name, max_abs_err, max_rel_err, ok)``; ok means gradcheck passed elementwise and the
    normwise relative error is at most ``tol``. A case that raises gives ok False, NaN errors and ``row.error``.
    """
    check_device(device)
    chosen = CASES
    if names is not None:
        names = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in names if not any(_selects(n, c) for c in CASES)]
        if unknown:
            raise ValueError(f"no gradcheck case is named {unknown[0]!r}; the ops are {sorted(ops_covered())}")
        chosen = [c for c in CASES if any(_selects(n, c) for n in names)]
    rows = []
    for c in chosen:
        try:
            rep = gradcheck(c.fn, *c.make_inputs(device), raise_exception=False, name=c.name)
            rows.append(Row(c.name, rep.max_abs_err, rep.max_rel_err, rep.ok and rep.max_rel_err <= tol))
        except Exception as e:  # noqa: BLE001  (a broken op is a failed row, not a crashed suite)
            row = Row(c.name, math.nan, math.nan, False)
            row.error = f"{type(e).__name__}: {e}".splitlines()[0]
            rows.append(row)
    return rows


def _selects(name, c):
    return name in (c.name, c.name.split()[0])


def ops_covered():
    """The ops that have at least one case: the first word of each case name."""
    return {c.name.split()[0] for c in CASES}


def format_table(rows):
    """An aligned text table of the rows, failures marked, with a closing summary line."""
    width = max([len("case")] + [len(r.name) for r in rows])
    lines = [f"{'case':<{width}}  {'max abs err':>11}  {'max rel err':>11}  result", "-" * (width + 36)]
    for r in rows:
        lines.append(
            f"{r.name:<{width}}  {r.max_abs_err:11.2e}  {r.max_rel_err:11.2e}  {'ok' if r.ok else 'FAILED'}"
            + (f"  ({r.error})" if r.error else "")
        )
    failed = sum(not r.ok for r in rows)
    worst = max((r.max_rel_err for r in rows if r.ok), default=0.0)
    lines.append(f"{len(rows)} cases, {failed} failed, worst relative error among passing cases {worst:.2e}")
    return "\n".join(lines)
