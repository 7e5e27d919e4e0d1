"""ops/dice_family.py: the switches against MONAI's DiceLoss / TverskyLoss / GeneralizedDiceLoss and SMP's formulas."""

import numpy as np
import pytest

import minisegnet.ops as F
from minisegnet import Tensor
from minisegnet.gradcheck.cases import run_checks

from utils import rel_error, torch

MONAI_DICE = [
    ({}, {}),
    ({"squared": False}, {"squared_pred": False}),
    ({"jaccard": True}, {"jaccard": True}),
    (
        {"jaccard": True, "squared": False, "reduce_batch": True},
        {"jaccard": True, "squared_pred": False, "batch": True},
    ),
    ({"include_background": False, "smooth_nr": 0.0, "smooth_dr": 1e-3}, {"include_background": False}),
    ({"reduction": "sum"}, {"reduction": "sum"}),
    ({"reduction": "none", "reduce_batch": True}, {"reduction": "none", "batch": True}),
]


def _case(seed=0, N=2, C=3, absent=None):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((N, C, 5, 6))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    t = rng.integers(0, C if absent is None else C - 1, (N, 5, 6))
    return p, t, np.eye(C)[t].transpose(0, 3, 1, 2)


def _ours(p, t, **kw):
    x = Tensor(p.copy(), requires_grad=True)
    y = F.soft_dice_loss(x, t, **kw)
    y.backward(np.ones(y.shape)) if y.ndim else y.backward()
    return y.numpy(), x.grad


def _theirs(loss, p, g):
    torch_ = torch()
    x = torch_.tensor(p, requires_grad=True)
    y = loss(x, torch_.tensor(g))
    y.sum().backward()
    return y.detach().numpy(), x.grad.numpy()


def _monai_smooth(ours):
    ours.setdefault("smooth_nr", 1e-5)
    ours.setdefault("smooth_dr", 1e-5)
    return ours


@pytest.mark.parametrize("ours,theirs", MONAI_DICE, ids=[str(o) for o, _ in MONAI_DICE])
@pytest.mark.parametrize("absent", [None, 2])
def test_dice_and_jaccard_match_monai(ours, theirs, absent):
    losses = pytest.importorskip("monai.losses")
    p, t, g = _case(absent=absent)
    kw = {k: v for k, v in theirs.items() if k != "squared_pred"}
    ref = losses.DiceLoss(squared_pred=theirs.get("squared_pred", True), smooth_nr=ours.get("smooth_nr", 1e-5), **kw)
    if "smooth_dr" in ours:
        ref.smooth_dr = ours["smooth_dr"]
    y, gx = _ours(p, t, **_monai_smooth(dict(ours)))
    y_ref, gx_ref = _theirs(ref, p, g)
    assert rel_error(y, y_ref.reshape(y.shape)) < 1e-12
    assert rel_error(gx, gx_ref) < 1e-12


@pytest.mark.parametrize("alpha,beta,batch", [(0.3, 0.7, False), (0.5, 0.5, True), (1.0, 0.2, False)])
def test_tversky_matches_monai(alpha, beta, batch):
    losses = pytest.importorskip("monai.losses")
    p, t, g = _case(seed=1, absent=2)
    ref = losses.TverskyLoss(alpha=alpha, beta=beta, batch=batch)
    y, gx = _ours(p, t, alpha=alpha, beta=beta, squared=False, reduce_batch=batch, smooth=1e-5)
    y_ref, gx_ref = _theirs(ref, p, g)
    assert rel_error(y, y_ref) < 1e-12
    assert rel_error(gx, gx_ref) < 1e-12


@pytest.mark.parametrize("batch,background,absent", [(False, True, None), (False, True, 2), (True, False, 2)])
def test_generalized_dice_matches_monai(batch, background, absent):
    losses = pytest.importorskip("monai.losses")
    p, t, g = _case(seed=2, absent=absent)
    ref = losses.GeneralizedDiceLoss(batch=batch, include_background=background)
    kw = {"weight": "generalized", "squared": False, "reduce_batch": batch, "include_background": background}
    y, gx = _ours(p, t, smooth=1e-5, **kw)
    y_ref, gx_ref = _theirs(ref, p, g)
    # MONAI computes the weights 1 / (sum g)^2 in float32 (ground_o.float()), hence 1e-7 and not 1e-12.
    assert rel_error(y, y_ref) < 1e-7
    assert rel_error(gx, gx_ref) < 1e-7


