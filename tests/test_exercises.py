"""Every exercise check passes on the library's own answer and fails, with the right hint, on usual mistakes."""

import inspect
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

import minisegnet.ops as F
from minisegnet.exercises import check
from minisegnet.exercises.feedback import Feedback
from minisegnet.ops.im2col import col2im, im2col
from minisegnet.tensor import Function, Tensor


def stub(*args):
    raise NotImplementedError


def verdict(check_fn, answer):
    feedback = check_fn(answer)
    assert isinstance(feedback, Feedback)
    return feedback.ok, feedback.hint


def assert_hints(check_fn, right, wrongs, capsys):
    assert verdict(check_fn, right) == (True, None)
    assert "is right" in capsys.readouterr().out
    assert verdict(check_fn, stub) == (False, "stub")
    assert "NotImplementedError" in capsys.readouterr().out
    for hint, wrong in wrongs:
        assert verdict(check_fn, wrong) == (False, hint), f"{wrong.__name__} should get the hint {hint!r}"
        out = capsys.readouterr().out
        assert out.startswith("\u2718 Not yet") and out.count("\n") == 1, out
    assert len(wrongs) >= 3


# im2col and col2im ---------------------------------------------------------------------------------------------


def lib_im2col(x, K, S, P):
    return im2col(x, K, S, P)


def rows_kernel_first(x, K, S, P):
    col = im2col(x, K, S, P)
    N, C = x.shape[:2]
    return col.reshape(N, C, K, K, -1).transpose(0, 2, 3, 1, 4).reshape(col.shape)


def test_im2col(capsys):
    wrongs = [
        ("axes", lambda x, K, S, P: im2col(x, K, S, P).transpose(0, 2, 1)),
        ("axes", rows_kernel_first),
        ("padding", lambda x, K, S, P: im2col(x, K, S, 0)),
        ("stride", lambda x, K, S, P: im2col(x, K, 1, P)),
    ]
    assert_hints(check.im2col, lib_im2col, wrongs, capsys)


def test_a_pass_in_float32_says_that_its_error_is_above_what_float64_reaches(capsys):
    assert verdict(check.im2col, lambda x, K, S, P: im2col(x.astype(np.float32), K, S, P)) == (True, None)
    out = capsys.readouterr().out
    assert "within the check's tolerance" in out and "float32" in out and "below 1e-8" not in out
    assert verdict(check.im2col, lib_im2col) == (True, None)
    assert "relative error 0.0e+00, below 1e-8" in capsys.readouterr().out


def col2im_assigning(col, x_shape, K, S, P):
    N, C, H, W = x_shape
    OH, OW = (H + 2 * P - K) // S + 1, (W + 2 * P - K) // S + 1
    patches = col.reshape(N, C, K, K, OH, OW)
    xpad = np.zeros((N, C, H + 2 * P, W + 2 * P))
    for oh in range(OH):
        for ow in range(OW):
            xpad[:, :, oh * S : oh * S + K, ow * S : ow * S + K] = patches[..., oh, ow]  # the bug: = instead of +=
    return xpad[:, :, P : P + H, P : P + W]


def col2im_reading_kernel_first(col, x_shape, K, S, P):
    N, C = x_shape[:2]
    reordered = col.reshape(N, K, K, C, -1).transpose(0, 3, 1, 2, 4).reshape(col.shape)
    return col2im(reordered, x_shape, K, S, P)


def test_col2im(capsys):
    wrongs = [
        ("overwrite", col2im_assigning),
        ("padding", lambda col, s, K, S, P: np.pad(col2im(col, s, K, S, P), ((0, 0), (0, 0), (P, P), (P, P)))),
        ("axes", col2im_reading_kernel_first),
    ]
    assert_hints(check.col2im, lambda col, s, K, S, P: col2im(col, s, K, S, P), wrongs, capsys)


# conv2d's backward and the transposed convolution ---------------------------------------------------------------


def conv_grads(x, W, gy, S, P):
    xt, Wt = Tensor(x, requires_grad=True), Tensor(W, requires_grad=True)
    F.conv2d(xt, Wt, None, S, P).backward(gy)
    return xt.grad, Wt.grad


