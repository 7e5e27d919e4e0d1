"""ops/dice.py and dice_family.py: soft_dice_loss, every switch, against gradcheck and torch autograd of the formula."""

import itertools

import numpy as np
import pytest

import minisegnet as msn
import minisegnet.ops as F
from minisegnet.backend import to_device
from minisegnet.gradcheck import gradcheck
from minisegnet.ops.dice import SoftDiceLoss
from minisegnet.ops.dice_family import DiceFamilyLoss, dice_family_loss

from utils import rand, rand_labels, rel_error, to_torch, torch

W3 = [0.5, 1.0, 2.0]
SWITCHES = list(itertools.product([True, False], [False, True], [True, False], [None, W3], [None, 255]))
IDS = [
    f"{'sq' if s else 'lin'}-{'batch' if rb else 'img'}-{'bg' if bg else 'nobg'}-{'w' if w else 'now'}-"
    f"{'ign' if ig else 'noign'}"
    for s, rb, bg, w, ig in SWITCHES
]


def probs(*shape, device="cpu", seed=0):
    return rand(*shape, device=device, seed=seed, low=0.05, high=0.95)


def kwargs(squared, reduce_batch, include_background, weight, ignore_index):
    return {
        "squared": squared,
        "reduce_batch": reduce_batch,
        "include_background": include_background,
        "weight": weight,
        "ignore_index": ignore_index,
    }


def torch_dice(
    p, t, smooth=1e-6, squared=True, reduce_batch=False, include_background=True, weight=None, ignore_index=None
):
    """The formula written directly in torch, differentiated by torch's autograd."""
    torch_ = torch()
    C = p.shape[1]
    if t.dtype.is_floating_point:
        g, m = t, torch_.ones_like(p)
    else:
        m = torch_.ones_like(t) if ignore_index is None else (t != ignore_index).long()
        g = torch_.nn.functional.one_hot(t * m, C).permute(0, 3, 1, 2).double() * m[:, None]
        m = m[:, None].double()
    axes = (0, 2, 3) if reduce_batch else (2, 3)
    inter = (p * g * m).sum(axes)
    union = ((p * p * m).sum(axes) + (g * g).sum(axes)) if squared else ((p * m).sum(axes) + g.sum(axes))
    d = (2 * inter + smooth) / (union + smooth)
    w = torch_.ones(C, dtype=torch_.float64) if weight is None else torch_.tensor(weight, dtype=torch_.float64)
    if not include_background:
        w[0] = 0
    return 1 - ((d * w).sum(-1) / w.sum()).mean()


@pytest.mark.parametrize("switches", SWITCHES, ids=IDS)
def test_soft_dice_gradcheck_every_switch(device, switches):
    p = probs(2, 3, 4, 4, device=device)
    t = rand_labels((2, 4, 4), device=device, ignore=switches[-1])
    rep = gradcheck(lambda p: F.soft_dice_loss(p, t, **kwargs(*switches)), p)
    assert rep.max_rel_err <= 1e-6, rep


@pytest.mark.parametrize("switches", SWITCHES, ids=IDS)
def test_soft_dice_matches_torch_autograd(switches):
    torch_ = torch()
    p, t = probs(2, 3, 5, 4), rand_labels((2, 5, 4), ignore=switches[-1])
    y = F.soft_dice_loss(p, t, **kwargs(*switches))
    y.backward()
    tp = to_torch(p, True)
    ty = torch_dice(tp, torch_.from_numpy(t), 1e-6, *switches)
    ty.backward()
    assert rel_error(y, ty.detach().numpy()) < 1e-12
    assert rel_error(p.grad, tp.grad.numpy()) < 1e-12


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("reduce_batch", [False, True])
def test_soft_dice_multilabel_target(device, squared, reduce_batch):
    torch()
    p = probs(2, 3, 4, 4, device=device)
    g = to_device((np.random.default_rng(1).random((2, 3, 4, 4)) < 0.4).astype(np.float64), device)  # overlapping
    kw = {"squared": squared, "reduce_batch": reduce_batch, "smooth": 1.0}
    rep = gradcheck(lambda p: F.soft_dice_loss(p, g, **kw), p)
    assert rep.max_rel_err <= 1e-6, rep
    p.zero_grad()
    F.soft_dice_loss(p, g, **kw).backward()
    tp = to_torch(p, True)
    torch_dice(tp, to_torch(g), 1.0, squared, reduce_batch).backward()
    assert rel_error(p.grad, tp.grad.numpy()) < 1e-12


