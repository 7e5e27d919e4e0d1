"""ops/loss.py's label smoothing and soft targets against torch; ops/focal.py against MONAI's FocalLoss."""

import numpy as np
import pytest

import minisegnet.ops as F
from minisegnet import Tensor
from minisegnet.gradcheck.cases import run_checks

from utils import rel_error, torch

W3 = [0.5, 1.0, 2.0]


def _grad(fn, x):
    x = Tensor(x.copy(), requires_grad=True)
    y = fn(x)
    y.backward(np.ones(y.shape)) if y.ndim else y.backward()
    return y.numpy(), x.grad


def _torch_grad(fn, x):
    x = torch().tensor(x, requires_grad=True)
    y = fn(x)
    y.sum().backward()
    return y.detach().numpy(), x.grad.numpy()


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = 3 * rng.standard_normal((2, 3, 4, 5))
    t = rng.integers(0, 3, (2, 4, 5))
    t[0, 0] = -100
    q = rng.random((2, 3, 4, 5))
    return x, t, q / q.sum(1, keepdims=True)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weight", [None, W3])
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
def test_label_smoothing_matches_torch(reduction, weight, eps):
    torch_ = torch()
    x, t, _ = _data()
    w = None if weight is None else torch_.tensor(weight, dtype=torch_.float64)
    y, gx = _grad(lambda z: F.cross_entropy(z, t, weight=weight, reduction=reduction, label_smoothing=eps), x)
    tt = torch_.tensor(t)
    ref = torch_.nn.functional.cross_entropy
    y_ref, gx_ref = _torch_grad(lambda z: ref(z, tt, weight=w, reduction=reduction, label_smoothing=eps), x)
    assert rel_error(y, y_ref) < 1e-12
    assert rel_error(gx, gx_ref) < 1e-12


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weight,eps", [(None, 0.0), (W3, 0.0), (W3, 0.3)])
def test_soft_targets_match_torch(reduction, weight, eps):
    torch_ = torch()
    x, _, q = _data(1)
    w = None if weight is None else torch_.tensor(weight, dtype=torch_.float64)
    y, gx = _grad(lambda z: F.cross_entropy(z, q, weight=weight, reduction=reduction, label_smoothing=eps), x)
    tq = torch_.tensor(q)
    ref = torch_.nn.functional.cross_entropy
    y_ref, gx_ref = _torch_grad(lambda z: ref(z, tq, weight=w, reduction=reduction, label_smoothing=eps), x)
    assert rel_error(y, y_ref) < 1e-12
    assert rel_error(gx, gx_ref) < 1e-12


def test_one_hot_soft_target_equals_labels():
    x, t, _ = _data(2)
    t = np.abs(t) % 3
    q = np.eye(3)[t].transpose(0, 3, 1, 2)
    for eps in (0.0, 0.2):
        a = F.cross_entropy(x, t, weight=W3, label_smoothing=eps, reduction="sum").item()
        assert F.cross_entropy(x, q, weight=W3, label_smoothing=eps, reduction="sum").item() == pytest.approx(a)


@pytest.mark.parametrize("gamma,alpha", [(2.0, None), (0.5, 0.25), (0.0, None), (3.0, 0.75)])
def test_focal_matches_monai(gamma, alpha):
    losses = pytest.importorskip("monai.losses")
    x, t, _ = _data(3)
    t = np.abs(t) % 3
    g = np.eye(3)[t].transpose(0, 3, 1, 2)
    # "none": MONAI's "sum" averages over H, W first (its average_spatial_dims), so compare per pixel and class.
    ref = losses.FocalLoss(use_softmax=True, gamma=gamma, alpha=alpha, reduction="none")
    y, gx = _grad(lambda z: F.focal_loss(z, t, gamma=gamma, alpha=alpha, reduction="none"), x)
    y_ref, gx_ref = _torch_grad(lambda z: ref(z, torch().tensor(g)).sum(1), x)
    # MONAI casts the logits to float32 (input.float()), hence 1e-6 and not 1e-12.
    assert rel_error(y, y_ref) < 1e-6
    assert rel_error(gx, gx_ref) < 1e-6


def test_focal_gamma_0_is_cross_entropy():
    x, t, _ = _data(4)
    for kw in ({}, {"reduction": "none"}):
        a, ga = _grad(lambda z, kw=kw: F.focal_loss(z, t, gamma=0.0, alpha=W3, **kw), x)
        b, gb = _grad(lambda z, kw=kw: F.cross_entropy(z, t, weight=W3, **kw) * (1 if kw else _mean_fix(t)), x)
        assert rel_error(a, b) < 1e-13 and rel_error(ga, gb) < 1e-13


def _mean_fix(t):
    # focal "mean" divides by the counted pixels, cross-entropy's by their summed class weights
    counted = t[t != -100]
    return np.take(W3, counted).sum() / counted.size


def test_new_terms_gradcheck():
    rows = run_checks(names=["cross_entropy", "focal_loss"])
    assert len(rows) >= 14 and all(r.ok for r in rows), [r for r in rows if not r.ok]


def test_bad_values():
    x, t, q = _data()
    with pytest.raises(ValueError, match=r"label_smoothing must be a number in \[0.0, 1.0\], got 1.5"):
        F.cross_entropy(x, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match="ignore_index=255 needs integer labels"):
        F.cross_entropy(x, q, ignore_index=255)
    with pytest.raises(TypeError, match="use a float or bool one-hot mask"):
        F.cross_entropy(x, (q > 0.3).astype(np.uint8))
    with pytest.raises(ValueError, match="gamma must be a number >= 0.0, got -1"):
        F.focal_loss(x, t, gamma=-1)
    with pytest.raises(ValueError, match=r"alpha must be a number in \[0.0, 1.0\], got 2"):
        F.focal_loss(x, t, alpha=2)
    with pytest.raises(ValueError, match=r"alpha must have shape \(3,\)"):
        F.focal_loss(x, t, alpha=[1.0, 2.0])
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.focal_loss(x, t, reduction="avg")
