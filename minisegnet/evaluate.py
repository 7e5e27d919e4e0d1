"""``minisegnet evaluate``: a checkpoint's per-class IoU and Dice on a data set, printed and written as JSON.

The classes are the checkpoint's: a test set that lacks some of them is scored as it is (a class absent
from both prediction and target is left out of the means), and data with labels the model cannot predict
is refused, naming which side is the checkpoint and which the data.
"""

from pathlib import Path

import numpy as np

from .io import to_json, write_text
from .recipe import ignore_index_of, load_datasets
from .runs import load_model
from .train import evaluate_model


def evaluate_checkpoint(checkpoint, data=None, device="cpu", json_path=None):
    """Print per-class IoU and Dice of a checkpoint on the validation split of ``data`` (default: the data it
    was trained on) and write them as JSON to ``json_path`` (default: beside the checkpoint, ``.eval.json``)."""
    model, cfg, state = load_model(checkpoint)
    json_path = Path(json_path) if json_path else Path(checkpoint).with_suffix(".eval.json")
    if json_path.exists() and json_path.samefile(checkpoint):
        raise ValueError(f"--json {json_path} is the checkpoint being evaluated; name another file")
    if data is not None:
        cfg.data = data
    model.to(device)
    _, val_ds = load_datasets(cfg)
    C, N = state["num_classes"], val_ds.num_classes
    if N > C:
        raise ValueError(
            f"the data {cfg.data} has {N} classes (labels 0..{N - 1}) but the checkpoint {checkpoint} predicts "
            f"{C} (0..{C - 1}); evaluate it on data with the classes it was trained on"
        )
    names = state.get("class_names") or val_ds.class_names  # load_model checked there is one per class
    ignore = ignore_index_of(cfg)
    result = evaluate_model(model, val_ds, device=device, ignore_index=ignore, num_classes=C, class_names=names)
    print(f"{checkpoint} on {cfg.data} ({len(val_ds)} validation images)")
    print(format_metrics_table(result, names))
    write_text(json_path, to_json({"checkpoint": str(checkpoint), "data": cfg.data, **result}))
    print(f"wrote {json_path}")
    return result


def format_metrics_table(result, class_names):
    """Per-class IoU and Dice as an aligned text table, then the means."""
    width = max(len("class"), *(len(c) for c in class_names))
    lines = [f"{'class':<{width}}  {'IoU':>6}  {'Dice':>6}"]
    for name, i, d in zip(class_names, result["iou"], result["dice"]):
        lines.append(f"{name:<{width}}  {_fmt(i)}  {_fmt(d)}")
    lines.append(f"{'mean':<{width}}  {_fmt(result['miou'])}  {_fmt(result['mean_dice'])}")
    lines.append(f"foreground mIoU {result['fg_miou']:.4f}   pixel accuracy {result['pixel_acc']:.4f}")
    return "\n".join(lines)


def _fmt(v):
    return "   n/a" if v is None or not np.isfinite(v) else f"{v:6.4f}"
