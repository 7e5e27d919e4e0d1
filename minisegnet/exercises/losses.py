"""Checks for the loss exercises: pixel-wise cross-entropy's backward and soft Dice's backward."""

import numpy as np

from .. import ops as F
from ..tensor import Tensor
from .feedback import check, compare, gradient_check, run

IGNORE = 255


def _ce_inputs(seed, ignore):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((2, 4, 3, 5))
    target = rng.integers(0, 4, (2, 3, 5))
    if ignore:
        target[rng.random(target.shape) < 0.3] = IGNORE
    return logits, target


def _softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def cross_entropy_backward(student):
    """Check ``student(logits, target, weight, ignore_index)`` -> d(mean loss)/d(logits) (N, C, H, W)."""
    cases = [
        (None, -100),
        (np.array([0.5, 1.0, 2.0, 4.0]), -100),
        (None, IGNORE),
        (np.array([0.5, 1.0, 2.0, 4.0]), IGNORE),
    ]

    def body():
        for k, (weight, ignore_index) in enumerate(cases):
            logits, target = _ce_inputs(k, ignore_index == IGNORE)
            x = Tensor(logits, requires_grad=True)
            F.cross_entropy(x, target, weight=weight, ignore_index=ignore_index).backward()
            got = run("cross_entropy_backward", student, logits.copy(), target.copy(), weight, ignore_index)
            valid = target != ignore_index
            t = np.where(valid, target, 0)
            onehot = np.eye(4)[t].transpose(0, 3, 1, 2) * valid[:, None]
            w = (np.ones(4) if weight is None else weight)[t] * valid  # each pixel's weight, 0 where ignored
            p = _softmax(logits)
            diff = p - onehot
            w0 = (np.ones(4) if weight is None else weight)[t]  # each pixel's weight, an ignored one as class 0
            class0 = p - np.eye(4)[t].transpose(0, 3, 1, 2)
            case = f"weight={None if weight is None else weight.tolist()}, ignore_index={ignore_index}"
            mistakes = [
                ("sign", "the sign is flipped: the gradient is softmax minus one-hot", -x.grad),
                (
                    "softmax",
                    "softmax is missing: the gradient is softmax(logits) minus one-hot, not logits minus one-hot",
                    (logits - onehot) * w[:, None] / w.sum(),
                ),
                (
                    "mean",
                    f"the mean is missing: divide by the sum of the pixels' weights ({w.sum():g} here)",
                    diff * w[:, None],
                ),
                (
                    "class0",
                    "the ignored pixels are treated as class 0: they get no gradient at all and do not count in "
                    "the mean (mask both softmax and one-hot where target == ignore_index)",
                    class0 * w0[:, None] / w0.sum(),
                ),
                (
                    "class0",
                    "the ignored pixels get the gradient of class 0: mask both softmax and one-hot where "
                    "target == ignore_index, not only the mean",
                    class0 * w0[:, None] / w.sum(),
                ),
                (
                    "ignore",
                    "the ignored pixels still get a gradient: the ignore mask must zero softmax's part there too",
                    diff * np.where(valid, w, 1.0)[:, None] / w.sum(),
                ),
                (
                    "ignore",
                    f"the mean counts the ignored pixels: divide by the weights of the {valid.sum()} valid pixels only",
                    diff * w[:, None] / np.where(valid, w, 1.0).sum(),
                ),
                (
                    "weight",
                    "the weighted mean divides by the number of pixels: divide by the sum of the target "
                    "classes' weights",
                    diff * w[:, None] / valid.sum(),
                ),
                (
                    "weight",
                    "the weights are indexed by channel: each pixel is weighted by weight[its target class]",
                    diff * (np.ones(4) if weight is None else weight)[None, :, None, None] * valid[:, None] / w.sum(),
                ),
            ]
            compare("gx", got, x.grad, mistakes, case)
        logits, target = _ce_inputs(9, True)
        weight = cases[3][0]
        gradient_check(
            "cross_entropy_backward",
            lambda x: F.cross_entropy(Tensor(x), target, weight=weight, ignore_index=IGNORE).data,
            lambda gy, x: gy * student(x, target, weight, IGNORE),
            logits,
        )

    return check("cross_entropy_backward", body, "with class weights and ignore_index, as autograd and gradcheck say")


def _dice_inputs(seed):
    rng = np.random.default_rng(seed)
    p = _softmax(rng.standard_normal((2, 3, 4, 5)))
    g = np.eye(3)[rng.integers(0, 3, (2, 4, 5))].transpose(0, 3, 1, 2)
    return p, g


def _dice_grad(p, g, smooth, squared, two_num=2.0, two_den=2.0, mean=True, sign=1.0):
    # d/dp of 1 - mean_{n,c} (2*I + s) / (D + s); the keyword knobs make the usual wrong versions.
    I = (p * g).sum((2, 3), keepdims=True)
    D = (
        ((p**2).sum((2, 3), keepdims=True) + (g**2).sum((2, 3), keepdims=True))
        if squared
        else (p + g).sum((2, 3), keepdims=True)
    )
    dD = two_den * p if squared else np.ones_like(p)
    K = p.shape[0] * p.shape[1] if mean else 1
    return -sign / K * (two_num * g / (D + smooth) - (2 * I + smooth) * dD / (D + smooth) ** 2)


def soft_dice_backward(student):
    """Check ``student(probs, onehot, smooth, squared)`` -> d(soft Dice loss)/d(probs) (N, C, H, W)."""

    def body():
        for k, (smooth, squared) in enumerate([(1e-6, True), (1.0, True), (1e-6, False), (1.0, False)]):
            p, g = _dice_inputs(k)
            pt = Tensor(p, requires_grad=True)
            F.soft_dice_loss(pt, g, smooth=smooth, squared=squared).backward()
            got = run("soft_dice_backward", student, p.copy(), g.copy(), smooth, squared)
            mistakes = [
                (
                    "sign",
                    "the sign is flipped: the loss is 1 - Dice, so its gradient is minus Dice's",
                    _dice_grad(p, g, smooth, squared, sign=-1.0),
                ),
                (
                    "mean",
                    f"the mean over the {p.shape[0] * p.shape[1]} (image, class) pairs is missing: divide by N*C",
                    _dice_grad(p, g, smooth, squared, mean=False),
                ),
                (
                    "factor2",
                    "a factor 2 is missing in the numerator's derivative: d(2*sum p*g)/dp = 2g",
                    _dice_grad(p, g, smooth, squared, two_num=1.0),
                ),
            ]
            if squared:
                mistakes.append(
                    (
                        "factor2",
                        "a factor 2 is missing in the denominator's derivative: d(sum p^2)/dp = 2p",
                        _dice_grad(p, g, smooth, squared, two_den=1.0),
                    )
                )
            else:
                mistakes.append(
                    (
                        "squared",
                        "this is the squared denominator's gradient: with squared=False, "
                        "D = sum p + sum g and dD/dp = 1",
                        _dice_grad(p, g, smooth, True),
                    )
                )
            compare("gp", got, pt.grad, mistakes, f"smooth={smooth}, squared={squared}")
        p, g = _dice_inputs(9)
        gradient_check(
            "soft_dice_backward",
            lambda p: F.soft_dice_loss(Tensor(p), g, smooth=1.0, squared=True).data,
            lambda gy, p: gy * student(p, g, 1.0, True),
            p,
        )

    return check(
        "soft_dice_backward", body, "squared and linear, with and without smoothing, as autograd and gradcheck say"
    )