def test_conv2d_backward(capsys):
    def one_image(x, W, gy, S, P):
        return conv_grads(x, W, gy, S, P)[0], conv_grads(x[:1], W, gy[:1], S, P)[1]

    def unflipped(x, W, gy, S, P):
        return conv_grads(x, np.ascontiguousarray(W[:, :, ::-1, ::-1]), gy, S, P)[0], conv_grads(x, W, gy, S, P)[1]

    def uncropped(x, W, gy, S, P):
        gx, gW = conv_grads(x, W, gy, S, P)
        return np.pad(gx, ((0, 0), (0, 0), (P, P), (P, P))), gW

    wrongs = [
        ("batch", one_image),
        ("batch", lambda x, W, gy, S, P: (conv_grads(x, W, gy, S, P)[0], conv_grads(x, W, gy, S, P)[1] / len(x))),
        (
            "axes",
            lambda x, W, gy, S, P: (conv_grads(x, W, gy, S, P)[0], conv_grads(x, W, gy, S, P)[1].transpose(1, 0, 2, 3)),
        ),
        ("flip", unflipped),
        ("padding", uncropped),
        ("gradcheck", lambda x, W, gy, S, P: conv_grads(x, W, gy * (2 if x.shape[:2] == (1, 2) else 1), S, P)),
    ]
    assert_hints(check.conv2d_backward, conv_grads, wrongs, capsys)


def conv_t(x, W, S, P):
    return F.conv_transpose2d(Tensor(x), Tensor(np.ascontiguousarray(W)), None, S, P).data


def test_conv_transpose2d(capsys):
    wrongs = [
        ("flip", lambda x, W, S, P: conv_t(x, W[:, :, ::-1, ::-1], S, P)),
        ("axes", lambda x, W, S, P: conv_t(x, W.transpose(1, 0, 2, 3), S, P)),
        ("padding", lambda x, W, S, P: conv_t(x, W, S, 0)),
        ("stride", lambda x, W, S, P: conv_t(x, W, 1, P)),
    ]
    assert_hints(check.conv_transpose2d, conv_t, wrongs, capsys)
    check.conv_transpose2d(conv_t)
    assert "adjoint" in capsys.readouterr().out


# max pooling ------------------------------------------------------------------------------------------------------


def pool(x, K, S):
    y, idx = F.max_pool2d(Tensor(x), K, S, return_indices=True)
    return y.data, idx.data


