"""Speed and memory of minisegnet's conv2d / conv_transpose2d, side by side with PyTorch and a textbook version.

    python benchmarks/bench_conv.py            # the full table (a few minutes on 2 cores)
    python benchmarks/bench_conv.py --quick    # tiny shapes, one repeat: checks that it runs

Each row times forward + backward (gradients for input, weight and bias) in float32. The
implementations run interleaved, in a rotating order, within each repeat, so a burst of load
from another process hits all of them alike; the table reports the median over repeats after
warm-up. Threads (default 2): minisegnet's own (``minisegnet.set_num_threads``, one BLAS thread
each), torch's, and BLAS's for the textbook version. PyTorch is skipped when it is not
installed. "textbook" is the usual NumPy version, written below: im2col by a loop over kernel
offsets into a fresh (N, C, KH, KW, OH, OW) array, then ``np.tensordot``, which reorders its
operands into new arrays before it calls BLAS.

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
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # timing.py, when imported from elsewhere (the tests)

import minisegnet.ops as F  # noqa: E402
from minisegnet import Tensor  # noqa: E402
from minisegnet.ops.fast.workspace import free_scratch  # noqa: E402
from minisegnet.threads import set_num_threads  # noqa: E402

from timing import blas_pools  # noqa: E402

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


# ---- one case: inputs and a forward + backward closure per implementation ------------------------


def make_case(op, N, C, OC, H, seed=0, threads=2):
    """{name: zero-argument function running forward + backward}, float32 inputs drawn once."""
    rng = np.random.default_rng(seed)
    transposed = op == "convT2x2"
    K, S, P = (2, 2, 0) if transposed else (3, 1, 1)
    OH = 2 * H if transposed else H
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    W = rng.standard_normal((C, OC, K, K) if transposed else (OC, C, K, K), dtype=np.float32) * 0.1
    b = rng.standard_normal(OC, dtype=np.float32)
    gy = rng.standard_normal((N, OC, OH, OH), dtype=np.float32)

    mx, mW, mb = (Tensor(a.copy(), requires_grad=True) for a in (x, W, b))
    op_fn = F.conv_transpose2d if transposed else F.conv2d

    def minisegnet_run():  # gradients are dropped at the end so each run starts from the same memory
        op_fn(mx, mW, mb, S, P).backward(gy)
        mx.grad = mW.grad = mb.grad = None

    tb_fn = textbook_conv_transpose if transposed else textbook_conv
    cases = {"minisegnet": minisegnet_run, "textbook": lambda: tb_fn(x, W, b, gy, S, P)}
    cases["products"] = products_only(N, C, OC, H, K, transposed, rng)
    try:
        import torch
    except ImportError:
        return cases
    torch.set_num_threads(threads)
    tx, tW, tb = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, W, b))
    tgy = torch.from_numpy(gy)
    t_fn = torch.nn.functional.conv_transpose2d if transposed else torch.nn.functional.conv2d

    def torch_run():
        t_fn(tx, tW, tb, S, P).backward(tgy)
        tx.grad = tW.grad = tb.grad = None

    cases["torch"] = torch_run
    return cases


def time_interleaved(cases, repeats, warmup=2, clock=time.perf_counter, block=0.3, settle=0.1, setups=None):
    """{name: median seconds per call}: every repeat runs each case for one block, in an order that rotates.

    ``setups`` = {name: function} run before each of that case's blocks (its thread settings).
    A block calls one case back to back for ``block`` seconds (at least 3 calls) and keeps only the
    calls that start after the first ``settle`` seconds. Measured on this 2-core machine: after
    PyTorch returns, its idle OpenMP threads keep spinning for a while (and OpenBLAS's do the same
    after NumPy), so a call that directly follows the other library's ran up to 2x slower, for
    both libraries. Alternating single calls, as this benchmark did first, timed that interference.
    """
    names, setups = list(cases), setups or {}
    for _ in range(warmup):
        for name in names:
            setups.get(name, lambda: None)()
            cases[name]()
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            setups.get(name, lambda: None)()
            start, kept, calls = time.perf_counter(), [], 0
            while calls < 3 or time.perf_counter() - start < block:
                t0, c0 = time.perf_counter(), clock()
                cases[name]()
                calls += 1
                if t0 - start >= settle:
                    kept.append(clock() - c0)
            times[name] += kept or [clock() - c0]  # every call outlasted the settling time: keep the last
    return {name: float(np.median(ts)) for name, ts in times.items()}


# ---- memory: one implementation per fresh process ----------------------------------------------


def _proc_status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


def _memory_child(name, threads):
    set_num_threads(threads)
    fn = make_case(*MEMORY_SHAPE, threads=threads)[name]
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
    env = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.mmap_threshold=65536")
    out = {}
    for name in names:
        cmd = [sys.executable, __file__, "--memory-child", name, "--threads", str(threads)]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        out[name] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


# ---- the table ---------------------------------------------------------------------------------


def run(quick=False, repeats=None, memory=None, threads=2):
    """Benchmark every shape; return a list of row dicts (times in seconds, ratios to torch).

    ``quick`` shrinks the shapes (N=1, H<=8, channels<=16) and does one repeat: it checks the code
    runs. ``threads`` is minisegnet's (``set_num_threads``), torch's and the textbook version's BLAS
    thread count; ``threads=1`` also times the CPU time of this thread, which other processes
    competing for the cores barely disturb (the wall-clock median is used otherwise).
    """
    import threadpoolctl

    repeats = repeats or (1 if quick else 15)
    quick_blocks = {"block": 0.0, "settle": 0.0} if quick else {}
    clock = time.thread_time if threads == 1 else time.perf_counter
    rows = []
    setups = {  # minisegnet: its own threads, each with one BLAS thread; the textbook version: BLAS's threads
        "minisegnet": lambda: set_num_threads(threads),
        "textbook": lambda: (set_num_threads(0), threadpoolctl.threadpool_limits(threads)),
    }
    setups["products"] = setups["textbook"]  # BLAS's own threads too
    for op, N, C, OC, H in SHAPES:
        if quick:
            N, C, OC, H = 1, min(C, 16), min(OC, 16), min(H, 8)
        cases = make_case(op, N, C, OC, H, threads=threads)
        times = time_interleaved(cases, repeats, warmup=1 if quick else 2, clock=clock, setups=setups, **quick_blocks)
        row = {"op": op, "N": N, "C": C, "OC": OC, "H": H, **{f"{k}_s": v for k, v in times.items()}}
        if "torch" in times:
            row["ratio"] = times["minisegnet"] / times["torch"]
            row["textbook_ratio"] = times["textbook"] / times["torch"]
            row["products_ratio"] = times["products"] / times["torch"]
        rows.append(row)
    set_num_threads(0)
    if memory is None:
        memory = not quick
    if memory:
        names = ["minisegnet", "textbook"] + (["torch"] if "torch_s" in rows[0] else [])
        rows.append({"op": "memory", "shape": MEMORY_SHAPE, **measure_memory(names, threads)})
    return rows


def versions():
    model = "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    info = {
        "cpu": f"{model}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas_pools(),
        "date": datetime.date.today().isoformat(),
        "load average (1, 5, 15 min) at the end": ", ".join(f"{v:.2f}" for v in os.getloadavg()),
    }
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = "not installed"
    return info


def markdown(rows):
    """The table as Markdown: times in ms, ratio = minisegnet / torch, geometric mean and worst."""
    timed = [r for r in rows if r["op"] != "memory"]
    has_torch = "torch_s" in timed[0]
    head = "| op | N | C -> OC | H -> OH | minisegnet ms | textbook ms | products ms |"
    head += " torch ms | minisegnet / torch | textbook / torch | products / torch |" if has_torch else ""
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in timed:
        oh = 2 * r["H"] if r["op"] == "convT2x2" else r["H"]
        line = f"| {r['op']} | {r['N']} | {r['C']} -> {r['OC']} | {r['H']} -> {oh} |"
        line += f" {r['minisegnet_s'] * 1e3:.2f} | {r['textbook_s'] * 1e3:.2f} | {r['products_s'] * 1e3:.2f} |"
        if has_torch:
            line += f" {r['torch_s'] * 1e3:.2f} | {r['ratio']:.2f} | {r['textbook_ratio']:.2f} |"
            line += f" {r['products_ratio']:.2f} |"
        lines.append(line)
    if has_torch:
        ratios = np.array([r["ratio"] for r in timed])
        tb = np.array([r["textbook_ratio"] for r in timed])
        floor = np.array([r["products_ratio"] for r in timed])
        worst = timed[int(ratios.argmax())]
        lines += [
            "",
            f"minisegnet / torch: geometric mean {np.exp(np.log(ratios).mean()):.2f}, worst {ratios.max():.2f} "
            f"({worst['op']} {worst['N']}, {worst['C']}->{worst['OC']}, {worst['H']}); "
            f"textbook / torch: geometric mean {np.exp(np.log(tb).mean()):.2f}, worst {tb.max():.2f}; "
            f"products alone / torch: geometric mean {np.exp(np.log(floor).mean()):.2f}, worst {floor.max():.2f}",
        ]
    for r in rows:
        if r["op"] == "memory":
            lines += ["", f"Peak extra memory, forward + backward on {r['shape'][1:]} (N, C, OC, H):", ""]
            for name in ("minisegnet", "textbook", "torch"):
                if name in r:
                    m = r[name]
                    traced = f", tracemalloc {m['tracemalloc_peak'] / 2**20:.1f} MiB" if m["tracemalloc_peak"] else ""
                    lines.append(f"- {name}: {m['rss_peak'] / 2**20:.1f} MiB resident{traced}")
            if "torch" in r:
                ratio = r["minisegnet"]["rss_peak"] / r["torch"]["rss_peak"]
                lines.append(f"- minisegnet / torch: {ratio:.2f}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, one repeat")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2, help="minisegnet, BLAS, torch threads; 1: CPU time")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        return _memory_child(args.memory_child, args.threads)
    rows = run(quick=args.quick, repeats=args.repeats, memory=False if args.no_memory else None, threads=args.threads)
    print("\n".join(f"{k}: {v}" for k, v in versions().items()), end="\n\n")
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