def test_one_hot_target_equals_label_target(device):
    p, t = probs(2, 3, 4, 4, device=device), rand_labels((2, 4, 4), device=device)
    one_hot = to_device(np.eye(3)[msn.to_numpy(t)].transpose(0, 3, 1, 2), device)
    for kw in ({}, {"squared": False, "reduce_batch": True}):
        a, b = F.soft_dice_loss(p, t, **kw).item(), F.soft_dice_loss(p, one_hot, **kw).item()
        assert a == pytest.approx(b, rel=1e-14)
    assert F.soft_dice_loss(p, one_hot.astype(bool)).item() == pytest.approx(F.soft_dice_loss(p, t).item(), rel=1e-14)


def test_ignored_pixels_do_not_matter(device):
    p, t = probs(2, 3, 4, 4, device=device), rand_labels((2, 4, 4), device=device, ignore=255)
    ignored = msn.to_numpy(t) == 255
    other = p.numpy().transpose(1, 0, 2, 3)  # a view with the class axis first, so one mask picks pixels
    other[:, ignored] = 0.5  # change only the ignored pixels' predictions
    a = F.soft_dice_loss(p, t, ignore_index=255).item()
    changed = msn.tensor(other.transpose(1, 0, 2, 3), device=device)
    assert F.soft_dice_loss(changed, t, ignore_index=255).item() == pytest.approx(a, rel=1e-14)
    p.zero_grad()
    F.soft_dice_loss(p, t, ignore_index=255).backward()
    assert not np.any(msn.to_numpy(p.grad).transpose(1, 0, 2, 3)[:, ignored])


def test_tiny_and_empty_classes(device):
    # Class 2 absent from the target; its predicted probabilities near 3e-4 (logits shifted by -8).
    z = rand(2, 3, 4, 4, device=device)
    z.data[:, 2] -= 8
    t = rand_labels((2, 4, 4), C=2, device=device)
    for kw in ({}, {"squared": False}, {"reduce_batch": True}, {"include_background": False}, {"smooth": 1.0}):
        rep = gradcheck(lambda z, kw=kw: F.soft_dice_loss(F.softmax(z), t, **kw), z)
        assert rep.max_rel_err <= 1e-6, (kw, rep)
    # Exactly empty in prediction and target: d = smooth / smooth = 1, the class costs nothing.
    p = np.zeros((1, 3, 2, 2))
    p[0, 0], p[0, 1, 0, 0] = 0.6, 0.4
    g = np.zeros((1, 3, 2, 2))
    g[0, 0] = 1.0
    d_empty = F.soft_dice_loss(p[:, 2:], g[:, 2:]).item()
    assert d_empty == 0.0
    # Empty in the target but predicted: that class's term is near 0, i.e. a loss near 1 for it.
    assert F.soft_dice_loss(p[:, 1:2], g[:, 1:2]).item() == pytest.approx(1.0, abs=1e-4)


def test_perfect_prediction_and_range(device):
    t = rand_labels((2, 6, 6), C=4, device=device)
    one_hot = to_device(np.eye(4)[msn.to_numpy(t)].transpose(0, 3, 1, 2), device)
    for switches in SWITCHES:
        kw = kwargs(*switches)
        kw["weight"] = None if kw["weight"] is None else [0.5, 1.0, 2.0, 1.0]
        assert F.soft_dice_loss(one_hot, t, **kw).item() == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(0)
    for seed in range(20):
        p = to_device(rng.random((2, 4, 6, 6)) ** rng.uniform(0.2, 5), device)  # from near-0 to near-1 probabilities
        kw = kwargs(*SWITCHES[seed % len(SWITCHES)])
        kw["weight"] = None if kw["weight"] is None else [0.5, 1.0, 2.0, 1.0]
        value = F.soft_dice_loss(p, rand_labels((2, 6, 6), 4, device, seed, kw["ignore_index"]), **kw).item()
        assert 0.0 <= value <= 1.0


def test_float32_stays_float32(device):
    p = probs(2, 3, 4, 4, device=device)
    p32 = msn.Tensor(p.data.astype(np.float32), requires_grad=True)
    y = F.soft_dice_loss(p32, rand_labels((2, 4, 4), device=device))
    y.backward()
    assert y.dtype == np.float32 and p32.grad.dtype == np.float32


