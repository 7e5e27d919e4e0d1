"""Which model and which loss? Train each on the same data and budget, and tabulate mIoU, time and size.

    python benchmarks/compare_models.py --jobs 2   # the README table (about 15 minutes on 2 idle CPU cores)
    python benchmarks/compare_models.py --quick    # a tiny smoke run, as the tests do

Every run is ``minisegnet.train.train`` with one field of the config changed, so a row differs
from the reference row (U-Net, CE+Dice) in exactly what its name says. Results go to
``benchmarks/results/models.md``.
"""

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from minisegnet.recipe import TrainConfig
from minisegnet.train import train

HERE = Path(__file__).resolve().parent

# (data set, label, changes to the config); FCNs need sides divisible by 32, so every run uses 32x32.
RUNS = [
    ("shapes", "U-Net, CE+Dice", {}),
    ("shapes", "U-Net, CE", {"loss": "ce"}),
    ("shapes", "U-Net, Dice", {"loss": "dice"}),
    ("shapes", "FCN-8s, CE+Dice", {"model": "fcn8s"}),
    ("shapes", "FCN-32s, CE+Dice", {"model": "fcn32s"}),
    ("shapes", "SegNet-style (unpool, no skips), CE+Dice", {"model": "segnet"}),
    ("digits", "U-Net, CE+Dice", {}),
    ("digits", "U-Net, CE", {"loss": "ce"}),
    ("digits", "U-Net, Dice", {"loss": "dice"}),
    ("digits", "FCN-8s, CE+Dice", {"model": "fcn8s"}),
    ("digits", "FCN-32s, CE+Dice", {"model": "fcn32s"}),
    # The nuclei patches are one fixed set (no fresh images): more passes, with flips and turns.
    ("nuclei", "U-Net, CE+Dice", {"epochs": 40, "augment": True}),
]
BASE = {"size": 32, "n_val": 64}  # and TrainConfig's defaults: the recipe of `minisegnet train`


def train_one(data, label, changes, out, quick):
    """Train one configuration and return its row of the table."""
    cfg = TrainConfig(
        **{**BASE, **changes, "data": data, "name": re.sub(r"\W+", "-", f"{data} {label}"), "out": out, "quick": quick}
    )
    summary = train(cfg, progress=False)
    final = summary["final"]
    row = {
        "data": data,
        "model": label,
        "miou": final["miou"],
        "fg_miou": final["fg_miou"],
        "fg_dice": float(np.nanmean(final["dice"][1:])),
        "seconds": summary["train_seconds"],
        "parameters": summary["parameters"],
        "epochs": cfg.resolved().epochs,
    }
    print(json.dumps(row), flush=True)
    return row


def run(quick=False, only=None, jobs=1):
    """Train every configuration (``jobs`` at a time, in separate processes); return one row per run."""
    chosen = [r for r in RUNS if not only or r[0] in only][: 1 if quick else None]
    with tempfile.TemporaryDirectory() as out:
        if jobs == 1:
            return [train_one(*r, out, quick) for r in chosen]
        with ProcessPoolExecutor(jobs) as pool:
            return list(pool.map(train_one, *zip(*chosen), [out] * len(chosen), [quick] * len(chosen)))


def to_markdown(rows):
    lines = [
        "| data | model, loss | val mIoU | foreground mIoU | foreground Dice | train time | parameters |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['model']} | {r['miou']:.3f} | {r['fg_miou']:.3f} | {r['fg_dice']:.3f} | "
            f"{r['seconds']:.0f} s | {r['parameters']:,} |"
        )
    return "\n".join(lines)


def machine():
    info = Path("/proc/cpuinfo")
    names = [ln.split(":", 1)[1].strip() for ln in info.read_text().splitlines() if ln.startswith("model name")]
    cpu = names[0] if names else platform.processor()
    return f"{cpu}, {os.cpu_count()} cores, no GPU; Python {platform.python_version()}, NumPy {np.__version__}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=None, help="comma-separated data sets (shapes,digits,nuclei)")
    parser.add_argument("--out", default=str(HERE / "results" / "models.md"))
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (give each BLAS one thread)")
    args = parser.parse_args(argv)
    start = time.time()
    rows = run(args.quick, args.only.split(",") if args.only else None, args.jobs)
    text = (
        f"# Models and losses compared\n\nMeasured {time.strftime('%Y-%m-%d')} on {machine()}. Each run: "
        f"`minisegnet.train` with the defaults of `minisegnet train` and {json.dumps(BASE)}: 8 epochs of "
        f"4,096 fresh images, batch 8, Adam 5e-3 with warm-up and cosine decay (nuclei: the shipped image's "
        f"32x32 patches, 40 epochs with flips and turns), seed 0; validation images are held out. "
        f"Wall time of the whole table: {(time.time() - start) / 60:.0f} min.\n\n{to_markdown(rows)}\n"
    )
    if not args.quick:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
