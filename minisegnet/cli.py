"""The command line: ``minisegnet <command> ...`` and ``python -m minisegnet <command> ...``.

minisegnet train [--model unet --data shapes --epochs 12 --device cpu ...]   train, write runs/<name>/
minisegnet evaluate runs/unet-shapes/checkpoint_best.npz                    per-class IoU and Dice
minisegnet predict runs/unet-shapes/checkpoint_best.npz photo.png ...       figures, masks, overlays
minisegnet summary --model unet --depth 3 --size 64                          a table of the layers
minisegnet gradcheck                                                        every op and loss, float64
minisegnet bench --device both --compare-torch                              CPU against GPU (and torch)
minisegnet export runs/unet-shapes/checkpoint_best.npz --to onnx            a PyTorch (.pt) or ONNX file

Exit codes: 0 done, 1 the environment failed (no GPU, disk full, out of memory, a folder not writable),
2 bad input (a flag, a file, a checkpoint), 3 training diverged, 130 interrupted. Errors are one line;
``--debug`` (before the command) or ``MINISEGNET_DEBUG=1`` shows the traceback instead. ``--device``
defaults to ``MINISEGNET_DEVICE`` (cpu when unset).
"""

import argparse
import dataclasses
import errno
import os
import sys
from pathlib import Path

from . import __version__


def _add_config_options(parser):
    # One option per TrainConfig field, so the CLI and the config can never drift apart. Flags not given are
    # left out of the parsed arguments (SUPPRESS): what was given explicitly wins over --quick and --resume checks.
    from .recipe import HELP, TrainConfig

    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        shown = {"name": "", "device": " (default: MINISEGNET_DEVICE, else cpu)"}.get(
            field.name, f" (default: {field.default})"
        )
        if field.type in (bool, "bool"):
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=HELP[field.name]
            )
        else:
            kind = {"int": int, "float": float}.get(getattr(field.type, "__name__", field.type), str)
            parser.add_argument(
                flag, type=kind, default=argparse.SUPPRESS, metavar=field.name.upper(), help=HELP[field.name] + shown
            )


MODEL_FLAGS = ("model", "block", "up", "base_channels", "depth", "num_classes")
MAX_WIDTH = 4096  # channels of a model's widest layer that `summary` builds from flags (a bottleneck of 4,096: ~0.9 GB)


def _add_model_options(parser):
    # The TrainConfig fields that describe a network, for `summary`; left out of the arguments when not given.
    from .recipe import HELP, TrainConfig

    for name in MODEL_FLAGS:
        kind = str if name in ("model", "block", "up") else int
        flag = "--" + name.replace("_", "-")
        text = f"{HELP[name]} (default: {getattr(TrainConfig, name)})"
        text = "classes the model scores (default: 6, the shapes data's)" if name == "num_classes" else text
        parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, metavar=name.upper(), help=text)


def _env_device():
    return os.environ.get("MINISEGNET_DEVICE", "").strip().lower() or "cpu"


def cmd_train(args):
    from . import runs
    from .recipe import TrainConfig
    from .train import Diverged, train

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    cfg = TrainConfig(**{"device": _env_device(), **given})
    try:
        summary = train(cfg, resume=args.resume, progress=not args.no_progress, explicit=list(given))
    except KeyboardInterrupt:
        if (cfg.run_dir / "checkpoint_last.npz").exists():
            print(f"\ninterrupted; continue with: {runs.resume_command(cfg)}", file=sys.stderr)
        else:
            print(f"\ninterrupted before the first checkpoint: {cfg.run_dir} was not written", file=sys.stderr)
        return 130
    except Diverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    final = summary["final"]
    print(
        f"done in {summary['train_seconds']:.0f} s: val mIoU {final['miou']:.3f}, foreground mIoU "
        f"{final['fg_miou']:.3f}, pixel accuracy {final['pixel_acc']:.3f} (from the validation set's confusion "
        f"matrix; a class absent from prediction and target is left out of the means; per-image mIoU "
        f"{final.get('miou_per_image', float('nan')):.3f}); peak memory "
        f"{summary['peak_memory_mb']:.0f} MB; results in {cfg.run_dir}/"
    )
    return 0


