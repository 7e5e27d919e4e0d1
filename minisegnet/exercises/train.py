"""Exercise 6: your conv2d, checked the way the U-Net calls it; then a U-Net trained with it in the library's place.

The U-Net's layers call ``F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)`` with
(h, w) pairs such as ``(1, 1)`` and, before a batch norm, ``bias=None`` (layers.py, ``Conv2d.forward``). The check
runs your conv2d inside real ``Conv2d`` layers and then inside a small U-Net, in float64 and in float32, so an
answer that passes it receives in training exactly the arguments it was checked with.
"""

import time
import traceback

import numpy as np

from .. import metrics, models, optim
from .. import ops as F
from ..data import shapes
from ..nn import Conv2d, manual_seed
from ..tensor import Function, Tensor, no_grad
from .feedback import Wrong, check, compare, describe, raised, rel_error, run, verdict

# Below all ten runs of scripts/exercise6_figures.py (seeds 0-4, the library's conv2d and an im2col answer: 0.397 to
# 0.743, lessons/exercises/README.md): it tells a conv2d that trains from one that does not, whatever the seed.
TARGET_MIOU = 0.35
CALL = "MyConv2d(stride, padding)(x, weight, bias)"
# (x shape, weight shape, stride, padding, bias): the U-Net's 3x3 convolutions (padding 1, no bias: a batch norm
# follows), its 1x1 class-score head (a bias, no padding), and a stride of 2 with padding.
CASES = (
    ((2, 3, 6, 7), (4, 3, 3, 3), 1, 1, False),
    ((2, 4, 5, 6), (3, 4, 1, 1), 1, 0, True),
    ((2, 3, 7, 6), (4, 3, 3, 3), 2, 1, True),
)
TOLERANCE = {np.float64: (1e-6, 1e-5), np.float32: (1e-4, 1e-3)}


def _a_function(name, fn):
    if isinstance(fn, type):
        raise Wrong("class", f"{name} is the class {fn.__name__}: pass the function around it, which returns {CALL}")
    if not callable(fn):
        raise Wrong("type", f"pass your {name} function, got {describe(fn)}")


def _forward_returned_junk(err):
    # True when the error came from turning what a Function's forward returned into a Tensor.
    codes = [frame.f_code for frame, _ in traceback.walk_tb(err.__traceback__)]
    calls = [i for i, code in enumerate(codes) if code is Function.__call__.__code__]
    return bool(calls) and not any(code.co_name == "forward" for code in codes[calls[-1] + 1 :])


def _works(student, *args):
    try:
        student(*args)
    except Exception:
        return False
    return True


def _through_layer(student, layer, x):
    # y = layer(x) with your conv2d in the library's place: the call the U-Net makes, (h, w) pairs and all.
    try:
        with F.override(conv2d=student):
            return layer(x)
    except Exception as err:
        wrong, recursion, junk = raised("conv2d", err), isinstance(err, RecursionError), _forward_returned_junk(err)
    if recursion:
        raise Wrong("error", f"{wrong.message}: it calls itself (in the check, minisegnet.ops.conv2d is your function)")
    if junk:
        raise Wrong("forward", f"{wrong.message}: your Function's forward must return one NumPy array, y")
    W, b = layer.weight, layer.bias
    if _works(student, x, W, b, layer.stride, layer.padding, layer.dilation):
        raise wrong  # it failed only once: no retry tells why
    if b is None and _works(student, x, W, Tensor(np.zeros(W.shape[0], x.dtype)), layer.stride, layer.padding):
        raise Wrong("bias", f"{wrong.message}; bias is None for a convolution that a batch norm follows: skip it then")
    if not _works(student, x, W, b, layer.stride[0], layer.padding[0], layer.dilation[0]):
        raise wrong
    pairs = f"stride={layer.stride}, padding={layer.padding}, dilation={layer.dilation}"
    raise Wrong("pairs", f"{wrong.message}; the layers pass (h, w) pairs ({pairs}): unpack them, SH, SW = stride")


