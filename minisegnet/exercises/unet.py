"""Checks for the U-Net exercises: concat's backward and the forward shapes of a U-Net."""

import numbers

import numpy as np

from .. import models
from ..tensor import Tensor, no_grad
from .feedback import Wrong, check, compare, describe, run


def _same(got, pieces):
    # True when got is a list of arrays equal to pieces (anything else a student returns is simply not the same).
    arrays = all(isinstance(g, np.ndarray) and g.dtype.kind in "biuf" for g in got)
    return (
        arrays
        and len(got) == len(pieces)
        and all(g.shape == p.shape and np.allclose(g, p) for g, p in zip(got, pieces))
    )


def concat_backward(student):
    """Check ``student(gy, sizes, axis)`` -> [gx_1, ...]: gy split back into the inputs' gradients."""

    def body():
        for shape, sizes, axis in (((2, 6, 3, 4), [2, 3, 1], 1), ((5, 3, 2, 2), [1, 4], 0)):
            gy = np.random.default_rng(0).standard_normal(shape)
            pieces = np.split(gy, np.cumsum(sizes)[:-1], axis=axis)
            got = run("concat_backward", student, gy.copy(), list(sizes), axis)
            if got is None:
                raise Wrong("none", "concat_backward returned None: did you forget to return the list of gradients?")
            if not isinstance(got, (list, tuple)):
                raise Wrong("type", f"concat_backward must return a list of {len(sizes)} arrays, got {describe(got)}")
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


def _shape(key, value, case):
    # A shape as a tuple of ints, or Wrong naming what came instead.
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if isinstance(value, (tuple, list)) and all(isinstance(n, numbers.Integral) for n in value):
        return tuple(int(n) for n in value)
    if isinstance(value, (tuple, list)) and any(isinstance(n, float) and n != n for n in value):
        raise Wrong("nan", f"{key}: a shape holds NaN: {value} ({case})")
    hint = "none" if value is None else "tensor" if isinstance(value, Tensor) else "type"
    raise Wrong(
        hint, f"{key}: a shape must be a tuple of ints (N, channels, height, width), got {describe(value)} ({case})"
    )


def _shapes(key, value, many, case):
    if not many:
        return _shape(key, value, case)
    if not isinstance(value, (tuple, list)):
        hint = "none" if value is None else "type"
        raise Wrong(hint, f"{key} must be a list of shapes, one per block, got {describe(value)} ({case})")
    return [_shape(key, s, case) for s in value]


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
            if got is None:
                raise Wrong("none", "unet_shapes returned None: did you forget to return the dict?")
            if not isinstance(got, dict):
                raise Wrong("type", f"return a dict with the keys {sorted(expected)}, got {describe(got)} ({case})")
            if set(got) != set(expected):
                raise Wrong("keys", f"return a dict with the keys {sorted(expected)}, got {describe(got)} ({case})")
            for key in ("encoder", "bottleneck", "decoder", "logits"):
                want, have = expected[key], _shapes(key, got[key], isinstance(expected[key], list), case)
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