def cmd_evaluate(args):
    from .evaluate import evaluate_checkpoint

    evaluate_checkpoint(args.checkpoint, data=args.data, device=args.device, json_path=args.json)
    return 0


def _count(n, noun):
    return f"{n} {noun}" + ("" if n == 1 else "s")


def cmd_predict(args):
    from .predict import default_out, predict_files

    out = Path(args.out) if args.out else default_out(args.checkpoint)
    done = []  # files written per image, as they are written

    def report(source, paths):
        done.append(len(paths))
        print(f"{source} -> {', '.join(map(str, paths))}", flush=True)

    try:
        predict_files(args.checkpoint, args.inputs, out, args.device, args.size, args.force, report)
    except KeyboardInterrupt:
        written = f"the {_count(sum(done), 'file')} of {_count(len(done), 'image')} listed above" if done else "no file"
        print(f"interrupted: {written} written to {out}/", file=sys.stderr)
        return 130
    print(f"wrote {_count(sum(done), 'file')} for {_count(len(done), 'image')} to {out}/")
    return 0


def cmd_summary(args):
    from .data.shapes import CLASS_NAMES
    from .recipe import TrainConfig, build_model, side_multiple
    from .runs import load_model
    from .summary import summary

    flags = {k: getattr(args, k) for k in MODEL_FLAGS if hasattr(args, k)}
    if args.checkpoint and flags:
        flag = "--" + next(iter(flags)).replace("_", "-")
        raise ValueError(
            f"{flag} describes a model to build, but {args.checkpoint} holds its own: pass one or the other"
        )
    if args.checkpoint:
        model, cfg, _ = load_model(args.checkpoint)
    else:
        cfg = TrainConfig(**flags).check()
        levels = cfg.model in ("unet", "segnet")
        widest = cfg.base_channels * (2**cfg.depth if levels else 8)
        if widest > MAX_WIDTH:
            given = f"--base-channels {cfg.base_channels}" + (f" with --depth {cfg.depth}" if levels else "")
            raise ValueError(f"{given} makes a layer {widest:,} channels wide; summary builds up to {MAX_WIDTH:,}")
        model = build_model(cfg, 3, cfg.num_classes or len(CLASS_NAMES))
    if args.batch_size < 1:
        raise ValueError(f"--batch-size {args.batch_size} is out of range: expected a whole number >= 1")
    size, m = cfg.size if args.size is None else args.size, side_multiple(cfg)
    if size < 1 or size % m:
        raise ValueError(
            f"--size {size} does not fit {cfg.model} with --depth {cfg.depth}: expected a positive multiple of {m}, "
            f"e.g. --size {max(m, -(-size // m) * m)}"
        )
    print(summary(model, (args.batch_size, 3, size, size)))
    return 0


def cmd_gradcheck(args):
    from .gradcheck.cases import format_table, run_checks

    rows = run_checks(device=args.device, names=args.only.split(",") if args.only else None)
    print(format_table(rows))
    return 1 if any(not r.ok for r in rows) else 0


