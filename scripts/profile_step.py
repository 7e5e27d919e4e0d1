"""Where does a training step's time go? cProfile around the default recipe's U-Net steps.

    python scripts/profile_step.py [--device cpu|gpu] [--steps 50] [--batch 8] [--size 32] [--top 30]

The step is the one ``minisegnet train`` runs (forward, CE + soft Dice, the NaN check, backward, Adam,
the schedule) on the default recipe's model. On the GPU the host only queues kernels, so the profile shows
the Python and launch cost of each function; time the GPU spends working shows up where the host waits
(the per-step NaN check reads the loss back). Prints the wall time per step and the top functions.
"""

import argparse
import cProfile
import pstats
import time

import numpy as np

from minisegnet import data
from minisegnet.backend import check_device, synchronize
from minisegnet.recipe import TrainConfig, build_model, make_loss, make_optimizer
from minisegnet.train import train_epoch


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--top", type=int, default=30)
    args = p.parse_args(argv)
    device = check_device(args.device)
    cfg = TrainConfig(device=device, batch_size=args.batch, size=args.size)
    ds = data.shapes(args.batch * args.steps, args.size, seed=0)
    batches = [(ds.images[i : i + args.batch], ds.masks[i : i + args.batch]) for i in range(0, len(ds), args.batch)]
    model = build_model(cfg, 3, ds.num_classes).to(device)
    loss_fn = make_loss(cfg, np.asarray(ds.masks), ds.num_classes, device)
    opt, schedule = make_optimizer(cfg, model, len(batches))

    class NoMeter:  # the training meter is left out: it is not part of the step
        def update(self, *a):
            pass

    train_epoch(model, batches[:5], loss_fn, opt, schedule, NoMeter(), 0, device)  # warm-up (CuPy compiles here)
    synchronize()
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    train_epoch(model, batches, loss_fn, opt, schedule, NoMeter(), 0, device)
    synchronize()
    profiler.disable()
    wall = time.perf_counter() - t0
    print(
        f"{device}: {1e3 * wall / len(batches):.2f} ms per step (batch {args.batch}, {args.size}x{args.size}, "
        f"{len(batches)} steps, under cProfile)"
    )
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
