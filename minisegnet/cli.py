"""The command line: ``minisegnet <command> ...`` and ``python -m minisegnet <command> ...``."""

import argparse
import sys

from . import __version__


def build_parser():
    parser = argparse.ArgumentParser(
        prog="minisegnet", description="Semantic segmentation from scratch in NumPy and CuPy."
    )
    parser.add_argument("--version", action="version", version=f"minisegnet {__version__}")
    parser.add_subparsers(dest="command", metavar="command")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
