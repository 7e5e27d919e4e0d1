"""Checks for the U-Net exercises: concat's backward and the forward shapes; and your ops training a U-Net."""

import contextlib
import time

import numpy as np

from .. import metrics, models, optim
from .. import ops as F
from ..data import shapes
from ..nn import manual_seed
from ..tensor import Tensor, no_grad
from .feedback import Wrong, check, compare, run

# Stated in lessons/exercises/README.md: measured with the library's own functions (full and quick settings).
TARGET_MIOU = 0.45


def _same(got, pieces):
    return len(got) == len(pieces) and all(np.shape(g) == p.shape and np.allclose(g, p) for g, p in zip(got, pieces))


def concat_backward(student):
    """Check ``student(gy, sizes, axis)`` -> [gx_1, ...]: gy split back into the inputs' gradients."""

    def body():
        for shape, sizes, axis in (((2, 6, 3, 4), [2, 3, 1], 1), ((5, 3, 2, 2), [1, 4], 0)):
            gy = np.random.default_rng(0).standard_normal(shape)
            pieces = np.split(gy, np.cumsum(sizes)[:-1], axis=axis)
            got = run("concat_backward", student, gy.copy(), list(sizes), axis)
            if not isinstance(got, (list, tuple)):
                raise Wrong(
                    "return", f"concat_backward must return a list of {len(sizes)} arrays, got {type(got).__name__}"
                )
            case = f"gy {shape}, sizes {sizes}, axis {axis}"
            for hint, explanation, wrong in [
                (
                    "order",
                    "the pieces come back in reverse order: the first input's gradient is gy's first slice",
                    pieces[::-1],
                ),
                (
                    "offsets",
                    f"the pieces have equal sizes: split at the cumulative sizes {np.cumsum(sizes)[:-1].tolist()}",
                    np.array_split(gy, len(sizes), axis=axis),
                ),
                ("whole", "every input got the whole gy: each one gets only the slice it filled", [gy] * len(sizes)),
                ("axis", "gy is split along the wrong axis", np.array_split(gy, len(sizes), axis=1 - axis)),
            ]:
                if not _same(got, pieces) and _same(got, wrong):
                    raise Wrong(hint, f"{explanation} ({case})")
            if len(got) != len(sizes):
                raise Wrong("count", f"{len(got)} gradients for {len(sizes)} inputs ({case})")
            for k, (g, p) in enumerate(zip(got, pieces)):
                compare(f"gx_{k + 1}", g, p, (), case)

    return check("concat_backward", body, "each input gets back exactly the slice of gy it filled")


def _record(model, x):
    # Run the library's U-Net and note the output shape of every encoder block, the bottleneck and every decoder block.
    seen = {"encoder": [], "bottleneck": None, "decoder": []}

    def spy(block, key):
        forward = block.forward

        def wrapped(*args):
            y = forward(*args)
            if key == "bottleneck":
                seen[key] = tuple(y.shape)
            else:
                seen[key].append(tuple(y.shape))
            return y

        block.forward = wrapped

    for block in model.encoder:
        spy(block, "encoder")
    spy(model.bottleneck, "bottleneck")
    for block in model.decoder:
        spy(block, "decoder")
    with no_grad():
        seen["logits"] = tuple(model(x).shape)
    return seen


