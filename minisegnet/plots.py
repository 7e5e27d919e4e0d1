"""Pictures a run leaves behind: learning curves, and image / truth / prediction panels with a legend.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so they render on a machine
without a display and never open a window.
"""

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .data import colorize


def plot_curves(history, path):
    """Training loss and validation mIoU per epoch (``history`` is the list of epoch records)."""
    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(9, 3.2))
    ax_loss, ax_iou = fig.subplots(1, 2)
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax_iou.plot(epochs, [r["train_miou"] for r in history], "o-", label="train mIoU")
    ax_iou.plot(epochs, [r["val_miou"] for r in history], "s-", label="val mIoU")
    ax_iou.plot(epochs, [r["val_fg_miou"] for r in history], "^-", label="val foreground mIoU")
    ax_iou.set(xlabel="epoch", ylabel="IoU", ylim=(0, 1), title="mean IoU")
    ax_iou.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def legend_handles(class_names, palette):
    return [Patch(color=np.asarray(c) / 255, label=name) for name, c in zip(class_names, palette)]


def plot_predictions(dataset, preds, path):
    """A grid of the first len(preds) examples of ``dataset``: image, ground truth, prediction (preds (n, H, W)),
    with a class legend."""
    n = len(preds)
    images = np.stack([dataset[i][0] for i in range(n)])
    truths = np.stack([dataset[i][1] for i in range(n)])
    # Labels outside the classes (255 = "ignore" in your own folders) are drawn white.
    C = dataset.num_classes
    palette = np.vstack([np.asarray(dataset.palette, dtype=np.uint8), [[255, 255, 255]]])
    truths = np.where((truths >= 0) & (truths < C), truths, C)
    fig = Figure(figsize=(7, 2.2 * n + 0.6))
    axes = fig.subplots(n, 3, squeeze=False)
    for i in range(n):
        panels = [
            images[i].transpose(1, 2, 0),
            colorize(truths[i], palette),
            colorize(preds[i], palette),
        ]
        for ax, panel, title in zip(axes[i], panels, ["image", "truth", "prediction"]):
            ax.imshow(panel, interpolation="nearest")
            ax.set_axis_off()
            if i == 0:
                ax.set_title(title)
    fig.legend(
        handles=legend_handles(dataset.class_names, dataset.palette),
        loc="lower center",
        ncol=min(6, dataset.num_classes),
        fontsize="small",
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=90)
