"""Speed and memory of minisegnet's conv2d / conv_transpose2d, side by side with PyTorch and a textbook version.

    python benchmarks/bench_conv.py            # the full table (about 10 minutes on 2 cores)
    python benchmarks/bench_conv.py --quick    # tiny shapes, one round: checks that it runs

Each row times forward + backward (gradients for input, weight and bias) in float32 at the shapes of the U-Net's
convolutions. Every implementation runs in its own processes (timing.run_interleaved): 5 rounds, each starting
one process per implementation in a rotating order with 2 s between them, all reading the same arrays from one
.npz file, with the same thread count (default 2) set through the environment and each library's call. Before
timing, each implementation's outputs and gradients are checked against the textbook version's. A worker times
each case alone: 3 warm-up calls, then calls for at least 1 s (at least 5). The table gives the median of every
call, its interquartile range, and the lowest and highest median of one round.

The implementations: "minisegnet" is the library's default (its calling thread, BLAS with the threads);
"minisegnet_mt" calls ``minisegnet.set_num_threads(threads)`` (its own threads, one BLAS thread each);
"textbook" is the usual NumPy version written below (im2col by a loop over kernel offsets into a fresh
(N, C, KH, KW, OH, OW) array, then ``np.tensordot``); "products" times only the three matrix products of an
im2col convolution on ready operands, the floor of any im2col version on this BLAS; "torch" is PyTorch, skipped
when it is not installed.

Memory: the peak of extra resident memory (VmHWM - VmRSS, the kernel's high-water mark reset
through /proc/self/clear_refs) during one forward + backward after a warm-up, each
implementation in a fresh process, with glibc's mmap threshold fixed at 64 KiB so that freed
large blocks go back to the system and the high-water mark sees each one. That counts the same
thing for NumPy and PyTorch (every array that was touched, outputs and gradients included).
minisegnet's scratch buffers, which persist between calls, are freed before the measured run so
that they count too. For NumPy, tracemalloc's peak is printed as well.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # timing.py, when imported from elsewhere (the tests)

import minisegnet.ops as F  # noqa: E402
from minisegnet import Tensor  # noqa: E402

from timing import (  # noqa: E402
    Impl,
    check_outputs,
    import_torch,
    interleaved_parser,
    run_interleaved,
    thread_env,
    torch_impl,
    worker_main,
)

# (op, N, C, OC, H): 3x3 stride-1 padding-1 convolutions, then 2x2 stride-2 transposed convolutions.
SHAPES = [
    ("conv3x3", 8, 3, 16, 64),
    ("conv3x3", 8, 16, 16, 64),
    ("conv3x3", 8, 32, 32, 32),
    ("conv3x3", 8, 64, 64, 16),
    ("conv3x3", 8, 128, 128, 8),
    ("conv3x3", 4, 64, 64, 128),
    ("convT2x2", 8, 64, 32, 16),
    ("convT2x2", 8, 32, 16, 32),
]
MEMORY_SHAPE = ("conv3x3", 8, 16, 16, 64)


# ---- the textbook reference: im2col + tensordot ------------------------------------------------


def _tb_im2col(x, KH, KW, S, P):
    N, C, H, W = x.shape
    OH, OW = (H + 2 * P - KH) // S + 1, (W + 2 * P - KW) // S + 1
    xpad = np.pad(x, ((0, 0), (0, 0), (P, P), (P, P)))
    col = np.empty((N, C, KH, KW, OH, OW), dtype=x.dtype)
    for i in range(KH):
        for j in range(KW):
            col[:, :, i, j] = xpad[:, :, i : i + S * OH : S, j : j + S * OW : S]
    return col


def _tb_col2im(col, H, W, S, P):
    N, C, KH, KW, OH, OW = col.shape
    img = np.zeros((N, C, H + 2 * P + S - 1, W + 2 * P + S - 1), dtype=col.dtype)
    for i in range(KH):
        for j in range(KW):
            img[:, :, i : i + S * OH : S, j : j + S * OW : S] += col[:, :, i, j]
    return img[:, :, P : H + P, P : W + P]


def textbook_conv(x, W, b, gy, S, P):
    """Forward and backward of conv2d; returns (y, gx, gW, gb)."""
    KH, KW = W.shape[2:]
    col = _tb_im2col(x, KH, KW, S, P)
    y = np.tensordot(col, W, ((1, 2, 3), (1, 2, 3))).transpose(0, 3, 1, 2) + b.reshape(1, -1, 1, 1)
    gW = np.tensordot(gy, col, ((0, 2, 3), (0, 4, 5)))
    gcol = np.tensordot(W, gy, (0, 1)).transpose(3, 0, 1, 2, 4, 5)
    gx = _tb_col2im(gcol, x.shape[2], x.shape[3], S, P)
    return y, gx, gW, gy.sum(axis=(0, 2, 3))


def textbook_conv_transpose(x, W, b, gy, S, P):
    """Forward and backward of conv_transpose2d (no output_padding); returns (y, gx, gW, gb)."""
    KH, KW = W.shape[2:]
    H, Wd = x.shape[2:]
    OH, OW = (H - 1) * S - 2 * P + KH, (Wd - 1) * S - 2 * P + KW
    gcol = np.tensordot(W, x, (0, 1)).transpose(3, 0, 1, 2, 4, 5)
    y = _tb_col2im(gcol, OH, OW, S, P) + b.reshape(1, -1, 1, 1)
    col = _tb_im2col(gy, KH, KW, S, P)
    gx = np.tensordot(col, W, ((1, 2, 3), (1, 2, 3))).transpose(0, 3, 1, 2)
    gW = np.tensordot(x, col, ((0, 2, 3), (0, 4, 5)))
    return y, gx, gW, gy.sum(axis=(0, 2, 3))


def products_only(N, C, OC, H, K, transposed, rng):
    """The three matrix products of one forward + backward alone, on operands drawn beforehand.

    With A the weight matrix (M, Kc), B the columns (Kc, L) and G the output gradient (M, L): the output
    is A @ B, the weight gradient's transpose B @ G.T (the order fast/conv.py multiplies in), the input's
    column gradient A.T @ G. A 3x3 convolution has M = OC, Kc = 9 C, L = N H W; a 2x2 stride-2 transposed
    one M = 4 OC, Kc = C, L = N H W. No columns are built and nothing is copied: this is the floor of any
    im2col convolution on this BLAS.
    """
    M, Kc = (K * K * OC, C) if transposed else (OC, K * K * C)
    L = N * H * H
    A, B, G = (rng.standard_normal(shape, dtype=np.float32) for shape in ((M, Kc), (Kc, L), (M, L)))
    return lambda: (A @ B, B @ G.T, A.T @ G)


# ---- the inputs, drawn once and read by every worker process ------------------------------------


def draw(op, N, C, OC, H, seed=0):
    """float32 (x, W, b, gy) of one case: the same arrays for every implementation."""
    rng = np.random.default_rng(seed)
    transposed = op == "convT2x2"
    OH = 2 * H if transposed else H
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    W = rng.standard_normal((C, OC, 2, 2) if transposed else (OC, C, 3, 3), dtype=np.float32) * 0.1
    b = rng.standard_normal(OC, dtype=np.float32)
    return x, W, b, rng.standard_normal((N, OC, OH, OH), dtype=np.float32)


def label(i, op, N, C, OC, H):
    """The name of case ``i`` (quick runs shrink several shapes to the same one: the index keeps them apart)."""
    return f"{i}: {op} ({N}, {C}->{OC}, {H}x{H})"


def write_data(shapes, path, seed=0):
    """One .npz holding every case's arrays ("<i>.x", "<i>.W", ...) and the list of cases as JSON."""
    arrays = {"cases": np.array(json.dumps([[label(i, *s), *s] for i, s in enumerate(shapes)]))}
    for i, shape in enumerate(shapes):
        arrays.update({f"{i}.{k}": a for k, a in zip(("x", "W", "b", "gy"), draw(*shape, seed=seed))})
    np.savez(path, **arrays)