def _output(y, x):
    if y is None:
        raise Wrong("none", f"conv2d returned None: return the Tensor that {CALL} gives")
    if isinstance(y, np.ndarray):
        raise Wrong("array", f"conv2d returned a NumPy array: return the Tensor {CALL}, which backpropagates")
    if not isinstance(y, Tensor):
        raise Wrong("type", f"conv2d must return a Tensor, the output of {CALL}; got {describe(y)}")
    if y.dtype.kind != "f":
        raise Wrong("dtype", f"conv2d's output holds {y.dtype}: your forward must return floats of x's dtype")
    if not y.requires_grad:
        raise Wrong(
            "nograd",
            "conv2d's output has no graph (it does not require grad): Tensor(...) around NumPy results cuts the "
            f"backward pass; return {CALL}, whose forward and backward work on arrays",
        )
    if y.dtype != x.dtype:
        raise Wrong("dtype", f"y is {y.dtype} for {x.dtype} inputs: keep x's dtype (the U-Net trains in float32)")


def _backward_returns(y, tensors, gy, expected, case, tol):
    # Call your Function's backward directly, to name what it returns before autograd uses it.
    f = y.creator
    if not isinstance(f, Function) or len(f.inputs) != 3 or any(a is not b for a, b in zip(f.inputs, tensors)):
        return  # conv2d is made of several Functions: autograd's gradients are checked below
    grads = run("conv2d's backward", f.backward, gy)
    if not isinstance(grads, tuple) or len(grads) != 3:
        what = "(gx, gW, gb), one gradient per input of forward (gb may be None when bias is None)"
        raise Wrong(
            "none" if grads is None else "type", f"backward must return the tuple {what}, got {describe(grads)}"
        )
    for name, g, t, want in zip(("gx", "gW", "gb"), grads, tensors, expected):
        if t is not None:
            compare(f"backward's {name}", g, want, (), case, tol)
            if g.dtype != t.dtype:
                raise Wrong("dtype", f"backward's {name} is {g.dtype} for a {t.dtype} input: keep the input's dtype")


def _one_case(student, shape, w_shape, S, P, has_bias, dtype):
    rng = np.random.default_rng(0)
    N, C = shape[:2]
    OC, _, K, _ = w_shape
    layer = Conv2d(C, OC, K, stride=S, padding=P, bias=has_bias, dtype=dtype)
    layer.weight.data[...] = rng.standard_normal(w_shape)
    if has_bias:
        layer.bias.data[...] = rng.standard_normal(OC)
    x = Tensor(rng.standard_normal(shape).astype(dtype), requires_grad=True)
    tensors = (x, layer.weight, layer.bias)
    y = layer(x)
    gy = rng.standard_normal(y.shape).astype(dtype)
    y.backward(gy)
    expected = [y.data] + [None if t is None else t.grad for t in tensors]
    layer.zero_grad()
    x.grad = None
    case = f"x {shape} {np.dtype(dtype).name}, weight {w_shape}, stride {S}, padding {P}, bias {has_bias}"
    tol = TOLERANCE[dtype]
    got = _through_layer(student, layer, x)
    _output(got, x)
    no_bias = (
        [
            (
                "bias",
                "the bias is missing: add bias[o] to every output of channel o",
                expected[0] - layer.bias.data[None, :, None, None],
            )
        ]
        if has_bias
        else []
    )
    compare("y", got.data, expected[0], no_bias, case, tol)
    _backward_returns(got, tensors, gy, expected[1:], case, tol)
    run("conv2d's backward", got.backward, gy)
    for name, t, want in zip(("x.grad", "weight.grad", "bias.grad"), tensors, expected[1:]):
        if t is not None:
            compare(name, t.grad, want, (), case, tol)


def _unet_step(conv2d, x, target):
    # One training step and one evaluation of a small float32 U-Net; its outputs and its parameters' gradients.
    manual_seed(0)
    model = models.UNet(3, 3, base_channels=4, depth=1)
    with F.override(conv2d=conv2d):
        logits = model(Tensor(x))
        F.cross_entropy(logits, target).backward()
        model.eval()
        with no_grad():
            scores = model(Tensor(x))
    names = ["logits", "eval logits"] + [f"{name}.grad" for name, _ in model.named_parameters()]
    return names, [logits.data, scores.data] + [p.grad for p in model.parameters()]


