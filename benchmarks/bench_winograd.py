"""Winograd against minisegnet's default convolution, per 3x3 U-Net shape and per phase (forward, gx, gW).

    python benchmarks/bench_winograd.py            # the full table (about 10 minutes on 2 cores)
    python benchmarks/bench_winograd.py --quick    # tiny shapes, one round: checks that it runs

Workers (each in its own processes, timing.run_interleaved: rounds in a rotating order, a pause between
processes, the same arrays from one .npz, the same threads): "default" is minisegnet's default path (the
helpers of ops/conv.py that Conv2d calls); "winograd2" and "winograd4" are ops/fast/winograd.py with
F(2x2, 3x3) and F(4x4, 3x3), the weight gradient in the transformed domain. Every phase of every case is
checked against the default path's outputs (float32, relative error <= 1e-4) before timing. The ratio
columns are Winograd / default: below 1, Winograd is faster at that shape and phase.
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_conv import SHAPES, geomean, versions  # noqa: E402

from timing import Impl, check_outputs, interleaved_parser, run_interleaved, worker_main  # noqa: E402

PHASES = ("fwd", "gx", "gW")
WORKERS = ("default", "winograd2", "winograd4")


def write_data(shapes, path, seed=0):
    """x, W, b, gy (float32) per shape, and the shapes as JSON."""
    rng = np.random.default_rng(seed)
    arrays = {"shapes": np.array(json.dumps(shapes))}
    for i, (N, C, OC, H) in enumerate(shapes):
        arrays[f"{i}.x"] = rng.standard_normal((N, C, H, H), dtype=np.float32)
        arrays[f"{i}.W"] = rng.standard_normal((OC, C, 3, 3), dtype=np.float32) * np.float32(np.sqrt(2 / (9 * C)))
        arrays[f"{i}.b"] = rng.standard_normal(OC, dtype=np.float32)
        arrays[f"{i}.gy"] = rng.standard_normal((N, OC, H, H), dtype=np.float32)
    np.savez(path, **arrays)


def case_name(shape, phase):
    N, C, OC, H = shape
    return f"({N}, {C}->{OC}, {H}x{H}) {phase}"


def build(data, args):
    """The three phases of every shape for ``args.worker``, padding 1, as Impls returning their output."""
    from minisegnet import set_num_threads
    from minisegnet.ops.fast import conv, winograd

    set_num_threads(0)  # the library's default: BLAS with the process's threads
    conv.WINOGRAD_CHANNELS = 1 << 30  # "default" is the column path on every shape, whatever the Winograd rule says
    conv_args = ((1, 1), (1, 1), (1, 1))  # stride, padding, dilation
    m = 2 if args.worker == "winograd2" else 4
    out = []
    for i, shape in enumerate(json.loads(str(data["shapes"]))):
        x, W, b, gy = (data[f"{i}.{k}"] for k in ("x", "W", "b", "gy"))
        if args.worker == "default":
            fns = {
                "fwd": lambda x=x, W=W, b=b: (conv.conv_forward(x, W, b, conv_args),),
                "gx": lambda gy=gy, W=W, s=x.shape: (conv.conv_input_grad(gy, W, s, conv_args),),
                "gW": lambda x=x, gy=gy, s=W.shape: (conv.conv_weight_grad(x, gy, s, conv_args),),
            }
        else:
            fns = {
                "fwd": lambda x=x, W=W, b=b: (winograd.conv2d_forward(x, W, b, 1, m),),
                "gx": lambda gy=gy, W=W, s=x.shape: (winograd.conv2d_input_grad(gy, W, s, 1, m),),
                "gW": lambda x=x, gy=gy: (winograd.conv2d_weight_grad(x, gy, 1, m),),
            }
        out += [Impl(case_name(shape, phase), args.worker, "cpu", fns[phase]) for phase in PHASES]
    return out


def run(quick=False, rounds=None, pause=None, threads=2):
    """One row per (shape, phase): each worker's median seconds, and Winograd / default."""
    shapes = [(N, C, OC, H) for op, N, C, OC, H in SHAPES if op == "conv3x3"]
    if quick:
        shapes = [(1, min(C, 16), min(OC, 16), min(H, 8)) for N, C, OC, H in shapes[:2]]
    args = ["--warmup", "1", "--min-calls", "2", "--min-time", "0"] if quick else []
    rounds, pause = rounds or (1 if quick else 5), (0.0 if quick else 2.0) if pause is None else pause
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "winograd.npz"
        write_data(shapes, data)
        check_outputs(__file__, list(WORKERS[1:]), data, "default", threads=threads, args=args)
        results, infos = run_interleaved(
            __file__, list(WORKERS), data, rounds=rounds, pause=pause, threads=threads, args=args
        )
    rows = []
    for shape in shapes:
        for phase in PHASES:
            row = {"shape": shape, "phase": phase}
            for w in WORKERS:
                res = results[w][case_name(shape, phase)]
                row[f"{w}_s"], row[f"{w}_iqr_s"] = res.median, res.iqr
            rows += [{**row, **{f"{w}_ratio": row[f"{w}_s"] / row["default_s"] for w in WORKERS[1:]}}]
    return rows, infos


def markdown(rows, infos):
    head = "| (N, C->OC, HxW) | phase | " + " | ".join(f"{w} ms (IQR)" for w in WORKERS) + " |"
    head += "".join(f" {w} / default |" for w in WORKERS[1:])
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        N, C, OC, H = r["shape"]
        cells = " | ".join(f"{r[f'{w}_s'] * 1e3:.2f} ({r[f'{w}_iqr_s'] * 1e3:.2f})" for w in WORKERS)
        ratios = "".join(f" {r[f'{w}_ratio']:.2f} |" for w in WORKERS[1:])
        lines.append(f"| ({N}, {C}->{OC}, {H}x{H}) | {r['phase']} | {cells} |{ratios}")
    lines.append("")
    for w in WORKERS[1:]:
        for phase in PHASES:
            ratios = [r[f"{w}_ratio"] for r in rows if r["phase"] == phase]
            lines.append(
                f"- {w} / default, {phase}: geometric mean {geomean(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
            )
    lines += ["", "Each worker process ran with:", ""] + [f"- {w}: {json.dumps(i)}" for w, i in infos.items()]
    return "\n".join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--worker" in argv:
        return worker_main(dict.fromkeys(WORKERS, build), argv)
    parser = interleaved_parser(__doc__.split("\n")[0], "two tiny shapes, one round: checks that it runs", "worker")
    parser.add_argument("--out", help="also write the Markdown table to this file")
    args = parser.parse_args(argv)
    rows, infos = run(args.quick, args.rounds, args.pause, args.threads)
    text = "\n".join(f"{k}: {v}" for k, v in versions().items()) + "\n\n" + markdown(rows, infos)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