def unet_shapes(student):
    """Check ``student(N, C, H, W, base_channels, depth, num_classes)`` -> dict of the U-Net's shapes.

    The dict has "encoder" (the output shape of each encoder block, top first), "bottleneck", "decoder"
    (each decoder block's output, bottom first) and "logits", as ``models.UNet`` computes them.
    """

    def body():
        for N, C, H, W, base, depth, classes in ((2, 3, 32, 48, 8, 3, 5), (1, 1, 16, 16, 4, 2, 2)):
            model = models.UNet(C, classes, base, depth)
            expected = _record(model, np.zeros((N, C, H, W), dtype=np.float32))
            got = run("unet_shapes", student, N, C, H, W, base, depth, classes)
            case = f"N={N}, C={C}, H={H}, W={W}, base_channels={base}, depth={depth}, num_classes={classes}"
            if not isinstance(got, dict) or set(got) != set(expected):
                raise Wrong("keys", f"return a dict with the keys {sorted(expected)} ({case})")
            for key in ("encoder", "bottleneck", "decoder", "logits"):
                want, have = expected[key], got[key]
                have = [tuple(s) for s in have] if key in ("encoder", "decoder") else tuple(have)
                if have == want:
                    continue
                hints = [
                    (
                        "channels",
                        "the channels do not double at each level below",
                        [(N, base, H // 2**i, W // 2**i) for i in range(depth)],
                    ),
                    (
                        "pool",
                        "the first block runs before any pooling: level i is H / 2**i, not H / 2**(i+1)",
                        [(N, base * 2**i, H // 2 ** (i + 1), W // 2 ** (i + 1)) for i in range(depth)],
                    ),
                    (
                        "concat",
                        "that is the concatenation's width: the decoder block halves it back",
                        [(N, 2 * base * 2**i, H // 2**i, W // 2**i) for i in reversed(range(depth))],
                    ),
                    (
                        "bottleneck",
                        "the bottleneck doubles the channels once more, after the last pooling",
                        (N, base * 2 ** (depth - 1), H // 2**depth, W // 2**depth),
                    ),
                    ("classes", "the 1x1 head maps base_channels to num_classes scores", (N, base, H, W)),
                ]
                for hint, explanation, wrong in hints:
                    if have == wrong:
                        raise Wrong(hint, f"{key}: {explanation} ({case})")
                raise Wrong("value", f"{key} is {have}, the library's U-Net gives {want} ({case})")

    return check("unet_shapes", body, "every block's output shape matches the library's U-Net")


def conv2d(student):
    """Check ``student(x, weight, bias, stride, padding, dilation)``, a differentiable conv2d on Tensors."""

    def body():
        rng = np.random.default_rng(0)
        for stride, padding in ((1, 1), (2, 0)):
            x, weight, bias = (
                Tensor(rng.standard_normal(s), requires_grad=True) for s in ((2, 3, 6, 7), (4, 3, 3, 3), (4,))
            )
            y = F.conv2d(x, weight, bias, stride, padding)
            gy = rng.standard_normal(y.shape)
            y.backward(gy)
            expected = [y.data, x.grad, weight.grad, bias.grad]
            for t in (x, weight, bias):
                t.grad = None
            got = run("conv2d", student, x, weight, bias, stride, padding, 1)
            if not isinstance(got, Tensor):
                raise Wrong("return", f"conv2d must return a Tensor (a Function's output), got {type(got).__name__}")
            case = f"stride {stride}, padding {padding}"
            no_bias = expected[0] - bias.data[None, :, None, None]
            compare(
                "y",
                got.data,
                expected[0],
                [("bias", "the bias is missing: add bias[o] to every output of channel o", no_bias)],
                case,
            )
            got.backward(gy)
            for name, t, want in zip(("x.grad", "weight.grad", "bias.grad"), (x, weight, bias), expected[1:]):
                compare(name, t.grad, want, (), case)

    return check("conv2d", body, "its output and its three gradients match the library's conv2d")


@contextlib.contextmanager
def _plugged(**fns):
    # Your functions in place of the library's ops; ops.override where this version of minisegnet has it.
    fns = {name: fn for name, fn in fns.items() if fn is not None}
    if hasattr(F, "override"):
        with F.override(**fns):
            yield
        return
    originals = {name: getattr(F, name) for name in fns}
    try:
        for name, fn in fns.items():
            setattr(F, name, fn)  # layers call F.conv2d at call time, so this reaches every layer
        yield
    finally:
        for name, fn in originals.items():
            setattr(F, name, fn)


def train_unet(conv2d=None, soft_dice_loss=None, steps=1000, batch_size=8, size=32, seed=0, verbose=True):
    """Train a small U-Net on the shapes data with your ``conv2d`` and/or ``soft_dice_loss`` in the library's place.

    The loss is cross-entropy plus soft Dice on the softmax. Returns the foreground mean IoU on 64 held-out
    images; prints it against ``TARGET_MIOU``, which the library's own functions reach with the defaults.
    """
    manual_seed(seed)
    train = shapes(512, size=size, seed=seed)
    val = shapes(64, size=size, seed=seed + 1000)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    with _plugged(conv2d=conv2d, soft_dice_loss=soft_dice_loss):
        model = models.UNet(3, 6, base_channels=8, depth=2)
        models.he_init(model, keep=(model.head,))
        opt = optim.Adam(model.parameters(), lr=1e-2)
        for step in range(steps):
            batch = rng.choice(len(train.images), batch_size, replace=False)
            logits = model(Tensor(train.images[batch]))
            target = train.masks[batch]
            loss = F.cross_entropy(logits, target) + F.soft_dice_loss(F.softmax(logits, axis=1), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if verbose and (step + 1) % max(steps // 5, 1) == 0:
                print(f"step {step + 1}/{steps}: loss {loss.item():.3f} ({time.perf_counter() - start:.0f} s)")
        model.eval()
        with no_grad():
            pred = model(Tensor(val.images)).data.argmax(1)
    miou = float(metrics.mean_iou(metrics.confusion_matrix(pred, val.masks, 6), include_background=False))
    if verbose:
        verdict = "reached" if miou >= TARGET_MIOU else "not reached yet"
        print(f"foreground mIoU {miou:.3f} on 64 held-out images: the target {TARGET_MIOU} is {verdict}")
    return miou
