"""ops/loss.py: cross_entropy, binary_cross_entropy_with_logits, dice_ce_loss."""

import inspect
import math

import numpy as np
import pytest

import minisegnet as msn
import minisegnet.ops as F
from minisegnet.backend import to_device
from minisegnet.gradcheck import gradcheck
from minisegnet.gradcheck.cases import run_checks
from minisegnet.ops.loss import REDUCTIONS

from cuda_host import ran, use_host_kernels
from utils import rand, rand_labels, rel_error, to_torch, torch

W3 = np.array([0.5, 1.0, 2.0])


# ---- cross-entropy --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4, 5)], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True], ids=["noweight", "weight"])
@pytest.mark.parametrize("ignore", [None, -100, 1], ids=["noignore", "ignore-100", "ignore1"])
def test_cross_entropy_gradcheck(device, shape, reduction, weighted, ignore):
    x = rand(*shape, device=device)
    t = rand_labels((shape[0],) + shape[2:], device=device, ignore=-100 if ignore == -100 else None)
    kw = {"reduction": reduction, "weight": to_device(W3, device) if weighted else None}
    if ignore is not None:
        kw["ignore_index"] = ignore
    rep = gradcheck(lambda x: F.cross_entropy(x, t, **kw), x)
    assert rep.max_rel_err <= 1e-6, rep


def test_cross_entropy_pixel_weight_gradcheck(device):
    # The cases live in gradcheck/cases.py (``minisegnet gradcheck``): they pass, and no gradient reaches pw.
    assert all(r.ok for r in run_checks(device, names=["cross_entropy pixel_weight", "cross_entropy label_smoothing"]))
    x = rand(2, 3, 4, 5, device=device)
    t = rand_labels((2, 4, 5), device=device, ignore=-100)
    pw = rand(2, 4, 5, device=device, low=0.5, high=3.0, requires_grad=False)  # a Tensor: no gradient flows into it
    F.cross_entropy(x, t, weight=to_device(W3, device), pixel_weight=pw).backward()
    assert pw.grad is None and x.grad is not None


@pytest.mark.parametrize("shape", [(4, 3, 5), (2, 3, 2, 3, 2)], ids=str)
def test_cross_entropy_any_number_of_trailing_axes(shape):
    x, t = rand(*shape), rand_labels((shape[0],) + shape[2:])
    rep = gradcheck(lambda x: F.cross_entropy(x, t, weight=W3), x)
    assert rep.max_rel_err <= 1e-6, rep


@pytest.mark.parametrize("shape", [(6, 3), (2, 3, 4, 5), (2, 3, 4)], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True], ids=["noweight", "weight"])
def test_cross_entropy_matches_torch(shape, reduction, weighted):
    torch_ = torch()
    x, t = rand(*shape), rand_labels((shape[0],) + shape[2:], ignore=-100)
    y = F.cross_entropy(x, t, weight=W3 if weighted else None, reduction=reduction)
    g = np.random.default_rng(1).standard_normal(y.shape)
    y.backward(g)
    tx = to_torch(x, True)
    ty = torch_.nn.functional.cross_entropy(
        tx, torch_.from_numpy(t), weight=torch_.from_numpy(W3) if weighted else None, reduction=reduction
    )
    ty.backward(torch_.from_numpy(g))
    assert rel_error(y, ty.detach().numpy()) < 1e-10
    assert rel_error(x.grad, tx.grad.numpy()) < 1e-10


def test_cross_entropy_pixel_weight_scales_the_loss_but_not_the_normaliser():
    torch_ = torch()
    x, t = rand(2, 3, 4, 5), rand_labels((2, 4, 5), ignore=-100)
    pw = np.random.default_rng(2).uniform(0.5, 3.0, (2, 4, 5))
    y = F.cross_entropy(x, t, weight=W3, pixel_weight=pw)
    y.backward()
    tx, tt = to_torch(x, True), torch_.from_numpy(t)
    per_pixel = torch_.nn.functional.cross_entropy(tx, tt, weight=torch_.from_numpy(W3), reduction="none")
    counted = t != -100
    expected = (per_pixel * torch_.from_numpy(pw)).sum() / W3[t[counted]].sum()  # torch's normaliser
    expected.backward()
    assert rel_error(y, expected.detach().numpy()) < 1e-12
    assert rel_error(x.grad, tx.grad.numpy()) < 1e-12
    # Without class weights or ignored pixels this is the common idiom (loss * weight_map).mean().
    t_all = rand_labels((2, 4, 5))
    plain = (F.cross_entropy(x, t_all, reduction="none").numpy() * pw).mean()
    assert F.cross_entropy(x, t_all, pixel_weight=pw).item() == pytest.approx(plain, rel=1e-12)