def cases(data):
    """[(label, op, N, C, OC, H, x, W, b, gy)] from the arrays of ``write_data``."""
    meta = json.loads(str(data["cases"]))
    return [(*m, *(data[f"{i}.{k}"] for k in ("x", "W", "b", "gy"))) for i, m in enumerate(meta)]


# ---- the workers: one framework each, in its own process ---------------------------------------


def _ours(x, W, b, gy, op):
    mx, mW, mb = (Tensor(a.copy(), requires_grad=True) for a in (x, W, b))
    fn, (S, P) = (F.conv_transpose2d, (2, 0)) if op == "convT2x2" else (F.conv2d, (1, 1))

    def run():  # gradients are dropped at the end so each run starts from the same memory
        y = fn(mx, mW, mb, S, P)
        y.backward(gy)
        out = (y.data, mx.grad, mW.grad, mb.grad)
        mx.grad = mW.grad = mb.grad = None
        return out

    return run


def build_minisegnet(data, args, own_threads=False):
    """minisegnet's default path; ``own_threads``: with ``set_num_threads(threads)`` (its chunk threads)."""
    from minisegnet import set_num_threads

    set_num_threads(args.threads if own_threads else 0)
    impl = "minisegnet_mt" if own_threads else "minisegnet"
    return [Impl(c[0], impl, "cpu", _ours(*c[6:], c[1])) for c in cases(data)]