def test_soft_dice_bad_input():
    p, t = probs(2, 3, 4, 4), rand_labels((2, 4, 4))
    for bad in (1.5, -0.25, np.nan):
        pb = p.numpy()
        pb[1, 2, 0, 3] = bad
        with pytest.raises(ValueError, match=rf"probs must lie in \[0, 1\].*softmax.*got {bad}"):
            F.soft_dice_loss(pb, t)
    with pytest.raises(ValueError, match=r"label 3.*\[0, 3\)"):
        F.soft_dice_loss(p, np.where(t == 0, 3, t))
    with pytest.raises(ValueError, match=r"label 255.*\[0, 3\)"):
        F.soft_dice_loss(p, np.where(t == 0, 255, t))  # 255 without ignore_index=255
    with pytest.raises(ValueError, match=r"\(2, 4, 5\).*\(2, 3, 4, 4\)"):
        F.soft_dice_loss(p, rand_labels((2, 4, 5)))
    with pytest.raises(ValueError, match=r"one-hot target shape \(2, 4, 4\).*\(2, 3, 4, 4\)"):
        F.soft_dice_loss(p, t.astype(np.float64))  # float labels
    with pytest.raises(ValueError, match="ignore_index needs an integer label target"):
        F.soft_dice_loss(p, np.ones((2, 3, 4, 4)), ignore_index=255)
    with pytest.raises(ValueError, match=r"target must lie in \[0, 1\]"):
        F.soft_dice_loss(p, 2 * np.ones((2, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\).*\(2,\)"):
        F.soft_dice_loss(p, t, weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="weight must be >= 0, got -1.0"):
        F.soft_dice_loss(p, t, weight=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="smooth must be a number >= 0.0, got -1"):
        F.soft_dice_loss(p, t, smooth=-1)
    with pytest.raises(ValueError, match="sum to 0"):
        F.soft_dice_loss(p[:, :1], np.zeros((2, 4, 4), dtype=int), include_background=False)


def test_the_lessons_function_runs_without_switches_and_the_family_with_any():
    p, t = probs(2, 3, 4, 4), rand_labels((2, 4, 4), ignore=255)
    t0 = np.where(t == 255, 0, t)
    for kw in ({}, {"squared": False}, {"smooth": 1.0}):
        assert type(F.soft_dice_loss(p, t0, **kw).creator) is SoftDiceLoss, kw
    family = [
        {"reduce_batch": True},
        {"include_background": False},
        {"weight": W3},
        {"weight": "generalized"},
        {"ignore_index": 255},
        {"jaccard": True},
        {"alpha": 0.3, "beta": 0.7},
        {"smooth_nr": 1e-3},
        {"smooth_dr": 1e-3},
        {"log_loss": True},
        {"reduction": "sum"},
        {"empty": "zero"},
        {"smooth": 0.0},  # below the clamp EPS: the family's clamped denominator
    ]
    for kw in family:
        assert type(F.soft_dice_loss(p, t if "ignore_index" in kw else t0, **kw).creator) is DiceFamilyLoss, kw


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_family_at_its_defaults_is_the_lessons_loss(squared, dtype):
    p = msn.Tensor(probs(2, 3, 5, 4).data.astype(dtype), requires_grad=True)
    q = msn.Tensor(p.data.copy(), requires_grad=True)
    t = rand_labels((2, 5, 4))
    g = np.eye(3, dtype=dtype)[t].transpose(0, 3, 1, 2)
    plain = {"jaccard": False, "alpha": None, "beta": None, "smooth_nr": None, "smooth_dr": None}
    plain.update(log_loss=False, reduction="mean", empty="keep")
    y_lesson = SoftDiceLoss(1e-6, squared)(p, g)
    y_family = dice_family_loss(q, g, None, 1e-6, squared, False, True, None, **plain)
    assert y_lesson.item() == y_family.item()  # bit for bit
    y_lesson.backward()
    y_family.backward()
    assert rel_error(p.grad, q.grad) < (1e-6 if dtype == np.float32 else 1e-14)


def test_an_empty_batch_is_refused_naming_its_shape():
    with pytest.raises(ValueError, match=r"probs of shape \(0, 3, 4, 4\) hold no image"):
        F.soft_dice_loss(np.zeros((0, 3, 4, 4)), np.zeros((0, 4, 4), dtype=np.int64))
