"""Exercise 6's figures: mIoU and wall time of ``check.train_unet`` with the library's conv2d and with a student's.

The student's conv2d is the one the notebook asks for: a ``Function`` whose forward is im2col and one matrix
product per image, and whose backward is the two products and col2im of exercise 2 (the library's im2col and
col2im, as the notebook allows). Both train the same U-Net from the same seed, one after the other in this
process, so their times compare on one machine; the mIoU does not depend on the machine's load. A time is that of
the training steps alone: a run of 0 steps (making the data, evaluating) is timed first and subtracted.

    PYTHONPATH=. python scripts/exercise6_figures.py                          # seeds 0-4, 1,000 steps each
    PYTHONPATH=. python scripts/exercise6_figures.py --seeds 0 --steps 200    # only the time ratio, quickly
"""

import argparse
import time

import numpy as np

import minisegnet.ops as F
from minisegnet import Function
from minisegnet.exercises import check
from minisegnet.ops.im2col import col2im, im2col


class Im2colConv2d(Function):
    """y[n] = weight.reshape(OC, -1) @ im2col(x)[n] + bias; stride and padding arrive as (h, w) pairs."""

    def __init__(self, stride, padding):
        (self.S, _), (self.P, _) = stride, padding

    def forward(self, x, weight, bias):
        N, C, H, W = x.shape
        OC, _, K, _ = weight.shape
        OH, OW = (H + 2 * self.P - K) // self.S + 1, (W + 2 * self.P - K) // self.S + 1
        self.x, self.weight, self.col = x, weight, im2col(x, K, self.S, self.P)  # col (N, C*K*K, OH*OW)
        y = (weight.reshape(OC, -1) @ self.col).reshape(N, OC, OH, OW)
        return y if bias is None else y + bias.reshape(1, OC, 1, 1)

    def backward(self, gy):
        OC, _, K, _ = self.weight.shape
        gy2 = gy.reshape(gy.shape[0], OC, -1)  # (N, OC, OH*OW)
        gW = (gy2 @ self.col.transpose(0, 2, 1)).sum(axis=0).reshape(self.weight.shape)
        gx = col2im(self.weight.reshape(OC, -1).T @ gy2, self.x.shape, K, self.S, self.P)
        return gx, gW, gy.sum(axis=(0, 2, 3))


def im2col_conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1):
    return Im2colConv2d(stride, padding)(x, weight, bias)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    if not check.conv2d(im2col_conv2d):
        raise SystemExit("the im2col conv2d does not pass check.conv2d")
    results = {"library": [], "im2col": []}
    for seed in args.seeds:
        for name, conv in (("library", F.conv2d), ("im2col", im2col_conv2d)):
            start = time.perf_counter()
            check.train_unet(conv2d=conv, steps=0, seed=seed, verbose=False)
            middle = time.perf_counter()
            miou = check.train_unet(conv2d=conv, steps=args.steps, seed=seed, verbose=False)
            seconds = time.perf_counter() - middle - (middle - start)
            results[name].append((miou, seconds))
            print(f"seed {seed}  {name:8s} conv2d: mIoU {miou:.3f}  {args.steps} steps in {seconds:.1f} s", flush=True)
    for name, runs in results.items():
        mious = [m for m, _ in runs]
        print(f"{name:8s} conv2d: mIoU {', '.join(f'{m:.3f}' for m in mious)} (mean {np.mean(mious):.3f})")
    ratios = [s / lib for (_, lib), (_, s) in zip(results["library"], results["im2col"])]
    print(f"im2col / library time, per seed: {', '.join(f'{r:.1f}' for r in ratios)} (median {np.median(ratios):.1f})")


if __name__ == "__main__":
    main()
