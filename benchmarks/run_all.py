"""Run the benchmark suite and write Markdown tables, JSON rows and PNG plots: ``minisegnet bench`` calls ``main``.

    python benchmarks/run_all.py [--device cpu|gpu|both] [--compare-torch] [--quick] [--out DIR]
                                 [--only kernels,train,scaling,dtype] [--threads N]

Files are named ``<bench>_<devices>.md`` (devices "cpu", "gpu" or "cpu+gpu"), plus ``.json`` with every sample and
``.png`` plots; ``--quick`` runs add ``_quick`` to the names (ignored by git: they are smoke tests, not results).
"""

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the bench scripts import each other and timing.py as plain modules
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import minisegnet  # noqa: E402
from minisegnet import backend  # noqa: E402

from timing import blas_pools, import_torch, resolve_devices, set_threads, settings  # noqa: E402

BENCHES = {
    "kernels": ("bench_kernels", "Kernels: forward, and forward + backward"),
    "train": ("bench_train_step", "U-Net training step (forward, CE + soft Dice, backward, Adam)"),
    "scaling": ("bench_scaling", "Scaling: conv2d 3x3 forward + backward against pixels and channels"),
    "dtype": ("bench_dtype", "float32 against float64"),
}
COLUMNS = ("numpy", "torch cpu", "cupy", "torch gpu")
RATIOS = (
    ("numpy", "torch cpu", "numpy / torch cpu"),
    ("numpy", "cupy", "numpy / cupy"),
    ("cupy", "torch gpu", "cupy / torch gpu"),
)
CAVEAT = (
    "Measured on a shared machine: other processes may run on the same cores. Implementations are interleaved "
    "sample by sample (A B C A B C ...) so load bursts hit all of them, and the median with its interquartile range "
    "is reported; ratios are more trustworthy than absolute times."
)


# ---- machine description -------------------------------------------------------------------


def _cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


LOAD = "load average (1, 5, 15 min)"


def load_average():
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def code_version():
    """The git commit benchmarked, with "+ local changes" when the working tree differs from it."""
    try:
        git = ["git", "-C", str(HERE.parent)]
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
        if head.returncode != 0:
            return "?"
        return head.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_info(torch=None, threads=None):
    """A dict naming the machine, the GPU (or "no GPU"), library versions, BLAS and the date."""
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="minutes"),
        "cpu": f"{_cpu_model()}, {os.cpu_count()} logical cores",
        "threads": threads,
        "gpu": "no GPU",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "minisegnet": f"{minisegnet.__version__} (commit {code_version()})",
        "torch": getattr(torch, "__version__", "not installed"),
        "cupy": getattr(backend.cp, "__version__", "not installed"),
        "blas": blas_pools(),
        LOAD: load_average(),
    }
    if backend.cupy_available():
        props = backend.cp.cuda.runtime.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        cuda = backend.cp.cuda.runtime.runtimeGetVersion()
        info["gpu"] = f"{name}, {props['totalGlobalMem'] / 2**30:.0f} GiB, CUDA runtime {cuda}"
    elif torch is not None and torch.cuda.is_available():
        info["gpu"] = f"{torch.cuda.get_device_name(0)} (seen by torch only: CuPy unavailable)"
    return info