def _small_unet(student):
    rng = np.random.default_rng(1)
    x, target = rng.standard_normal((2, 3, 8, 8)).astype(np.float32), rng.integers(0, 3, (2, 8, 8))
    names, library = _unet_step(F.conv2d, x, target)
    try:
        names, yours = _unet_step(student, x, target)
    except Exception as err:
        raise Wrong("unet", f"in a small U-Net, {raised('conv2d', err).message}") from None
    for name, got, want in zip(names, yours, library):
        if not isinstance(got, np.ndarray) or got.shape != want.shape or not np.isfinite(got).all():
            raise Wrong("unet", f"in a small U-Net with your conv2d, {name} is {describe(got)}, expected {want.shape}")
        if rel_error(got, want) > 1e-3:
            error = rel_error(got, want)
            raise Wrong("unet", f"in a small U-Net with your conv2d, {name} differs (relative error {error:.1e})")


def conv2d(student):
    """Check ``student(x, weight, bias, stride, padding, dilation)``, a differentiable conv2d on Tensors.

    It is called as the U-Net's layers call it: (h, w) pairs, ``bias`` None or a Tensor, float64 and float32;
    then a small U-Net takes one step with it. Its output must be a Tensor that backpropagates.
    """

    def body():
        _a_function("conv2d", student)
        for dtype in (np.float64, np.float32):
            for shape, w_shape, S, P, has_bias in CASES:
                _one_case(student, shape, w_shape, S, P, has_bias, dtype)
        _small_unet(student)

    return check("conv2d", body, "as the U-Net's layers call it, and a small U-Net with it matches the library's")


def train_unet(conv2d=None, soft_dice_loss=None, steps=1000, batch_size=8, size=32, seed=0, verbose=True):
    """Train a small U-Net on the shapes data with your ``conv2d`` and/or ``soft_dice_loss`` in the library's place.

    The loss is cross-entropy plus soft Dice on the softmax. Returns the foreground mean IoU on 64 held-out
    images; prints it against ``TARGET_MIOU``, which a right conv2d reaches with the defaults and any seed measured.
    When your function raises or the loss turns NaN, it prints why and returns NaN.
    """
    fns = {name: fn for name, fn in (("conv2d", conv2d), ("soft_dice_loss", soft_dice_loss)) if fn is not None}
    manual_seed(seed)
    train = shapes(512, size=size, seed=seed)
    val = shapes(64, size=size, seed=seed + 1000)
    rng = np.random.default_rng(seed)
    start, step = time.perf_counter(), 0
    try:
        for name, fn in fns.items():
            _a_function(name, fn)
        with F.override(**fns):
            model = models.UNet(3, 6, base_channels=8, depth=2)
            models.he_init(model, keep=(model.head,))
            opt = optim.Adam(model.parameters(), lr=1e-2)
            for step in range(steps):
                batch = rng.choice(len(train.images), batch_size, replace=False)
                logits = model(Tensor(train.images[batch]))
                target = train.masks[batch]
                loss = F.cross_entropy(logits, target) + F.soft_dice_loss(F.softmax(logits, axis=1), target)
                if not np.isfinite(loss.item()):
                    raise Wrong("nan", f"the loss is {loss.item()} at step {step + 1}: a gradient of yours went NaN")
                opt.zero_grad()
                loss.backward()
                bad = [n for n, p in model.named_parameters() if p.grad is not None and not np.isfinite(p.grad).all()]
                if bad:
                    raise Wrong("nan", f"at step {step + 1} the gradient of {bad[0]} holds NaN or inf")
                opt.step()
                if verbose and (step + 1) % max(steps // 5, 1) == 0:
                    print(f"step {step + 1}/{steps}: loss {loss.item():.3f} ({time.perf_counter() - start:.0f} s)")
            model.eval()
            with no_grad():
                pred = model(Tensor(val.images)).data.argmax(1)
    except Wrong as wrong:
        verdict("train_unet", False, wrong.message, wrong.hint)
        return float("nan")
    except Exception as err:
        verdict("train_unet", False, raised(f"step {step + 1} of the training", err).message, "error")
        return float("nan")
    miou = float(metrics.mean_iou(metrics.confusion_matrix(pred, val.masks, 6), include_background=False))
    if verbose:
        reached = "is reached" if miou >= TARGET_MIOU else "is not reached yet: does check.conv2d pass?"
        print(f"foreground mIoU {miou:.3f} on 64 held-out images: the target {TARGET_MIOU} {reached}")
    return miou