def test_cross_entropy_when_every_pixel_is_ignored(device):
    x = rand(2, 3, 2, 2, device=device)
    t = to_device(np.full((2, 2, 2), -100), device)
    y = F.cross_entropy(x, t)
    y.backward()
    assert y.item() == 0.0 and not np.any(msn.to_numpy(x.grad))
    assert F.cross_entropy(x, t, reduction="sum").item() == 0.0
    torch_ = torch()
    assert math.isnan(torch_.nn.functional.cross_entropy(to_torch(x), torch_.from_numpy(msn.to_numpy(t))).item())


def test_cross_entropy_at_initialisation_is_log_C(device):
    for C in (2, 5, 21):
        x = msn.tensor(np.zeros((2, C, 8, 8)), device=device)
        assert F.cross_entropy(x, rand_labels((2, 8, 8), C, device)).item() == pytest.approx(math.log(C), rel=1e-12)
        small = rand(2, C, 8, 8, device=device, seed=C) * 1e-3
        assert F.cross_entropy(small, rand_labels((2, 8, 8), C, device)).item() == pytest.approx(math.log(C), rel=1e-2)


def test_cross_entropy_is_stable_and_keeps_float32(device):
    x = msn.tensor([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]], dtype=np.float32, device=device, requires_grad=True)
    y = F.cross_entropy(x, to_device(np.array([0, 2]), device))
    y.backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32
    assert y.item() == pytest.approx(math.log(3) / 2, rel=1e-6)


def test_cross_entropy_bad_input():
    x = rand(2, 3, 4, 4)
    good = rand_labels((2, 4, 4))
    with pytest.raises(ValueError, match=r"label 3.*\[0, 3\).*C=3"):
        F.cross_entropy(x, np.where(good == 0, 3, good))
    with pytest.raises(ValueError, match="label -1"):
        F.cross_entropy(x, np.where(good == 0, -1, good))
    with pytest.raises(TypeError, match="integer class labels.*float64"):
        F.cross_entropy(x, good.astype(np.float64))
    with pytest.raises(ValueError, match=r"\(2, 4, 5\).*\(2, 3, 4, 4\)"):
        F.cross_entropy(x, rand_labels((2, 4, 5)))
    for bad in (np.nan, np.inf):
        xb = x.numpy()
        xb[1, 2, 3, 0] = bad
        with pytest.raises(ValueError, match=f"logits contains {bad}"):
            F.cross_entropy(xb, good)
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\).*\(2,\)"):
        F.cross_entropy(x, good, weight=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"pixel_weight shape \(4, 4\)"):
        F.cross_entropy(x, good, pixel_weight=np.ones((4, 4)))
    with pytest.raises(ValueError, match="'average'"):
        F.cross_entropy(x, good, reduction="average")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4, 5), (2, 3, 3, 1, 2)], ids=str)
def test_cross_entropy_fast_twin_without_kernels_is_the_taught_op(device, dtype, shape, monkeypatch):
    # ops/fast/loss.py runs CUDA kernels only; without them (NumPy, or CuPy with MINISEGNET_CUDA_KERNELS=0) every
    # case goes to the taught op and gives its numbers.
    monkeypatch.setattr(msn.cuda, "CUDA_KERNELS", False)
    logits = np.random.default_rng(2).standard_normal(shape) * 4 + 50
    labels = rand_labels((shape[0],) + shape[2:], 3, device, seed=3, ignore=-100)
    pixel_weight = to_device(np.random.default_rng(4).uniform(0.5, 2.0, (shape[0],) + shape[2:]).astype(dtype), device)
    cases = [{"reduction": r} for r in REDUCTIONS] + [
        {"weight": to_device(W3.astype(dtype), device), "ignore_index": 1},
        {"weight": to_device(W3.astype(dtype), device), "pixel_weight": pixel_weight, "reduction": "none"},
        {"ignore_index": None, "pixel_weight": pixel_weight},
        {"label_smoothing": 0.1},
    ]
    for kw in cases:
        target = labels if kw.get("ignore_index", -100) == -100 else to_device(np.abs(msn.to_numpy(labels)) % 3, device)
        runs = []
        for reference in (True, False):
            with msn.reference_kernels(reference):
                x = msn.Tensor(to_device(logits.astype(dtype), device), requires_grad=True)
                loss = F.cross_entropy(x, target, **kw)
                assert not getattr(loss.creator, "fused", False)
                loss.backward(to_device(np.random.default_rng(5).random(loss.shape).astype(dtype), device))
                runs.append((loss.data, x.grad))
        for r, f in zip(*runs):
            assert f.dtype == r.dtype == dtype and f.shape == r.shape
            assert rel_error(f, r) == 0, kw