def build_textbook(data, args):
    out = []
    for name, op, *_, x, W, b, gy in cases(data):
        fn, (S, P) = (textbook_conv_transpose, (2, 0)) if op == "convT2x2" else (textbook_conv, (1, 1))
        out.append(Impl(name, "textbook", "cpu", lambda f=fn, a=(x, W, b, gy, S, P): f(*a)))
    return out


def build_products(data, args):
    rng = np.random.default_rng(0)
    out = []
    for name, op, N, C, OC, H, *_ in cases(data):
        K = 2 if op == "convT2x2" else 3
        fn = products_only(N, C, OC, H, K, op == "convT2x2", rng)
        out.append(Impl(name, "products", "cpu", lambda f=fn: (f(), None)[1]))  # nothing to compare
    return out


def build_torch(data, args):
    import torch

    torch.set_num_threads(args.threads)
    out = []
    for name, op, *_, x, W, b, gy in cases(data):
        tx, tW, tb = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, W, b))
        tgy = torch.from_numpy(gy)
        fn, (S, P) = (
            (torch.nn.functional.conv_transpose2d, (2, 0)) if op == "convT2x2" else (torch.nn.functional.conv2d, (1, 1))
        )

        def run(fn=fn, tx=tx, tW=tW, tb=tb, tgy=tgy, S=S, P=P):
            y = fn(tx, tW, tb, S, P)
            y.backward(tgy)
            out = (y, tx.grad, tW.grad, tb.grad)
            tx.grad = tW.grad = tb.grad = None
            return out

        out.append(torch_impl(name, "cpu", run, torch))
    return out


BUILDERS = {
    "minisegnet": build_minisegnet,
    "minisegnet_mt": lambda data, args: build_minisegnet(data, args, own_threads=True),
    "textbook": build_textbook,
    "products": build_products,
    "torch": build_torch,
}
CHECKED = ("minisegnet", "minisegnet_mt", "torch")  # against the textbook version's outputs


# ---- memory: one implementation per fresh process ----------------------------------------------


def _proc_status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


def _memory_child(name, threads):
    from minisegnet.ops.fast.workspace import free_scratch

    arrays = draw(*MEMORY_SHAPE)
    meta = np.array(json.dumps([[label(0, *MEMORY_SHAPE), *MEMORY_SHAPE]]))
    data = {"cases": meta, **{f"0.{k}": a for k, a in zip(("x", "W", "b", "gy"), arrays)}}
    fn = BUILDERS[name](data, argparse.Namespace(threads=threads))[0].fn
    fn()  # warm-up: lazy initialisation is not part of the peak
    free_scratch()  # but minisegnet's reused work buffers are: they are allocated again below
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the resident high-water mark (Linux >= 4.0)
    before = _proc_status("VmRSS")
    fn()
    peak = _proc_status("VmHWM") - before
    traced = None
    if name != "torch":
        free_scratch()
        tracemalloc.start()
        fn()
        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    print(json.dumps({"rss_peak": peak, "tracemalloc_peak": traced}))


def measure_memory(names, threads=2):
    """{name: {"rss_peak": bytes, "tracemalloc_peak": bytes or None}} on MEMORY_SHAPE."""
    env = dict(thread_env(threads), GLIBC_TUNABLES="glibc.malloc.mmap_threshold=65536")
    out = {}
    for name in names:
        cmd = [sys.executable, __file__, "--memory-child", name, "--threads", str(threads)]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        out[name] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


# ---- the table ---------------------------------------------------------------------------------


def run(quick=False, rounds=None, memory=None, threads=2, pause=None, workers=None, check=True):
    """Benchmark every shape in separate processes; a list of row dicts (times in seconds, ratios to torch).

    ``quick`` shrinks the shapes (N=1, H<=8, channels<=16), runs one round of a few calls without pauses:
    it checks the code runs. ``workers`` defaults to every implementation (torch when installed).
    ``check``: first compare each implementation's outputs with the textbook version's.
    """
    workers = list(workers or [w for w in BUILDERS if w != "torch" or import_torch() is not None])
    shapes = [(op, 1, min(C, 16), min(OC, 16), min(H, 8)) if quick else (op, N, C, OC, H) for op, N, C, OC, H in SHAPES]
    args = ["--warmup", "1", "--min-calls", "2", "--min-time", "0"] if quick else []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "conv.npz"
        write_data(shapes, data)
        if check:
            check_outputs(__file__, [w for w in workers if w in CHECKED], data, "textbook", threads=threads)
        rounds, pause = rounds or (1 if quick else 5), (0.0 if quick else 2.0) if pause is None else pause
        results, infos = run_interleaved(
            __file__, workers, data, rounds=rounds, pause=pause, threads=threads, args=args
        )
    rows = []
    for i, shape in enumerate(shapes):
        row = dict(zip(("op", "N", "C", "OC", "H"), shape))
        for w in workers:
            res = results[w][label(i, *shape)]
            row[f"{w}_s"], row[f"{w}_iqr_s"], row[f"{w}_rounds_s"] = res.median, res.iqr, res.round_medians
        if "torch" in workers:
            for w in workers:
                row["ratio" if w == "minisegnet" else f"{w}_ratio"] = row[f"{w}_s"] / row["torch_s"]
        rows.append({**row, "workers": infos})  # what each worker process ran with
    if memory is None:
        memory = not quick
    if memory:
        names = [w for w in ("minisegnet", "textbook", "torch") if w in workers]
        rows.append({"op": "memory", "shape": MEMORY_SHAPE, **measure_memory(names, threads)})
    return rows


