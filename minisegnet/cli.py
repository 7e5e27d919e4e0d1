"""The command line: ``minisegnet <command> ...`` and ``python -m minisegnet <command> ...``.

minisegnet train [--model unet --data shapes --epochs 12 --device cpu ...]   train, write runs/<name>/
minisegnet evaluate runs/unet-shapes/checkpoint_best.npz                    per-class IoU and Dice
minisegnet predict runs/unet-shapes/checkpoint_best.npz photo.png ...       colour masks and overlays
minisegnet gradcheck                                                        every op and loss, float64
minisegnet bench --device both --compare-torch                              CPU against GPU (and torch)
"""

import argparse
import dataclasses
import sys
from pathlib import Path

from . import __version__


def _add_config_options(parser):
    # One option per TrainConfig field, so the CLI and the config can never drift apart.
    from .train import HELP, TrainConfig

    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        if field.type in (bool, "bool"):
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=field.default, help=HELP[field.name]
            )
        else:
            kind = {"int": int, "float": float}.get(getattr(field.type, "__name__", field.type), str)
            parser.add_argument(
                flag,
                type=kind,
                default=field.default,
                metavar=field.name.upper(),
                help=f"{HELP[field.name]} (default: {field.default})",
            )


def cmd_train(args):
    from .train import NonFiniteLoss, TrainConfig, train

    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    try:
        summary = train(cfg, resume=args.resume, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: minisegnet train --name {cfg.name} --resume", file=sys.stderr)
        return 130
    except NonFiniteLoss as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    final = summary["final"]
    print(
        f"done in {summary['train_seconds']:.0f} s: val mIoU {final['miou']:.3f}, foreground mIoU "
        f"{final['fg_miou']:.3f}, pixel accuracy {final['pixel_acc']:.3f} (from the validation set's confusion "
        f"matrix; a class absent from prediction and target is left out of the means; per-image mIoU "
        f"{final.get('miou_per_image', float('nan')):.3f}); peak memory "
        f"{summary['peak_memory_mb']:.0f} MB; results in {cfg.resolved().run_dir}/"
    )
    return 0


def cmd_evaluate(args):
    from .predict import evaluate_checkpoint

    evaluate_checkpoint(args.checkpoint, data=args.data, device=args.device, json_path=args.json)
    return 0


def cmd_predict(args):
    from .predict import predict_files

    written = predict_files(args.checkpoint, args.inputs, out=args.out, device=args.device)
    print(f"wrote {len(written)} files to {args.out}/")
    return 0


def cmd_gradcheck(args):
    from .checks import format_table, run_checks

    rows = run_checks(device=args.device, names=args.only.split(",") if args.only else None)
    print(format_table(rows))
    return 1 if any(not r.ok for r in rows) else 0


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
    sub = parser.add_subparsers(dest="command", metavar="command")

    p = sub.add_parser("train", help="train a model and write runs/<name>/ (checkpoints, metrics, plots)")
    _add_config_options(p)
    p.add_argument("--resume", action="store_true", help="continue from runs/<name>/checkpoint_last.npz")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="per-class IoU and Dice of a checkpoint on a data set")
    p.add_argument("checkpoint")
    p.add_argument("--data", default=None, help="shapes, digits, nuclei or a folder (default: the run's data)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None, help="where to write the metrics (default: beside the checkpoint)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="colourised masks and overlays for image files or folders")
    p.add_argument("checkpoint")
    p.add_argument("inputs", nargs="+", help="image files or folders of images")
    p.add_argument("--out", default="predictions")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("gradcheck", help="float64 gradient check of every op and loss; non-zero exit on failure")
    p.add_argument("--device", default="cpu")
    p.add_argument("--only", default=None, help="comma-separated case names")
    p.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser(
        "bench", help="CPU against GPU (and PyTorch) benchmarks; see benchmarks/README.md", add_help=False
    )
    return parser


def main(argv=None):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # the benchmark runner parses its own options
        return cmd_bench(argv[1:])
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
