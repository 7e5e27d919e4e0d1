"""Kernel benchmark: im2col/col2im, conv2d, conv_transpose2d, max_pool2d, bilinear upsample, cross-entropy and
soft Dice, forward ("fwd", building the graph as training does) and forward + backward ("fwd+bwd").

Shapes are the ones the U-Net training step of ``bench_train_step.py`` meets (batch 16, 128x128, base 16), float32.
Every case runs on NumPy (cpu), CuPy (gpu) and PyTorch on the same device, interleaved in one process.

    python benchmarks/bench_kernels.py --quick [--device cpu|gpu|both] [--compare-torch]
"""

import sys
from dataclasses import dataclass

import numpy as np

import minisegnet as msn
from minisegnet import Tensor, no_grad
from minisegnet.backend import to_device

from timing import Impl, compare, import_torch, resolve_devices, settings, to_torch, torch_impl, torch_on


@dataclass
class Case:
    """One kernel: ``ours(*inputs)`` on minisegnet Tensors (or raw arrays when ``raw``), ``theirs`` on torch."""

    op: str
    shape: str
    inputs: list  # ("float" | "probs" | "labels", shape) pairs
    ours: object
    theirs: object
    raw: bool = False  # array functions (im2col/col2im): no autograd, forward only


def _soft_dice_torch(torch, p, t, smooth=1e-6):
    # The same formula as minisegnet's soft_dice_loss defaults, composed from torch ops (autograd derives it).
    # One-hot by broadcast comparison, as minisegnet does (torch's one_hot is a slower scatter on the CPU).
    g = (t[:, None] == torch.arange(p.shape[1], device=t.device).reshape(1, -1, 1, 1)).to(p.dtype)
    intersection = (p * g).sum(dim=(2, 3))
    union = (p * p).sum(dim=(2, 3)) + (g * g).sum(dim=(2, 3))
    return 1 - ((2 * intersection + smooth) / (union + smooth)).mean()