def versions():
    model = "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": f"{model}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
        "load average (1, 5, 15 min) at the end": ", ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


def cell(r, w):
    """median (IQR) [lowest and highest round median], in ms."""
    rounds = r[f"{w}_rounds_s"]
    return f"{r[f'{w}_s'] * 1e3:.2f} ({r[f'{w}_iqr_s'] * 1e3:.2f}) [{min(rounds) * 1e3:.2f}-{max(rounds) * 1e3:.2f}]"


def geomean(xs):
    return float(np.exp(np.log(np.asarray(xs)).mean()))


def markdown(rows):
    """The tables as Markdown: each worker's times and its ratio to torch, geometric mean and worst, then who ran."""
    timed = [r for r in rows if r["op"] != "memory"]
    workers = [k[:-2] for k in timed[0] if k.endswith("_s") and not k.endswith(("_iqr_s", "_rounds_s"))]
    others = [w for w in workers if w != "torch"] if "torch" in workers else []
    head = "| op | N | C -> OC | H -> OH | " + " | ".join(f"{w} ms" for w in workers) + " |"
    head += "".join(f" {w} / torch |" for w in others)
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in timed:
        oh = 2 * r["H"] if r["op"] == "convT2x2" else r["H"]
        line = f"| {r['op']} | {r['N']} | {r['C']} -> {r['OC']} | {r['H']} -> {oh} | "
        line += " | ".join(cell(r, w) for w in workers) + " |"
        lines.append(line + "".join(f" {r[f'{w}_s'] / r['torch_s']:.2f} |" for w in others))
    lines += ["", "Times: median of every call (interquartile range) [lowest-highest median of one round's process]."]
    for w in others:
        ratios = [r[f"{w}_s"] / r["torch_s"] for r in timed]
        worst = timed[int(np.argmax(ratios))]
        lines.append(
            f"- {w} / torch: geometric mean {geomean(ratios):.2f}, worst {max(ratios):.2f} "
            f"({worst['op']} {worst['N']}, {worst['C']}->{worst['OC']}, {worst['H']})"
        )
    lines += ["", "Each worker process ran with:", ""]
    lines += [f"- {w}: {json.dumps(info)}" for w, info in timed[0]["workers"].items()]
    for r in rows:
        if r["op"] == "memory":
            lines += ["", f"Peak extra memory, forward + backward on {r['shape'][1:]} (N, C, OC, H):", ""]
            for name in ("minisegnet", "textbook", "torch"):
                if name in r:
                    m = r[name]
                    traced = f", tracemalloc {m['tracemalloc_peak'] / 2**20:.1f} MiB" if m["tracemalloc_peak"] else ""
                    lines.append(f"- {name}: {m['rss_peak'] / 2**20:.1f} MiB resident{traced}")
            if "torch" in r and "minisegnet" in r:
                ratio = r["minisegnet"]["rss_peak"] / r["torch"]["rss_peak"]
                lines.append(f"- minisegnet / torch: {ratio:.2f}")
    return "\n".join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--worker" in argv:
        return worker_main(BUILDERS, argv)
    parser = interleaved_parser(__doc__.split("\n")[0], "tiny shapes, one round: checks that it runs", "implementation")
    parser.add_argument("--workers", default=None, help=f"comma-separated subset of {','.join(BUILDERS)}")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        return _memory_child(args.memory_child, args.threads)
    workers = args.workers.split(",") if args.workers else None
    if workers and not set(workers) <= set(BUILDERS):
        parser.error(f"--workers takes names from {','.join(BUILDERS)}, got {args.workers}")
    memory = False if args.no_memory else None
    rows = run(args.quick, args.rounds, memory, args.threads, args.pause, workers)
    print("\n".join(f"{k}: {v}" for k, v in versions().items()), end="\n\n")
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