CE_KERNELS = ["minisegnet_cross_entropy_forward", "minisegnet_cross_entropy_backward"]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cross_entropy_cuda_kernels_equal_the_generic_code(device, dtype, monkeypatch):
    # On CuPy the label loss without pixel weights or smoothing (the default training loss) runs its forward and
    # its backward as one CUDA kernel each (ops/fast/cuda_fused.py); MINISEGNET_CUDA_KERNELS=0 runs the array code.
    # Without a GPU the kernels' CUDA C runs on the host instead (tests/cuda_host.py).
    fetched = use_host_kernels(monkeypatch) if device == "cpu" else None
    rng = np.random.default_rng(0)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for shape in [(5, 3), (2, 3, 4, 5), (2, 7, 3, 1, 2)]:
        for reduction in REDUCTIONS:
            for weight in (None, W3 if shape[1] == 3 else np.linspace(0.5, 2, shape[1])):
                for ignore in (None, -100, 1):
                    labels = rand_labels((shape[0],) + shape[2:], shape[1], device, seed=sum(shape), ignore=ignore)
                    logits = rng.standard_normal(shape).astype(dtype) * 3
                    runs = []
                    for kernels in (True, False):
                        monkeypatch.setattr(msn.cuda, "CUDA_KERNELS", kernels)
                        x = msn.Tensor(to_device(logits, device), requires_grad=True)
                        w = None if weight is None else to_device(weight.astype(dtype), device)
                        loss = F.cross_entropy(x, labels, weight=w, ignore_index=ignore, reduction=reduction)
                        loss.backward(to_device(np.random.default_rng(1).random(loss.shape).astype(dtype), device))
                        runs.append((loss.data, x.grad))
                        assert ran(fetched, *(CE_KERNELS * kernels))
                    for fused, generic in zip(*runs):
                        assert fused.dtype == dtype and fused.shape == generic.shape
                        assert rel_error(fused, generic) <= tol, (shape, reduction, weight, ignore)
    monkeypatch.setattr(msn.cuda, "CUDA_KERNELS", True)
    every_pixel_ignored = to_device(np.full((2, 3), -100), device)  # D = 0: a loss of 0 and a zero gradient
    x = msn.Tensor(to_device(rng.standard_normal((2, 3, 3)).astype(dtype), device), requires_grad=True)
    loss = F.cross_entropy(x, every_pixel_ignored)
    loss.backward()
    assert loss.item() == 0.0 and not msn.to_numpy(x.grad).any() and ran(fetched, *CE_KERNELS)


# ---- binary cross-entropy with logits -------------------------------------------------------------------------------
def test_bce_gradcheck(device):
    # gradcheck/cases.py's cases: plain, pos_weight, "sum", "none"; soft targets take a gradient too.
    rows = run_checks(device, names=["binary_cross_entropy_with_logits"])
    assert len(rows) == 4 and all(r.ok for r in rows), rows


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 4, 5)], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("pos_weight", [None, [1.0, 3.0, 0.5]], ids=["nopw", "pw"])
def test_bce_matches_torch(shape, reduction, pos_weight):
    torch_ = torch()
    x = rand(*shape)
    x.data *= 3  # reach the saturated ends of the sigmoid too
    t = rand(*shape, seed=1, low=0.0, high=1.0)
    y = F.binary_cross_entropy_with_logits(x, t, pos_weight=pos_weight, reduction=reduction)
    g = np.random.default_rng(2).standard_normal(y.shape)
    y.backward(g)
    tx, tt = to_torch(x, True), to_torch(t, True)
    # A (C,) pos_weight weighs axis 1 here; torch broadcasts against the last axis, so it needs (C, 1, 1).
    tpw = (
        None
        if pos_weight is None
        else torch_.tensor(pos_weight, dtype=torch_.float64).reshape((-1,) + (1,) * (len(shape) - 2))
    )
    ty = torch_.nn.functional.binary_cross_entropy_with_logits(tx, tt, pos_weight=tpw, reduction=reduction)
    ty.backward(torch_.from_numpy(g))
    assert rel_error(y, ty.detach().numpy()) < 1e-10
    assert rel_error(x.grad, tx.grad.numpy()) < 1e-10
    assert rel_error(t.grad, tt.grad.numpy()) < 1e-10