def cases(quick):
    """The kernel table: small shapes in quick mode, the U-Net step's shapes otherwise."""
    from minisegnet import ops as F
    from minisegnet.ops.im2col import col2im, im2col

    N, C, H, K = (2, 4, 16, 3) if quick else (16, 16, 128, 2)  # batch, base channels, image size, classes
    deep, HD = (8, 4) if quick else (128, 16)  # the bottleneck's channels and size
    x = ("float", (N, C, H, H))
    col_shape = (N, C * 9, H * H)

    def tf():
        return import_torch().nn.functional

    return [
        Case(
            "im2col 3x3 p1",
            f"{x[1]}",
            [x],
            lambda a: im2col(a, 3, stride=1, padding=1),
            lambda a: tf().unfold(a, 3, padding=1),
            True,
        ),
        Case(
            "col2im 3x3 p1",
            f"{col_shape}",
            [("float", col_shape)],
            lambda c: col2im(c, (N, C, H, H), 3, 1, 1),
            lambda c: tf().fold(c, (H, H), 3, padding=1),
            True,
        ),
        Case(
            "conv2d 3x3 p1",
            f"{x[1]} -> {C}",
            [x, ("float", (C, C, 3, 3))],
            lambda a, w: F.conv2d(a, w, padding=1),
            lambda a, w: tf().conv2d(a, w, padding=1),
        ),
        Case(
            "conv2d 3x3 p1",
            f"{(N, deep, H // 8, H // 8)} -> {deep}",
            [("float", (N, deep, H // 8, H // 8)), ("float", (deep, deep, 3, 3))],
            lambda a, w: F.conv2d(a, w, padding=1),
            lambda a, w: tf().conv2d(a, w, padding=1),
        ),
        Case(
            "conv_transpose2d 2x2 s2",
            f"{(N, 2 * C, H // 2, H // 2)} -> {C}",
            [("float", (N, 2 * C, H // 2, H // 2)), ("float", (2 * C, C, 2, 2)), ("float", (C,))],
            lambda a, w, b: F.conv_transpose2d(a, w, b, stride=2),
            lambda a, w, b: tf().conv_transpose2d(a, w, b, stride=2),
        ),
        Case("max_pool2d 2x2", f"{x[1]}", [x], lambda a: F.max_pool2d(a, 2), lambda a: tf().max_pool2d(a, 2)),
        Case(
            "upsample bilinear x2",
            f"{(N, C, H // 2, H // 2)}",
            [("float", (N, C, H // 2, H // 2))],
            lambda a: F.upsample(a, 2, mode="bilinear"),
            lambda a: tf().interpolate(a, scale_factor=2, mode="bilinear", align_corners=False),
        ),
        Case(
            "cross_entropy",
            f"{(N, K, H, H)}",
            [("float", (N, K, H, H)), ("labels", (N, H, H))],
            lambda a, t: F.cross_entropy(a, t),
            lambda a, t: tf().cross_entropy(a, t),
        ),
        Case(
            "soft_dice_loss",
            f"{(N, K, H, H)}",
            [("probs", (N, K, H, H)), ("labels", (N, H, H))],
            lambda p, t: F.soft_dice_loss(p, t),
            lambda p, t: _soft_dice_torch(import_torch(), p, t),
        ),
    ]


def make_inputs(case, classes=2, dtype=np.float32, seed=0):
    """Host arrays for a case, the same numbers for every backend."""
    rng = np.random.default_rng(seed)
    out = []
    for kind, shape in case.inputs:
        if kind == "labels":
            out.append(rng.integers(0, classes, size=shape))
        elif kind == "probs":  # a softmax over axis 1, so every pixel's probabilities sum to one
            e = np.exp(rng.standard_normal(shape))
            out.append((e / e.sum(axis=1, keepdims=True)).astype(dtype))
        else:
            out.append(rng.standard_normal(shape).astype(dtype))
    return out


def _fwd_bwd(forward, leaves, gy, clear):
    """fwd: forward only. fwd+bwd: forward, then backward with ``gy`` (None for a scalar loss)."""

    def fwd():
        return forward(*leaves)

    def fwd_bwd():
        clear(leaves)
        y = forward(*leaves)
        y.backward(gy(y))

    return fwd, fwd_bwd


def _clear_ours(leaves):
    for t in leaves:
        if isinstance(t, Tensor):
            t.grad = None


def _clear_torch(leaves):
    for t in leaves:
        t.grad = None


def ours_impls(case, arrays, device):
    """The minisegnet implementations of a case on ``device``: [("fwd", Impl), ("fwd+bwd", Impl)]."""
    impl = "cupy" if device == "gpu" else "numpy"
    data = [to_device(a, device) for a in arrays]
    name = f"{case.op} {case.shape}"
    if case.raw:
        return [("fwd", Impl(name, impl, device, lambda: case.ours(*data)))]
    leaves = [Tensor(a, requires_grad=a.dtype.kind == "f") for a in data]
    with no_grad():
        y = case.ours(*leaves)
    shape, xp = y.shape, msn.get_array_module(y)
    gy_array = xp.asarray(np.random.default_rng(1).standard_normal(shape).astype(y.dtype)) if shape else None
    fwd, fwd_bwd = _fwd_bwd(case.ours, leaves, lambda y: gy_array, _clear_ours)
    return [("fwd", Impl(name, impl, device, fwd)), ("fwd+bwd", Impl(name, impl, device, fwd_bwd))]


def torch_impls(case, arrays, device, torch):
    """The same case in PyTorch on ``device``; same structure as ``ours_impls``."""
    name = f"{case.op} {case.shape}"
    if case.raw:
        data = [to_torch(a, device, torch) for a in arrays]
        return [("fwd", torch_impl(name, device, lambda: case.theirs(*data), torch))]
    leaves = [to_torch(a, device, torch, requires_grad=a.dtype.kind == "f") for a in arrays]
    with torch.no_grad():
        y = case.theirs(*leaves)
    shape = tuple(y.shape)
    gy_t = to_torch(np.random.default_rng(1).standard_normal(shape).astype(str(y.dtype)[6:]), device, torch)
    fwd, fwd_bwd = _fwd_bwd(case.theirs, leaves, lambda y: gy_t if len(shape) else None, _clear_torch)
    return [("fwd", torch_impl(name, device, fwd, torch)), ("fwd+bwd", torch_impl(name, device, fwd_bwd, torch))]


def run(device="cpu", compare_torch=False, quick=False):
    """Time every kernel on the device(s); a list of row dicts (see ``timing.Result.row``)."""
    torch = import_torch() if compare_torch else None
    rows = []
    for case in cases(quick):
        arrays = make_inputs(case)
        for dev in resolve_devices(device):
            pairs = ours_impls(case, arrays, dev)
            if torch_on(torch, dev):
                pairs += torch_impls(case, arrays, dev, torch)
            for phase in ("fwd", "fwd+bwd"):
                impls = [impl for p, impl in pairs if p == phase]
                if not impls:
                    continue
                for res in compare(impls, **settings(quick)):
                    rows.append(res.row(bench="kernels", op=case.op, shape=case.shape, phase=phase, dtype="float32"))
    return rows


def plot(rows, path):
    """Horizontal bars, one group per kernel and pass, one bar per implementation, on a log time axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    names = list(dict.fromkeys(f"{r['op']} {r['phase']}" for r in rows))
    impls = list(dict.fromkeys(f"{r['impl']} ({r['device']})" for r in rows))
    height = 0.8 / len(impls)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) * max(1, len(impls) / 2) + 1.2))
    for k, impl in enumerate(impls):
        ms = {f"{r['op']} {r['phase']}": r["median_ms"] for r in rows if f"{r['impl']} ({r['device']})" == impl}
        ys = [i + k * height for i, n in enumerate(names) if n in ms]
        ax.barh(ys, [ms[n] for n in names if n in ms], height=height, label=impl)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(names))], names, fontsize=8)
    ax.invert_yaxis()
    ax.set(xscale="log", xlabel="median time per call (ms, log scale)", title="minisegnet kernels (float32)")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    from run_all import main

    sys.exit(main(["--only", "kernels", *sys.argv[1:]]))
