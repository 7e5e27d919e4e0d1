"""Scaling sweep: conv2d 3x3 (padding 1) forward + backward against the number of pixels N*H*W and against the
channel width C, on every backend, drawn on log-log axes.

On a log-log plot a cost proportional to the work is a line of slope 1; a flat start is fixed overhead (Python,
kernel launches) that the work has not yet outgrown. Where the GPU line drops below the CPU line, the GPU pays off.

    python benchmarks/bench_scaling.py --quick [--device cpu|gpu|both] [--compare-torch]
"""

import math
import sys

from bench_kernels import Case, make_inputs, ours_impls, torch_impls

from timing import compare, import_torch, resolve_devices, settings, torch_on

FULL = {"N": 8, "C": 16, "sizes": (8, 16, 32, 64, 128, 256), "H": 32, "widths": (4, 8, 16, 32, 64, 128)}
QUICK = {"N": 2, "C": 4, "sizes": (4, 8, 12, 16), "H": 8, "widths": (2, 4, 8, 16)}
OP = "conv2d 3x3 p1 fwd+bwd"


def conv_case(N, C, H):
    from minisegnet import ops as F

    return Case(
        "conv2d 3x3 p1",
        f"{(N, C, H, H)} -> {C}",
        [("float", (N, C, H, H)), ("float", (C, C, 3, 3))],
        lambda a, w: F.conv2d(a, w, padding=1),
        lambda a, w: import_torch().nn.functional.conv2d(a, w, padding=1),
    )


def sweep_points(quick):
    """[(sweep, x, N, C, H)]: N*H*W at a fixed width, then the width at a fixed size."""
    cfg = QUICK if quick else FULL
    points = [("pixels", cfg["N"] * H * H, cfg["N"], cfg["C"], H) for H in cfg["sizes"]]
    return points + [("channels", C, cfg["N"], C, cfg["H"]) for C in cfg["widths"]]


def run(device="cpu", compare_torch=False, quick=False):
    """Time conv2d forward + backward over both sweeps on the device(s); a list of row dicts."""
    torch = import_torch() if compare_torch else None
    rows = []
    for sweep, x, N, C, H in sweep_points(quick):
        case = conv_case(N, C, H)
        arrays = make_inputs(case)
        for dev in resolve_devices(device):
            impls = [impl for phase, impl in ours_impls(case, arrays, dev) if phase == "fwd+bwd"]
            if torch_on(torch, dev):
                impls += [impl for phase, impl in torch_impls(case, arrays, dev, torch) if phase == "fwd+bwd"]
            for res in compare(impls, **settings(quick)):
                rows.append(res.row(bench="scaling", op=OP, sweep=sweep, x=x, shape=case.shape, dtype="float32"))
    return rows


def label(row):
    return f"{row['impl']} ({row['device']})"


def slopes(rows, sweep="pixels", last=3):
    """{label: log-log slope over the ``last`` largest points}: about 1 once time is proportional to the work."""
    out = {}
    for name in dict.fromkeys(label(r) for r in rows if r["sweep"] == sweep):
        pts = sorted((r["x"], r["median_ms"]) for r in rows if r["sweep"] == sweep and label(r) == name)[-last:]
        if len(pts) >= 2:
            (x0, y0), (x1, y1) = pts[0], pts[-1]
            out[name] = math.log(y1 / y0) / math.log(x1 / x0)
    return out


def plot(rows, path):
    """Two log-log panels (time against N*H*W, against C), one line per backend, IQR as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, sweep, xlabel in zip(axes, ("pixels", "channels"), ("N*H*W (pixels)", "channels C (in = out)")):
        for name in dict.fromkeys(label(r) for r in rows):
            pts = sorted(
                (r["x"], r["median_ms"], r["iqr_ms"]) for r in rows if r["sweep"] == sweep and label(r) == name
            )
            if pts:
                xs, ys, es = zip(*pts)
                ax.errorbar(xs, ys, yerr=[e / 2 for e in es], marker="o", capsize=3, label=name)
        ref = sorted((r["x"], r["median_ms"]) for r in rows if r["sweep"] == sweep)
        if ref:  # a slope-1 guide through the largest point: proportional to the work
            x1 = max(x for x, _ in ref)
            y1 = max(y for x, y in ref if x == x1)
            x0 = min(x for x, _ in ref)
            ax.plot([x0, x1], [y1 * x0 / x1, y1], "k:", lw=1, label="slope 1 (time ∝ work)")
        ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="median time (ms)", title=f"{OP}: {sweep}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    from run_all import main

    sys.exit(main(["--only", "scaling", *sys.argv[1:]]))