def test_max_pool2d(capsys):
    def local(x, K, S):
        y, idx = pool(x, K, S)
        W = x.shape[3]
        OH, OW = y.shape[2:]
        return y, (idx // W - S * np.arange(OH)[:, None]) * K + (idx % W - S * np.arange(OW)[None, :])

    def plane(x, K, S):
        y, idx = pool(x, K, S)
        N, C, H, W = x.shape
        return y, idx + np.arange(N * C).reshape(N, C, 1, 1) * H * W

    wrongs = [
        ("average", lambda x, K, S: (F.avg_pool2d(Tensor(x), K, S).data, pool(x, K, S)[1])),
        ("local", local),
        (
            "axes",
            lambda x, K, S: (
                pool(x, K, S)[0],
                pool(x, K, S)[1] % x.shape[3] * x.shape[2] + pool(x, K, S)[1] // x.shape[3],
            ),
        ),
        ("plane", plane),
        ("tie", last_maximum),
        ("tie", first_maximum_by_columns),
    ]
    assert_hints(check.max_pool2d, pool, wrongs, capsys)


def first_maximum_by_columns(x, K, S):
    # np.argmax over each window read column by column: on a tie the first maximum in column-major order wins.
    y, idx = pool(x, K, S)
    W = x.shape[3]
    for oh in range(y.shape[2]):
        for ow in range(y.shape[3]):
            window = x[:, :, oh * S : oh * S + K, ow * S : ow * S + K]
            k = window.transpose(0, 1, 3, 2).reshape(*x.shape[:2], -1).argmax(axis=2)
            idx[:, :, oh, ow] = (oh * S + k % K) * W + ow * S + k // K
    return y, idx


def last_maximum(x, K, S):
    # A loop that replaces the running maximum on >=: on a tie the last maximum in row-major order wins.
    N, C, H, W = x.shape
    y, idx = pool(x, K, S)
    best = np.full(y.shape, -np.inf)
    for i in range(K):
        for j in range(K):
            values = x[:, :, i : i + S * y.shape[2] : S, j : j + S * y.shape[3] : S]
            rows = S * np.arange(y.shape[2])[:, None] + i
            cols = S * np.arange(y.shape[3])[None, :] + j
            idx = np.where(values >= best, rows * W + cols, idx)
            best = np.maximum(best, values)
    return y, idx


def unpool_grad(gy, idx, x_shape, assign=False, per_plane=True):
    N, C, H, W = x_shape
    gx = np.zeros((N * C, H * W))
    for k in range(N * C):
        target = gx[k] if per_plane else gx[0]
        if assign:
            target[idx.reshape(N * C, -1)[k]] = gy.reshape(N * C, -1)[k]
        else:
            np.add.at(target, idx.reshape(N * C, -1)[k], gy.reshape(N * C, -1)[k])
    return gx.reshape(x_shape)


def test_max_pool2d_backward(capsys):
    wrongs = [
        ("overwrite", lambda gy, idx, s: unpool_grad(gy, idx, s, assign=True)),
        ("plane", lambda gy, idx, s: unpool_grad(gy, idx, s, per_plane=False)),
        ("reshape", lambda gy, idx, s: unpool_grad(gy, idx, s).reshape(s[0], s[1], -1)),
    ]
    assert_hints(check.max_pool2d_backward, unpool_grad, wrongs, capsys)


# the losses -------------------------------------------------------------------------------------------------------


def ce_grad(logits, target, weight, ignore_index):
    x = Tensor(logits, requires_grad=True)
    F.cross_entropy(x, target, weight=weight, ignore_index=ignore_index).backward()
    return x.grad


def ce_by_hand(
    logits, target, weight, ignore_index, zero_ignored=True, by_count=False, softmax=True, mean=True, as_class0=False
):
    valid = target != ignore_index
    t = np.where(valid, target, 0)
    onehot = np.eye(logits.shape[1])[t].transpose(0, 3, 1, 2) * valid[:, None]
    w = (np.ones(logits.shape[1]) if weight is None else weight)[t] * valid
    if as_class0:  # the ignored pixels become pixels of class 0, in the gradient and in the mean
        valid = np.ones_like(valid)
        onehot = np.eye(logits.shape[1])[t].transpose(0, 3, 1, 2)
        w = (np.ones(logits.shape[1]) if weight is None else weight)[t]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True) if softmax else logits
    scale = w if zero_ignored else np.where(valid, w, 1.0)
    denominator = (valid.sum() if by_count else w.sum()) if mean else 1.0
    return (p - onehot) * scale[:, None] / denominator


def test_cross_entropy_backward(capsys):
    assert np.allclose(ce_by_hand(*ce_inputs()), ce_grad(*ce_inputs()))
    wrongs = [
        ("sign", lambda *a: -ce_grad(*a)),
        ("softmax", lambda *a: ce_by_hand(*a, softmax=False)),
        ("mean", lambda *a: ce_by_hand(*a, mean=False)),
        ("ignore", lambda *a: ce_by_hand(*a, zero_ignored=False)),
        ("weight", lambda *a: ce_by_hand(*a, by_count=True)),
        ("class0", lambda *a: ce_by_hand(*a, as_class0=True)),
        ("class0", lambda logits, target, *a: ce_grad(logits, np.where(target == a[1], 0, target), *a)),
    ]
    assert_hints(check.cross_entropy_backward, ce_grad, wrongs, capsys)


def ce_inputs():
    rng = np.random.default_rng(5)
    target = rng.integers(0, 3, (2, 4, 4))
    target[0, 0] = 255
    return rng.standard_normal((2, 3, 4, 4)), target, np.array([1.0, 2.0, 3.0]), 255