def _smp_dice(p, g, smooth, log_loss, jaccard):
    """SMP's DiceLoss / JaccardLoss (multiclass, from probabilities): batch sums, absent classes zeroed, mean."""
    torch_ = torch()
    inter, card = (p * g).sum((0, 2, 3)), (p + g).sum((0, 2, 3))
    score = (inter + smooth) / (card - inter + smooth) if jaccard else (2 * inter + smooth) / (card + smooth)
    score = score.clamp_min(1e-7)
    loss = -torch_.log(score) if log_loss else 1 - score
    return (loss * (g.sum((0, 2, 3)) > 0)).mean()


@pytest.mark.parametrize("log_loss", [False, True])
@pytest.mark.parametrize("jaccard", [False, True])
def test_smp_dice_and_jaccard_conventions(log_loss, jaccard):
    p, t, g = _case(seed=3, absent=2)
    s = 0.5
    kw = {"squared": False, "reduce_batch": True, "empty": "zero", "log_loss": log_loss, "jaccard": jaccard}
    y, gx = _ours(p, t, smooth=2 * s if jaccard else s, **kw)
    y_ref, gx_ref = _theirs(lambda x, gt: _smp_dice(x, gt, s, log_loss, jaccard), p, g)
    assert rel_error(y, y_ref) < 1e-12
    assert rel_error(gx, gx_ref) < 1e-12


def test_tversky_half_half_is_dice_and_one_one_is_jaccard():
    p, t, _ = _case(seed=4)
    dice = F.soft_dice_loss(p, t, squared=False, smooth=0.0).item()
    jac = F.soft_dice_loss(p, t, squared=False, smooth=0.0, jaccard=True).item()
    assert F.soft_dice_loss(p, t, alpha=0.5, beta=0.5, squared=False, smooth=0.0).item() == pytest.approx(dice)
    assert F.soft_dice_loss(p, t, alpha=1.0, beta=1.0, squared=False, smooth=0.0).item() == pytest.approx(jac)


def test_new_switches_gradcheck():
    rows = run_checks(names=["soft_dice_loss"])
    assert len(rows) >= 25 and all(r.ok for r in rows), [r for r in rows if not r.ok]


def test_new_switches_bad_values():
    p, t, g = _case()
    for kw, msg in [
        ({"reduction": "avg"}, "reduction must be one of 'mean', 'sum', 'none', got 'avg'"),
        ({"empty": "drop"}, "empty must be one of 'keep', 'zero', got 'drop'"),
        ({"alpha": 0.3}, "give both alpha and beta"),
        ({"alpha": -1.0, "beta": 0.5}, "alpha must be a number >= 0.0, got -1.0"),
        ({"jaccard": True, "alpha": 1.0, "beta": 1.0}, "exclude each other"),
        ({"smooth_dr": float("nan")}, "smooth_dr must be a number >= 0.0, got nan"),
        ({"weight": "balanced"}, "weight given as a string must be one of 'generalized', got 'balanced'"),
    ]:
        with pytest.raises(ValueError, match=msg):
            F.soft_dice_loss(p, t, **kw)
    with pytest.raises(TypeError, match="use a float or bool one-hot mask"):
        F.soft_dice_loss(p, g.astype(np.uint8))


@pytest.mark.parametrize("reduce_batch", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_seed_formula_bit_for_bit(reduce_batch, dtype):
    # The family's general form must not change a single bit of the default loss the training runs use.
    p, t, g = _case(seed=5)
    p, g = p.astype(dtype), g.astype(dtype)
    axes = (0, 2, 3) if reduce_batch else (2, 3)
    I, U = (p * g).sum(axes, keepdims=True), (p * p + g * g).sum(axes, keepdims=True)
    d = (2 * I + 1e-6) / (U + 1e-6)
    a = np.ones((1, 3, 1, 1), dtype=dtype) / (3.0 * (1 if reduce_batch else 2))
    assert F.soft_dice_loss(p, t, reduce_batch=reduce_batch).item() == (1 - (a * d).sum()).item()