def header(title, info, argv, cfg, rows):
    lines = [f"# {title}", "", "| machine | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in info.items()]
    counts = sorted({r["repeat"] for r in rows}) or [0]
    samples = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    if "rounds" in rows[0]:
        lines += [
            f"| timer | separate processes: {rows[0]['rounds']} rounds, each starting one process per library in a "
            f"rotating order with {rows[0]['pause_s']} s between them; per process warm-up, then timed calls "
            "(synchronised); median (IQR) of every call |"
        ]
    else:
        lines += [
            f"| timer | warm-up, then {samples} samples per case, each >= {cfg['min_time']} s of back-to-back calls "
            "(synchronised), interleaved across implementations; median (IQR) per call |"
        ]
    lines += [f"| command | `python benchmarks/run_all.py {shlex.join(argv)}` |", "", CAVEAT, ""]
    return lines


# ---- tables ---------------------------------------------------------------------------------


def label(row):
    return row["impl"] if row["impl"] != "torch" else f"torch {row['device']}"


def table(headers, body):
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return out + ["| " + " | ".join(str(c) for c in line) + " |" for line in body]


def ms(row):
    return f"{row['median_ms']:.3g} ({row['iqr_ms']:.2g})" if row else ""


def mib(x):
    return "" if x is None else f"{x:.1f}"


def pivot(rows, keys):
    """{key tuple: {label: row}} in first-seen order."""
    groups = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), {})[label(r)] = r
    return groups


def time_table(rows, keys):
    """Median ms (IQR) per implementation side by side, and the ratios whose both sides were measured."""
    groups = pivot(rows, keys)
    cols = [c for c in COLUMNS if any(c in g for g in groups.values())]
    ratios = [(a, b, name) for a, b, name in RATIOS if a in cols and b in cols]
    body = []
    for key, g in groups.items():
        cells = [ms(g.get(c)) for c in cols]
        cells += [f"{g[a]['median_ms'] / g[b]['median_ms']:.2f}" if a in g and b in g else "" for a, b, _ in ratios]
        body.append([*key, *cells])
    return table([*keys, *(f"{c} ms (IQR)" for c in cols), *(name for _, _, name in ratios)], body)


def memory_table(rows, keys):
    body = [
        [*(r[k] for k in keys), label(r), mib(r["peak_traced_mib"]), mib(r["peak_rss_mib"]), mib(r["peak_device_mib"])]
        for r in rows
    ]
    return table([*keys, "impl", "traced peak MiB", "RSS growth MiB", "device peak MiB"], body)


def geomean(xs):
    xs = list(xs)
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def headline(bench, rows):
    """Sentences with the ratios a reader looks for first."""
    lines = []
    if bench == "train":
        for key, g in pivot(rows, ("shape",)).items():
            for a, b, name in RATIOS:
                if a in g and b in g:
                    lines.append(f"- {name} (U-Net step {key[0]}): **{g[a]['median_ms'] / g[b]['median_ms']:.2f}x**")
    if bench == "kernels":
        groups = pivot([r for r in rows if r["phase"] == "fwd+bwd" or r["op"].startswith(("im2", "col2"))], ("case",))
        for a, b, name in RATIOS:
            rs = [g[a]["median_ms"] / g[b]["median_ms"] for g in groups.values() if a in g and b in g]
            if rs:
                lines.append(
                    f"- {name}, geometric mean over {len(rs)} kernels: **{geomean(rs):.2f}x** "
                    f"(from {min(rs):.2f}x to {max(rs):.2f}x)"
                )
    if bench == "scaling":
        from bench_scaling import slopes

        for name, s in slopes(rows).items():
            lines.append(f"- {name}: log-log slope over the three largest pixel counts **{s:.2f}** (1 = linear)")
    if bench == "dtype":
        for op, lab in dict.fromkeys((r["op"], label(r)) for r in rows):
            by = {r["dtype"]: r["median_ms"] for r in rows if (r["op"], label(r)) == (op, lab)}
            if {"float32", "float64"} <= set(by):
                lines.append(f"- {op}, {lab}: float64 / float32 = **{by['float64'] / by['float32']:.2f}x**")
    return lines


def dtype_table(rows):
    body = []
    for op, shape, lab in dict.fromkeys((r["op"], r["shape"], label(r)) for r in rows):
        by = {r["dtype"]: r for r in rows if (r["op"], r["shape"], label(r)) == (op, shape, lab)}
        f32, f64 = by.get("float32"), by.get("float64")
        ratio = f"{f64['median_ms'] / f32['median_ms']:.2f}" if f32 and f64 else ""
        body.append([op, shape, lab, ms(f32), ms(f64), ratio])
    return table(["op", "shape", "impl", "float32 ms (IQR)", "float64 ms (IQR)", "float64 / float32"], body)