def dice_grad(p, g, smooth, squared):
    x = Tensor(p, requires_grad=True)
    F.soft_dice_loss(x, g, smooth=smooth, squared=squared).backward()
    return x.grad


def dice_by_hand(p, g, smooth, squared, two_p=2.0, two_g=2.0, mean=True):
    intersection = (p * g).sum((2, 3), keepdims=True)
    powers = (p**2, g**2) if squared else (p, g)
    D = powers[0].sum((2, 3), keepdims=True) + powers[1].sum((2, 3), keepdims=True)
    dD = two_p * p if squared else 1.0
    count = p.shape[0] * p.shape[1] if mean else 1
    return -(two_g * g / (D + smooth) - (2 * intersection + smooth) * dD / (D + smooth) ** 2) / count


def test_soft_dice_backward(capsys):
    wrongs = [
        ("factor2", lambda p, g, s, sq: dice_by_hand(p, g, s, sq, two_p=1.0)),
        ("factor2", lambda p, g, s, sq: dice_by_hand(p, g, s, sq, two_g=1.0)),
        ("mean", lambda p, g, s, sq: dice_by_hand(p, g, s, sq, mean=False)),
        ("sign", lambda p, g, s, sq: -dice_by_hand(p, g, s, sq)),
        ("squared", lambda p, g, s, sq: dice_by_hand(p, g, s, True)),
    ]
    assert_hints(check.soft_dice_backward, dice_by_hand, wrongs, capsys)


# concat and the U-Net ---------------------------------------------------------------------------------------------


def split(gy, sizes, axis):
    return np.split(gy, np.cumsum(sizes)[:-1], axis=axis)


def test_concat_backward(capsys):
    wrongs = [
        ("order", lambda gy, sizes, axis: split(gy, sizes, axis)[::-1]),
        ("offsets", lambda gy, sizes, axis: np.array_split(gy, len(sizes), axis=axis)),
        ("whole", lambda gy, sizes, axis: [gy for _ in sizes]),
    ]
    assert_hints(check.concat_backward, split, wrongs, capsys)