def test_bce_is_stable_for_huge_logits(device):
    x = msn.tensor([-1000.0, -50.0, 0.0, 50.0, 1000.0], device=device, requires_grad=True)
    t = to_device(np.array([1, 0, 1, 1, 0]), device)  # int and bool targets are fine
    y = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    np.testing.assert_allclose(
        y.numpy(), [1000.0, math.log1p(math.exp(-50)), math.log(2), math.log1p(math.exp(-50)), 1000.0]
    )
    y.sum().backward()
    np.testing.assert_allclose(msn.to_numpy(x.grad), [-1.0, 0.0, -0.5, 0.0, 1.0], atol=1e-15)
    assert F.binary_cross_entropy_with_logits(x, t.astype(bool)).item() == pytest.approx(y.numpy().mean())


def test_bce_bad_input():
    x = rand(2, 3, 4, 4)
    t = np.ones((2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\(2, 3, 4\).*\(2, 3, 4, 4\)"):
        F.binary_cross_entropy_with_logits(x, np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match=r"\[0, 1\].*2.0"):
        F.binary_cross_entropy_with_logits(x, 2 * t)
    xb = x.numpy()
    xb[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="logits contains nan"):
        F.binary_cross_entropy_with_logits(xb, t)
    with pytest.raises(ValueError, match=r"pos_weight must have shape \(3,\).*\(4,\)"):
        F.binary_cross_entropy_with_logits(x, t, pos_weight=[1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match=r"pos_weight shape \(5, 1\)"):
        F.binary_cross_entropy_with_logits(x, t, pos_weight=np.ones((5, 1)))


# ---- Dice + cross-entropy -------------------------------------------------------------------------------------------
def test_dice_ce_loss_is_the_weighted_sum(device):
    x = rand(2, 3, 4, 4, device=device)
    t = rand_labels((2, 4, 4), device=device, ignore=-100)
    y = F.dice_ce_loss(x, t, lambda_dice=0.3, lambda_ce=2.0, weight=to_device(W3, device), include_background=False)
    ce = F.cross_entropy(x, t, weight=to_device(W3, device)).item()
    dice = F.soft_dice_loss(F.softmax(x), t, reduce_batch=True, include_background=False, ignore_index=-100).item()
    assert y.item() == pytest.approx(2.0 * ce + 0.3 * dice, rel=1e-12)
    assert all(row.ok for row in run_checks(device, names=["dice_ce_loss"]))


def test_dice_ce_loss_lambda_0_leaves_the_term_out():
    x, t = rand(2, 3, 4, 4), rand_labels((2, 4, 4))
    assert F.dice_ce_loss(x, t, lambda_dice=0).item() == F.cross_entropy(x, t).item()
    assert F.dice_ce_loss(x, t, lambda_ce=0).item() == F.soft_dice_loss(F.softmax(x), t, reduce_batch=True).item()
    with pytest.raises(ValueError, match="both 0"):
        F.dice_ce_loss(x, t, lambda_dice=0, lambda_ce=0)
    with pytest.raises(ValueError, match="lambda_ce must be a number >= 0.0, got -1"):
        F.dice_ce_loss(x, t, lambda_ce=-1)


def test_dice_ce_loss_matches_torch_autograd():
    torch_ = torch()
    x, t = rand(2, 3, 4, 4), rand_labels((2, 4, 4))
    F.dice_ce_loss(x, t, lambda_dice=0.5).backward()
    tx = to_torch(x, True)
    p = torch_.softmax(tx, 1)
    g = torch_.nn.functional.one_hot(torch_.from_numpy(t), 3).permute(0, 3, 1, 2).double()
    d = (2 * (p * g).sum((0, 2, 3)) + 1e-6) / ((p * p).sum((0, 2, 3)) + (g * g).sum((0, 2, 3)) + 1e-6)  # batch Dice
    loss = torch_.nn.functional.cross_entropy(tx, torch_.from_numpy(t)) + 0.5 * (1 - d.mean())
    loss.backward()
    assert rel_error(x.grad, tx.grad.numpy()) < 1e-10


def test_losses_of_an_empty_batch_are_zero_with_zero_gradients():
    x = msn.tensor(np.zeros((0, 3, 4, 4)), requires_grad=True)
    for loss in (
        F.cross_entropy(x, np.zeros((0, 4, 4), dtype=np.int64)),
        F.binary_cross_entropy_with_logits(x, np.zeros((0, 3, 4, 4))),
    ):
        loss.backward()
        assert loss.item() == 0.0 and x.grad.shape == x.shape
        x.grad = None


# One non-default value for each argument of soft_dice_loss after (probs, target): dice_ce_loss's keywords, and
# soft_dice_loss's (None: the same). dice_ce_loss's Dice term is batch Dice with ignore_index=-100 unless told.
DICE_CE_SWITCHES = {
    "smooth": ({"smooth": 0.5}, None),
    "squared": ({"squared": False}, None),
    "reduce_batch": ({"reduce_batch": False}, None),
    "include_background": ({"include_background": False}, None),
    "weight": ({"dice_weight": W3}, {"weight": W3}),
    "ignore_index": ({"ignore_index": 255}, None),
    "jaccard": ({"jaccard": True}, None),
    "alpha": ({"alpha": 0.3, "beta": 0.7}, None),
    "beta": ({"alpha": 0.5, "beta": 0.9}, None),
    "smooth_nr": ({"smooth_nr": 0.3}, None),
    "smooth_dr": ({"smooth_dr": 0.3}, None),
    "log_loss": ({"log_loss": True}, None),
    "reduction": ({"reduction": "sum"}, None),
    "empty": ({"empty": "zero"}, None),
}


def test_the_switch_table_names_every_soft_dice_argument():
    assert set(DICE_CE_SWITCHES) == set(inspect.signature(F.soft_dice_loss).parameters) - {"probs", "target"}


@pytest.mark.parametrize("name", list(DICE_CE_SWITCHES))
def test_dice_ce_loss_honours_each_soft_dice_switch(name):
    ours, theirs = DICE_CE_SWITCHES[name]
    theirs = {"reduce_batch": True, "ignore_index": -100, **(ours if theirs is None else theirs)}
    # labels 0 and 1 only: class 2 is absent from the batch, so the empty-class policy matters too
    t = rand_labels((2, 4, 4), C=2, ignore=255 if name == "ignore_index" else None)
    z, zd = rand(2, 3, 4, 4), rand(2, 3, 4, 4)
    y = F.dice_ce_loss(z, t, lambda_ce=0, **ours)
    y_dice = F.soft_dice_loss(F.softmax(zd), t, **theirs)
    assert y.item() == y_dice.item()
    y.backward()
    y_dice.backward()
    assert np.array_equal(z.grad, zd.grad)
    # and the switch matters: the loss without it differs (ignored pixels relabelled 0 for the plain call)
    plain = F.dice_ce_loss(z, np.where(t == 255, 0, t), lambda_ce=0)
    assert abs(plain.item() - y.item()) > 1e-3
    # with the cross-entropy, as in F.dice_ce_loss(z, t, jaccard=True): the switch reaches the Dice term only
    ce_kw = {"ignore_index": 255} if name == "ignore_index" else {}
    both = F.dice_ce_loss(z, t, **ours).item()
    assert both == pytest.approx(F.cross_entropy(z, t, **ce_kw).item() + y.item(), rel=1e-12)


def test_dice_ce_loss_with_family_switches_gradchecks():
    z, t = rand(2, 3, 4, 4), rand_labels((2, 4, 4), ignore=-100)
    for kw in ({"jaccard": True, "log_loss": True}, {"alpha": 0.3, "beta": 0.7, "squared": False, "smooth": 1.0}):
        rep = gradcheck(lambda z, kw=kw: F.dice_ce_loss(z, t, lambda_dice=0.7, **kw), z)
        assert rep.max_rel_err <= 1e-6, (kw, rep)


def test_dice_ce_loss_bad_arguments():
    z, t = rand(2, 3, 4, 4), rand_labels((2, 4, 4))
    with pytest.raises(TypeError, match=r"unknown argument 'jacard'; expected a soft_dice_loss switch \(smooth, "):
        F.dice_ce_loss(z, t, jacard=True)
    with pytest.raises(TypeError, match="unknown argument 'probs'"):
        F.dice_ce_loss(z, t, probs=z)
    with pytest.raises(ValueError, match="reduction='none'.*expected 'mean' or 'sum', or lambda_ce=0"):
        F.dice_ce_loss(z, t, reduction="none")
    assert F.dice_ce_loss(z, t, lambda_ce=0, reduction="none").shape == (3,)  # one term per class (batch Dice)
    with pytest.raises(ValueError, match="soft_dice_loss: give both alpha and beta"):
        F.dice_ce_loss(z, t, alpha=0.3)
