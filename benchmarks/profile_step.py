"""Where a U-Net training step's time goes: each op's forward and backward, timed inside the step.

    python benchmarks/profile_step.py [--quick] [--threads N] [--steps 5]

While the step runs, every ``Function`` subclass's ``forward`` and ``backward`` is wrapped with a
wall-clock timer (``timed_functions``; the classes get their own methods back afterwards). The step
is bench_train_step.py's: forward, cross-entropy + soft Dice, backward, Adam, at batch 16 of
3x128x128, base 16, depth 4 (``--quick``: that benchmark's tiny sizes). Two warm-up steps, then
``--steps`` timed ones; the table gives milliseconds per step for each op, forward and backward,
and what the step spent outside any op (autograd, Adam, Python). ``--threads`` is
``minisegnet.set_num_threads`` (default 0: BLAS's own threads). A cProfile of the same step
attributes the time to Python functions instead, and its overhead distorts the small ones.
"""

import argparse
import collections
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_train_step  # noqa: E402

from minisegnet import set_num_threads  # noqa: E402
from minisegnet.tensor import Function  # noqa: E402


@contextlib.contextmanager
def timed_functions():
    """Time every Function subclass's forward and backward while the block runs.

    Yields {"ClassName.forward": [seconds, calls], ...}, filled as the ops run; on leaving, each
    class gets back the methods it defined itself.
    """
    totals = collections.defaultdict(lambda: [0.0, 0])
    saved = []
    for cls in _subclasses(Function):
        for name in ("forward", "backward"):
            method = cls.__dict__.get(name)
            if method is not None:
                saved.append((cls, name, method))
                setattr(cls, name, _timed(method, totals[f"{cls.__name__}.{name}"]))
    try:
        yield totals
    finally:
        for cls, name, method in saved:
            setattr(cls, name, method)


def _timed(method, slot):
    def timed(self, *args):
        start = time.perf_counter()
        try:
            return method(self, *args)
        finally:
            slot[0] += time.perf_counter() - start
            slot[1] += 1

    return timed


def _subclasses(cls):
    seen, stack = [], list(cls.__subclasses__())
    while stack:
        sub = stack.pop()
        if sub not in seen:
            seen.append(sub)
            stack.extend(sub.__subclasses__())
    return seen


def profile(quick=False, steps=5, threads=0):
    """(ms per step, {op: (ms per step, calls per step)}) of the benchmark's step, ops sorted slowest first."""
    cfg = bench_train_step.QUICK if quick else bench_train_step.FULL
    set_num_threads(threads)
    try:
        step = bench_train_step.step_impls(cfg, "cpu")[0][0].fn
        step(), step()
        with timed_functions() as totals:
            start = time.perf_counter()
            for _ in range(steps):
                step()
            whole = (time.perf_counter() - start) / steps * 1e3
    finally:
        set_num_threads(0)
    ops = {name: (seconds / steps * 1e3, calls // steps) for name, (seconds, calls) in totals.items() if calls}
    return whole, dict(sorted(ops.items(), key=lambda kv: -kv[1][0]))


def table(whole, ops):
    """The markdown table of ``profile``'s result."""
    lines = ["| op | ms per step | calls per step |", "|---|---|---|"]
    lines += [f"| {name} | {ms:.1f} | {calls} |" for name, (ms, calls) in ops.items()]
    outside = whole - sum(ms for ms, _ in ops.values())
    lines += [f"| outside the ops (autograd, Adam, Python) | {outside:.1f} | |", f"| whole step | {whole:.1f} | |"]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the train benchmark's tiny sizes")
    parser.add_argument("--steps", type=int, default=5, help="timed steps after two warm-up ones (default 5)")
    parser.add_argument("--threads", type=int, default=0, help="minisegnet.set_num_threads (default 0: BLAS's)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    print(table(*profile(args.quick, args.steps, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
