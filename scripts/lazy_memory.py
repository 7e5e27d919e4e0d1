"""Peak memory against the number of images on disk: read from disk (folder:PATH) or all held in memory.

    python scripts/lazy_memory.py --images 300 3000 --side 128

For each count, writes that many random side x side image/mask PNG pairs into a temporary folder, then in a fresh
process per case iterates one epoch of DataLoader(batch_size=8) over the training split and reports the process's
peak resident memory (ru_maxrss): "disk" is LayoutDataset (minisegnet train --data folder:PATH), read ahead on a
thread; "memory" is the recipe's plain-folder path (minisegnet train --data PATH), which stacks every pair first.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

CASE = """
import resource, sys, time
from minisegnet.data import DataLoader, load_layout
from minisegnet.recipe import TrainConfig, load_datasets
root, how, side = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0 = time.perf_counter()
if how == "disk":
    train, _ = load_layout("folder:" + root, side)
else:
    train, _ = load_datasets(TrainConfig(data=root))
batches = sum(1 for _ in DataLoader(train, batch_size=8, shuffle=True))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, batches, time.perf_counter() - t0)
"""


def write_folder(root, n, side, seed=0):
    rng = np.random.default_rng(seed)
    for name in ("images", "masks"):
        (root / name).mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(rng.integers(0, 3, (side, side), dtype=np.uint8)).save(root / "masks" / f"{i}.png")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, nargs="+", default=[300, 3000])
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="runs per case, interleaved; the median is shown")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folders = {}
        for n in args.images:
            folders[n] = Path(tmp) / str(n)
            write_folder(folders[n], n, args.side)
        results = {}
        for _ in range(args.repeats):
            for n in args.images:
                for how in ("disk", "memory"):
                    argv = [sys.executable, "-c", CASE, str(folders[n]), how, str(args.side)]
                    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()
                    results.setdefault((n, how), []).append([float(v) for v in out])
    print(f"{'images':>7} {'read':>7} {'peak RSS MB':>12} {'batches':>8} {'seconds':>8}")
    for (n, how), runs in sorted(results.items()):
        rss, batches, seconds = np.median(np.array(runs), axis=0)
        print(f"{n:>7} {how:>7} {rss:>12.0f} {batches:>8.0f} {seconds:>8.1f}")


if __name__ == "__main__":
    main()