def report(bench, rows, info, argv, cfg):
    """The Markdown text of one benchmark's results."""
    lines = header(BENCHES[bench][1], info, argv, cfg, rows)
    lines += ["## Headline", "", *(headline(bench, rows) or ["- (no pair of implementations to compare)"]), ""]
    if bench == "train":
        lines += ["Each worker process ran with:", ""]
        lines += [f"- {label(r)}: {json.dumps(r['worker'])}" for r in rows if "worker" in r] + [""]
    lines += ["## Times", ""]
    if bench == "kernels":
        lines += time_table(rows, ("op", "shape", "phase"))
    elif bench == "train":
        lines += time_table(rows, ("shape", "params"))
    elif bench == "scaling":
        lines += time_table(rows, ("sweep", "x", "shape"))
    else:
        lines += dtype_table(rows)
    if bench in ("kernels", "train"):
        lines += [
            "",
            "## Peak memory of one call",
            "",
            *memory_table(rows, ("case", "phase") if bench == "kernels" else ("case",)),
        ]
    lines += ["", "Ratios above 1 mean the left implementation is slower. Times are per call, in milliseconds.", ""]
    return "\n".join(lines)


# ---- the command line --------------------------------------------------------------------------


def parse(argv):
    p = argparse.ArgumentParser(prog="minisegnet bench", description="CPU vs GPU (and PyTorch) benchmarks.")
    p.add_argument("--device", choices=("cpu", "gpu", "both"), default="cpu", help="where to run (default cpu)")
    p.add_argument("--compare-torch", action="store_true", help="time PyTorch on the same device(s) as well")
    p.add_argument("--quick", action="store_true", help="tiny sizes and 3 samples: a smoke test, not a measurement")
    p.add_argument(
        "--out", default=str(HERE / "results"), help="folder for .md/.json/.png (default benchmarks/results)"
    )
    p.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {','.join(BENCHES)}")
    p.add_argument("--threads", type=int, default=None, help="BLAS and torch threads (default: every core)")
    args = p.parse_args(argv)
    args.only = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = [b for b in args.only if b not in BENCHES]
    if unknown or not args.only:
        p.error(f"--only takes names from {','.join(BENCHES)}, got {unknown or args.only}")
    return args


def main(argv=None):
    """Run the chosen benchmarks, write their files into ``--out``, print the headlines; return an exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    try:
        devices = resolve_devices(args.device)
    except (RuntimeError, ValueError) as err:
        print(f"minisegnet bench: {err}", file=sys.stderr)
        return 2
    if args.device == "both" and devices == ["cpu"]:
        print("minisegnet bench: no usable GPU (CuPy missing or no device): running the CPU half only")
    torch = import_torch() if args.compare_torch else None
    if args.compare_torch and torch is None:
        print("minisegnet bench: PyTorch is not installed: comparing minisegnet backends only")
    threads = set_threads(args.threads)
    info = machine_info(torch, threads)
    tag = "+".join(devices) + ("_quick" if args.quick else "")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for bench in args.only:
        module = __import__(BENCHES[bench][0])
        print(f"== {bench} on {'+'.join(devices)} ...", flush=True)
        extra = {"threads": threads} if bench == "train" else {}  # its workers are processes: name their threads
        rows = module.run(args.device, torch is not None, args.quick, **extra)
        info[LOAD] = load_average()  # at the end of this benchmark: how busy the machine was meanwhile
        (out / f"{bench}_{tag}.md").write_text(report(bench, rows, info, argv, settings(args.quick)))
        (out / f"{bench}_{tag}.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=1))
        if hasattr(module, "plot"):
            module.plot(rows, out / f"{bench}_{tag}.png")
        for line in headline(bench, rows):
            print(line.replace("**", ""))
    print(f"wrote {', '.join(f'{b}_{tag}.md' for b in args.only)} into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
