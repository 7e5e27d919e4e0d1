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

FULL = {"N": 8, "C": 16, "sizes": (8, 16, 32, 64, 128), "H": 32, "widths": (4, 8, 16, 32, 64, 128)}
QUICK = {"N": 2, "C": 4, "sizes": (4, 8, 12, 16), "H": 8, "widths": (2, 4, 8, 16)}
GPU_SIZES = (256, 512)  # a GPU needs bigger images to leave its launch-overhead plateau; a CPU would take minutes
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


def sweep_points(quick, gpu_only=False):
    """[(sweep, x, N, C, H)]: N*H*W at a fixed width, then the width at a fixed size (``gpu_only``: the extra
    large sizes timed on the GPU alone)."""
    cfg = QUICK if quick else FULL
    if gpu_only:
        return [] if quick else [("pixels", cfg["N"] * H * H, cfg["N"], cfg["C"], H) for H in GPU_SIZES]
    points = [("pixels", cfg["N"] * H * H, cfg["N"], cfg["C"], H) for H in cfg["sizes"]]
    return points + [("channels", C, cfg["N"], C, cfg["H"]) for C in cfg["widths"]]


def run(device="cpu", compare_torch=False, quick=False):
    """Time conv2d forward + backward over both sweeps on the device(s); a list of row dicts."""
    torch = import_torch() if compare_torch else None
    rows = []
    devices = resolve_devices(device)
    points = [(p, devices) for p in sweep_points(quick)] + [(p, ["gpu"]) for p in sweep_points(quick, True)]
    for (sweep, x, N, C, H), on in points:
        case = conv_case(N, C, H)
        arrays = make_inputs(case)
        for dev in [d for d in devices if d in on]:
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
    """Two log-log panels (time against N*H*W, against C), one line per backend, interquartile range as bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    sweeps = (("pixels", "N*H*W (pixels)", 1), ("channels", "channels C (in = out)", 2))
    for ax, (sweep, xlabel, power) in zip(axes, sweeps):
        for name in dict.fromkeys(label(r) for r in rows):
            pts = sorted(
                (r["x"], r["median_ms"], r["q1_ms"], r["q3_ms"])
                for r in rows
                if r["sweep"] == sweep and label(r) == name
            )
            if pts:
                xs, ys, lo, hi = zip(*pts)
                spread = [[y - a for y, a in zip(ys, lo)], [b - y for y, b in zip(ys, hi)]]
                ax.errorbar(xs, ys, yerr=spread, marker="o", capsize=3, label=name)
        ref = [(r["x"], r["median_ms"]) for r in rows if r["sweep"] == sweep]
        if ref:  # a guide through the largest point: time proportional to the work (N*H*W, or C*C for a conv)
            x1 = max(x for x, _ in ref)
            y1 = max(y for x, y in ref if x == x1)
            x0 = min(x for x, _ in ref)
            guide = "slope 1 (time ∝ N*H*W)" if power == 1 else "slope 2 (time ∝ C_in*C_out)"
            ax.plot([x0, x1], [y1 * (x0 / x1) ** power, y1], "k:", lw=1, label=guide)
        ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="median time (ms), IQR bars", title=f"{OP}: {sweep}")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    from run_all import main

    sys.exit(main(["--only", "scaling", *sys.argv[1:]]))