def shapes_of(N, C, H, W, base, depth, classes, grow=2, first=0, concat=1, head=None):
    level = lambda i: (N, base * grow**i, H // 2 ** (i + first), W // 2 ** (i + first))  # noqa: E731
    decoder = [(N, concat * base * 2**i, H // 2**i, W // 2**i) for i in reversed(range(depth))]
    return {
        "encoder": [level(i) for i in range(depth)],
        "bottleneck": (N, base * 2**depth, H // 2**depth, W // 2**depth),
        "decoder": decoder,
        "logits": (N, head or classes, H, W),
    }


def test_unet_shapes(capsys):
    wrongs = [
        ("channels", lambda *a: shapes_of(*a, grow=1)),
        ("pool", lambda *a: shapes_of(*a, first=1)),
        ("concat", lambda *a: shapes_of(*a, concat=2)),
        ("classes", lambda *a: shapes_of(*a, head=a[4])),
    ]
    assert_hints(check.unet_shapes, shapes_of, wrongs, capsys)


# exercise 6: a conv2d of your own, called the way the U-Net's layers call it -------------------------------------


class StudentConv2d(Function):
    """An answer written from the notebook: im2col and one product per image; (h, w) pairs, bias may be None."""

    def __init__(self, stride, padding):
        (self.S, _), (self.P, _) = stride, padding

    def forward(self, x, weight, bias):
        N, C, H, W = x.shape
        OC, _, K, _ = weight.shape
        OH, OW = (H + 2 * self.P - K) // self.S + 1, (W + 2 * self.P - K) // self.S + 1
        self.x, self.weight, self.col = x, weight, im2col(x, K, self.S, self.P)
        y = np.einsum("ok,nkl->nol", weight.reshape(OC, -1), self.col).reshape(N, OC, OH, OW)
        return y if bias is None else y + bias.reshape(1, OC, 1, 1)

    def backward(self, gy):
        OC, _, K, _ = self.weight.shape
        gy2 = gy.reshape(gy.shape[0], OC, -1)
        gW = np.einsum("nol,nkl->ok", gy2, self.col).reshape(self.weight.shape)
        gcol = np.einsum("ok,nol->nkl", self.weight.reshape(OC, -1), gy2)
        return col2im(gcol, self.x.shape, K, self.S, self.P), gW, gy.sum(axis=(0, 2, 3))


def student_conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1):
    return StudentConv2d(stride, padding)(x, weight, bias)


class IntsOnly(StudentConv2d):
    """The same answer for int stride and padding only, as `check.conv2d(stride=1, padding=1)` once allowed."""

    def __init__(self, stride, padding):
        self.S, self.P = stride, padding


class BiasAlways(StudentConv2d):
    def forward(self, x, weight, bias):
        return super().forward(x, weight, None) + bias.reshape(1, -1, 1, 1)


class Float64Out(StudentConv2d):
    def forward(self, x, weight, bias):
        return super().forward(x, weight, bias).astype(np.float64)


class BackwardRaises(StudentConv2d):
    def backward(self, gy):
        raise ValueError("a bug in backward")


class BackwardList(StudentConv2d):
    def backward(self, gy):
        return list(super().backward(gy))


class BackwardNaN(StudentConv2d):
    def backward(self, gy):
        gx, gW, gb = super().backward(gy)
        return gx, gW * np.nan, gb


class ForwardNone(StudentConv2d):
    def forward(self, x, weight, bias):
        super().forward(x, weight, bias)


def calling(cls):
    return lambda x, weight, bias=None, stride=1, padding=0, dilation=1: cls(stride, padding)(x, weight, bias)


def calls_itself(x, weight, bias=None, stride=1, padding=0, dilation=1):
    return F.conv2d(x, weight, bias, stride, padding, dilation)  # under the check, F.conv2d is this function


def test_conv2d_passes_the_library_and_an_answer_written_from_the_notebook(capsys):
    assert verdict(check.conv2d, F.conv2d) == (True, None)
    assert verdict(check.conv2d, student_conv2d) == (True, None)
    assert "relative error" in capsys.readouterr().out


@pytest.mark.parametrize(
    "hint, answer",
    [
        ("pairs", calling(IntsOnly)),
        ("bias", calling(BiasAlways)),
        ("dtype", calling(Float64Out)),
        ("error", calling(BackwardRaises)),
        ("type", calling(BackwardList)),
        ("nan", calling(BackwardNaN)),
        ("forward", calling(ForwardNone)),
        ("array", lambda *args: student_conv2d(*args).data),
        ("nograd", lambda *args: Tensor(student_conv2d(*args).data)),
        ("class", StudentConv2d),
        ("error", calls_itself),
        ("stub", stub),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_conv2d_names_what_would_stop_training(hint, answer, capsys):
    assert verdict(check.conv2d, answer) == (False, hint)
    out = capsys.readouterr().out
    assert out.startswith("\u2718 Not yet") and out.count("\n") == 1


def test_an_answer_that_passes_the_check_trains_and_one_that_fails_is_told_why(capsys):
    assert check.conv2d(student_conv2d)
    assert np.isfinite(check.train_unet(conv2d=student_conv2d, steps=2, verbose=False))
    assert "Not yet" not in capsys.readouterr().out
    assert np.isnan(check.train_unet(conv2d=calling(IntsOnly), steps=2, verbose=False))
    out = capsys.readouterr().out
    line = (
        inspect.getsource(StudentConv2d)
        .splitlines()
        .index("        OH, OW = (H + 2 * self.P - K) // self.S + 1, (W + 2 * self.P - K) // self.S + 1")
    )
    assert f"test_exercises.py, line {StudentConv2d.__init__.__code__.co_firstlineno - 3 + line}" in out
    assert np.isnan(check.train_unet(conv2d=calling(BackwardNaN), steps=3, verbose=False))
    assert "NaN" in capsys.readouterr().out.replace("nan", "NaN")


# every kind of wrong answer against every check --------------------------------------------------------------------


def with_nan(a):
    a = np.array(a, dtype=np.float64)  # indices are integers: a NaN needs floats
    a.flat[a.size // 2] = np.nan
    return a


# kind: (what the answer returns in place of its array, the hint every check gives).
SPOILS = {
    "none": (lambda a: None, "none"),
    "list": (lambda a: a.tolist(), "type"),
    "ragged": (lambda a: [[1.0, 2.0], [3.0]], "type"),
    "string": (lambda a: a.astype(str), "type"),
    "tensor": (lambda a: Tensor(np.asarray(a, dtype=np.float64)), "tensor"),
    "dict": (lambda a: {"result": a}, "type"),
    "nan": (with_nan, "nan"),
}
RAISES = {"raises": "error", "raises_late": "error", "stub": "stub"}
# Where exercise 6 differs: an array instead of a Tensor, a Tensor with no graph (NumPy wrapped in Tensor(...)),
# and a forward that returns strings or NaN (so the spoiled array is the Function's forward output there).
CONV2D_HINTS = {"string": "dtype", "tensor": "nograd"}


def spoiled_conv2d(kind, spoil):
    if kind in ("string", "nan"):

        class Spoiled(StudentConv2d):
            def forward(self, x, weight, bias):
                return spoil(super().forward(x, weight, bias))

        return calling(Spoiled)
    if kind == "tensor":
        return lambda *args: spoil(student_conv2d(*args).data)
    return lambda *args: spoil(student_conv2d(*args).data) if kind != "none" else None


def _first(result, spoil):
    return (spoil(result[0]),) + tuple(result[1:])


def _logits_shape(result, spoil):
    return {**result, "logits": spoil(np.array(result["logits"]))}


CHECKS = {  # name: (the check, the library's answer, where a spoiled array goes in that answer's result)
    "im2col": (check.im2col, lib_im2col, None),
    "col2im": (check.col2im, lambda col, s, K, S, P: col2im(col, s, K, S, P), None),
    "conv2d_backward": (check.conv2d_backward, conv_grads, _first),
    "conv_transpose2d": (check.conv_transpose2d, conv_t, None),
    "max_pool2d": (check.max_pool2d, pool, _first),
    "max_pool2d_backward": (check.max_pool2d_backward, unpool_grad, None),
    "cross_entropy_backward": (check.cross_entropy_backward, ce_grad, None),
    "soft_dice_backward": (check.soft_dice_backward, dice_grad, None),
    "concat_backward": (check.concat_backward, split, lambda r, spoil: [spoil(r[0])] + list(r[1:])),
    "unet_shapes": (check.unet_shapes, shapes_of, _logits_shape),
    "conv2d": (check.conv2d, student_conv2d, None),
}


def spoiled(name, kind):
    """The library's answer to check ``name``, gone wrong in the way ``kind`` says, and the hint it must get."""
    _, right, place = CHECKS[name]
    if kind in RAISES:
        calls = count_calls(name) if kind == "raises_late" else 1

        def answer(*args):
            answer.calls += 1
            if kind == "stub":
                raise NotImplementedError
            if answer.calls == calls:
                raise ValueError("a student's bug")
            return right(*args)

        answer.calls = 0
        hint = "unet" if name == "conv2d" and kind == "raises_late" else RAISES[kind]
        return answer, hint
    spoil, hint = SPOILS[kind]
    if name == "conv2d":
        return spoiled_conv2d(kind, spoil), CONV2D_HINTS.get(kind, hint)
    if name == "unet_shapes" and kind == "list":  # a list of ints is a fine shape: the whole dict becomes a list
        return lambda *args: list(right(*args).values()), "type"
    return (lambda *args: spoil(right(*args)) if place is None else place(right(*args), spoil)), hint


def count_calls(name):
    check_fn, right, _ = CHECKS[name]
    calls = []
    check_fn(lambda *args: calls.append(1) or right(*args))
    return len(calls)


def test_the_library_answers_pass_every_check(capsys):
    for name, (check_fn, right, _) in CHECKS.items():
        assert verdict(check_fn, right) == (True, None), name
    out = capsys.readouterr().out
    assert out.count("\u2714") == len(CHECKS) and "Not yet" not in out


@pytest.mark.parametrize("kind", [*SPOILS, *RAISES])
@pytest.mark.parametrize("name", list(CHECKS))
def test_every_kind_of_wrong_answer_gets_one_line_and_its_hint(name, kind, capsys):
    answer, hint = spoiled(name, kind)
    capsys.readouterr()
    assert verdict(CHECKS[name][0], answer) == (False, hint)
    out = capsys.readouterr().out
    assert out.startswith("\u2718 Not yet: ") and out.count("\n") == 1
    if kind in ("raises", "raises_late"):
        line = inspect.getsource(spoiled).splitlines().index('                raise ValueError("a student\'s bug")')
        assert f"test_exercises.py, line {spoiled.__code__.co_firstlineno + line}: raise ValueError" in out
    if kind == "nan":
        assert "NaN" in out


# the notebooks, and the last exercise -----------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = sorted((ROOT / "lessons" / "exercises").glob("*.ipynb"))


def test_every_exercise_notebook_is_listed_clean_and_unsolved():
    readme = (ROOT / "lessons" / "exercises" / "README.md").read_text(encoding="utf-8")
    assert len(EXERCISES) >= 6
    for path in EXERCISES:
        assert path.name in readme, f"lessons/exercises/README.md does not list {path.name}"
        nb = json.loads(path.read_text(encoding="utf-8"))
        for i, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
            source = "".join(cell["source"])
            assert not cell["outputs"], f"{path.name}: code cell {i} has outputs; the student's copy starts clean"
            # A stub is all a student gets: every function or method defined (but __init__) ends in a raise.
            for block in re.split(r"\n(?=\s*def )", source):
                if block.lstrip().startswith("def ") and not block.lstrip().startswith("def __init__"):
                    assert "raise NotImplementedError" in block, f"{path.name}: {block.splitlines()[0]} is not a stub"


@pytest.mark.parametrize("path", EXERCISES, ids=[p.stem for p in EXERCISES])
def test_every_exercise_notebook_has_a_worked_example_expectations_and_questions_answered_elsewhere(path):
    answers = (ROOT / "lessons" / "exercises" / "ANSWERS.md").read_text(encoding="utf-8")
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    text = ["".join(cell["source"]) for cell in cells]
    assert any(t.startswith("## A worked example") for t in text), f"{path.name} has no worked example"
    assert any(t.startswith("## Shapes") for t in text), f"{path.name} gives no shapes"
    for k, cell in enumerate(cells):
        if cell["cell_type"] == "code" and re.match(r"check\.", text[k]):
            assert text[k - 1].startswith("**Check.**") and "\u2714" in text[k - 1], f"{path.name}: cell {k}"
    questions = re.findall(r"\*\*Inline question (\d\.\d)\.\*\*", "".join(text))
    assert len(questions) >= 2, f"{path.name} asks fewer than two questions"
    for number in questions:
        assert f"**{number}**" in answers, f"ANSWERS.md does not answer question {number}"
    for k, t in enumerate(text):
        if t.startswith("*Your answer:*"):
            assert text[k - 1].startswith("**Inline question") and "ANSWERS.md" in t


@pytest.mark.slow
@pytest.mark.parametrize("path", EXERCISES, ids=[p.stem for p in EXERCISES])
def test_exercise_notebook_runs_with_its_stubs(path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="nbformat comes with the [dev] extra")
    nbclient = pytest.importorskip("nbclient", reason="nbclient comes with the [dev] extra")
    pytest.importorskip("ipykernel", reason="ipykernel comes with the [dev] extra")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    printed = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    checks = [c for c in nb.cells if c.cell_type == "code" and "check." in c.source]
    assert checks and sum("NotImplementedError" in "".join(t) for t in printed) == len(checks)


@pytest.mark.slow
def test_the_library_as_the_student_trains_a_unet_to_the_target():
    # The full exercise's run (1,000 steps, about 15 s on 2 cores) with the library's functions as the answer.
    miou = check.train_unet(conv2d=F.conv2d, soft_dice_loss=F.soft_dice_loss, verbose=False)
    assert miou >= check.TARGET_MIOU