def cmd_export(args):
    from . import export
    from .runs import load_model

    path = Path(args.output or Path(args.checkpoint).with_suffix(".pt" if args.to == "torch" else ".onnx"))
    model, cfg, _ = load_model(args.checkpoint)
    path = export.check_target(path, source=args.checkpoint, force=args.force)
    try:
        if args.to == "torch":
            export.save_torch(model, path)
        else:
            export.to_onnx(model, path, input_shape=(1, 3, cfg.size, cfg.size))
    except ImportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def cmd_bench(extra):
    """Hand the options after `bench` to benchmarks/run_all.py, which parses its own."""
    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    if not (folder / "run_all.py").exists():
        raise SystemExit(
            "error: `minisegnet bench` runs the scripts in the source checkout's benchmarks/ folder; "
            "install with `pip install -e .` from a clone of the repository"
        )
    sys.path.insert(0, str(folder))
    import run_all

    return run_all.main(extra)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="minisegnet",
        description="Semantic segmentation from scratch in NumPy and CuPy.",
        epilog="Run `minisegnet <command> --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"minisegnet {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="command")

    p = sub.add_parser("train", help="train a model and write runs/<name>/ (checkpoints, metrics, plots)")
    _add_config_options(p)
    p.add_argument(
        "--resume", action="store_true", help="continue runs/<name>/ with its saved configuration (flags must agree)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="per-class IoU and Dice of a checkpoint on a data set")
    p.add_argument("checkpoint")
    p.add_argument("--data", default=None, help="shapes, digits, nuclei or a folder (default: the run's data)")
    p.add_argument("--device", default=_env_device())
    p.add_argument("--json", default=None, help="where to write the metrics (default: beside the checkpoint)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="a figure (image | classes | overlay), colour mask and overlay per image")
    p.add_argument("checkpoint")
    p.add_argument("inputs", nargs="+", help="image files or folders of images")
    p.add_argument("--out", default=None, help="folder for the PNGs (default: predictions/ beside the checkpoint)")
    p.add_argument("--size", type=int, default=None, help="resize each image to SIZE x SIZE for the model")
    p.add_argument("--force", action="store_true", help="replace PNGs that exist from an earlier prediction")
    p.add_argument("--device", default=_env_device())
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("summary", help="each layer's output shape, parameters, multiply-adds and activation memory")
    p.add_argument("checkpoint", nargs="?", default=None, help="a checkpoint; or describe a model with the flags")
    _add_model_options(p)
    p.add_argument("--size", type=int, default=None, help="input side (default: the checkpoint's, else 32)")
    p.add_argument("--batch-size", type=int, default=1, help="images in the input (default: 1)")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("gradcheck", help="float64 gradient check of every op and loss; non-zero exit on failure")
    p.add_argument("--device", default=_env_device())
    p.add_argument("--only", default=None, help="comma-separated case names")
    p.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser("export", help="a checkpoint as a PyTorch (.pt, see minisegnet.export) or ONNX file")
    p.add_argument("checkpoint")
    p.add_argument("--to", choices=("torch", "onnx"), required=True)
    p.add_argument("-o", "--output", default=None, help="where to write (default: the checkpoint's name, .pt or .onnx)")
    p.add_argument("--force", action="store_true", help="replace the output file when it exists")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "bench", help="CPU against GPU (and PyTorch) benchmarks; see benchmarks/README.md", add_help=False
    )
    return parser


# Exceptions that mean the input was wrong (exit 2); any other is the environment's failure (exit 1).
BAD_INPUT = (
    ValueError,
    TypeError,
    LookupError,
    EOFError,
    ZeroDivisionError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
)
OS_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or choose another place",
    errno.EACCES: "no permission: choose a place you can write to",
    errno.EROFS: "the file system is read-only: choose another place",
    errno.ENOTDIR: "a file stands where a folder should be",
    errno.EEXIST: "a file stands where a folder should be",
}


def explain(e):
    """(exit code, one-line message) for an exception the CLI met."""
    if isinstance(e, MemoryError):
        return 1, "out of memory: try a smaller --batch-size, --size or --base-channels (or a smaller image)"
    if isinstance(e, OSError) and e.filename is not None:  # raised by the OS: say which file and what to do
        hint = OS_HINTS.get(e.errno, "check the path")
        return (2 if isinstance(e, BAD_INPUT) else 1), f"{e.strerror}: {e.filename}; {hint}"
    if isinstance(e, BAD_INPUT):
        return 2, str(e) if not isinstance(e, KeyError) else f"missing entry {e}"
    return 1, f"{e} ({type(e).__name__}; rerun with --debug for the traceback)"


def main(argv=None):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # the benchmark runner parses its own options
        return _interruptible(cmd_bench, argv[1:], debug=False)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return _interruptible(args.func, args, debug=args.debug or os.environ.get("MINISEGNET_DEBUG") == "1")


def _interruptible(command, args, debug):
    # Every command: an error is one line and an exit code (explain), Ctrl-C one line and 130. Files are
    # written whole or not at all (io.write_atomically), so an interrupted command leaves no half file.
    try:
        return command(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            raise
        code, message = explain(e)
        print(f"error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
