"""Segmentation metrics on plain arrays (NumPy or CuPy, no autograd): confusion matrix, IoU, Dice, pixel accuracy.

Everything is computed from the confusion matrix cm (C, C), cm[i, j] = number of pixels of true class i predicted as
class j (rows = target, columns = prediction, as in scikit-learn). Per class c: TP = cm[c, c], FN = row sum - TP,
FP = column sum - TP, so IoU = TP / (TP + FP + FN) and Dice = 2 TP / (2 TP + FP + FN). A class absent from both the
prediction and the target has 0 / 0: its IoU and Dice are NaN, and the means leave it out.
"""

import math

import numpy as np

from .backend import get_array_module, to_numpy, unwrap

AVERAGES = ("macro", "micro")


def _array(a):
    return unwrap(a)  # a Tensor's array, or the array itself


def confusion_matrix(pred, target, num_classes, ignore_index=None):
    """cm (C, C) int64 with cm[i, j] = #pixels of target i predicted j; pred and target integer arrays of one shape.

    Pixels whose target equals ``ignore_index`` are not counted. Counting is one bincount of target * C + pred.
    """
    pred, target = _array(pred), _array(target)
    xp = get_array_module(pred, target)
    C = int(num_classes)
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f"confusion_matrix: pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    for name, a in (("pred", pred), ("target", target)):
        if a.dtype.kind not in "iu":
            raise TypeError(f"confusion_matrix: {name} must hold integer labels, got dtype {a.dtype}")
    keep = xp.ones(target.shape, dtype=bool) if ignore_index is None else target != ignore_index
    pred, target = pred[keep].astype(xp.int64), target[keep].astype(xp.int64)
    for name, a in (("target", target), ("pred", pred)):
        bad = (a < 0) | (a >= C)
        if bool(bad.any()):
            raise ValueError(f"confusion_matrix: {name} holds label {int(a[bad][0])}; expected [0, {C})")
    return xp.bincount(target * C + pred, minlength=C * C).reshape(C, C)


def _ratio(num, den):
    # num / den with NaN where den == 0, without a divide-by-zero warning (CuPy has no errstate).
    xp = get_array_module(num, den)
    return xp.where(den > 0, num / xp.where(den > 0, den, 1), xp.nan)


def _parts(cm):
    cm = _array(cm)
    tp = cm.diagonal().astype("float64")
    return tp, cm.sum(axis=1) - tp, cm.sum(axis=0) - tp  # TP, FN, FP per class


def iou(cm):
    """Per-class intersection over union (C,): TP / (TP + FP + FN); NaN for a class absent from pred and target."""
    tp, fn, fp = _parts(cm)
    return _ratio(tp, tp + fp + fn)


def dice(cm):
    """Per-class Dice / F1 (C,): 2 TP / (2 TP + FP + FN); NaN for a class absent from pred and target."""
    tp, fn, fp = _parts(cm)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def pixel_accuracy(cm):
    """Fraction of counted pixels predicted correctly: trace(cm) / sum(cm) (NaN when nothing was counted)."""
    cm = _array(cm)
    return _ratio(cm.diagonal().sum().astype("float64"), cm.sum())


def _mean(cm, per_class, micro, include_background, average):
    if average not in AVERAGES:
        raise ValueError(f"average must be 'macro' or 'micro', got {average!r}")
    xp = get_array_module(_array(cm))
    start = 0 if include_background else 1
    if average == "micro":  # pool TP, FP, FN over the classes, then one ratio
        tp, fn, fp = (a[start:].sum() for a in _parts(cm))
        return micro(tp, fn, fp)
    values = per_class(cm)[start:]
    present = ~xp.isnan(values)
    # The mean over classes present in pred or target; NaN if there is none.
    return _ratio(xp.where(present, values, 0).sum(), present.sum())


def mean_iou(cm, include_background=True, average="macro"):
    """Mean IoU over classes. "macro": the mean of per-class IoU over classes present in pred or target (absent
    classes, with NaN IoU, do not count); "micro": sum TP / sum (TP + FP + FN) pooled over classes.
    ``include_background=False`` leaves class 0 out of both."""
    return _mean(cm, iou, lambda tp, fn, fp: _ratio(tp, tp + fp + fn), include_background, average)


def mean_dice(cm, include_background=True, average="macro"):
    """Mean Dice over classes, averaged like ``mean_iou`` ("macro" skips absent classes; "micro" pools counts)."""
    return _mean(cm, dice, lambda tp, fn, fp: _ratio(2 * tp, 2 * tp + fp + fn), include_background, average)


class SegmentationMeter:
    """Accumulates one confusion matrix over batches and reports the usual metrics.

        meter = SegmentationMeter(num_classes=3)
        for images, masks in loader:
            meter.update(model(images), masks)   # logits (N, C, H, W) or labels (N, H, W)
        meter.compute()["miou"]

    The matrix stays on the device of the first batch; ``compute`` returns Python numbers.
    """

    def __init__(self, num_classes, ignore_index=None, class_names=None):
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names for num_classes={num_classes}")
        self.num_classes, self.ignore_index = int(num_classes), ignore_index
        self.class_names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
        self.reset()

    def reset(self):
        """Forget every batch seen so far."""
        self.cm = None

    def update(self, pred_or_logits, target):
        """Add one batch: labels (N, H, W) or scores (N, C, H, W) (argmax over axis 1), target (N, H, W)."""
        pred, target = _array(pred_or_logits), _array(target)
        if pred.ndim == target.ndim + 1:
            if pred.shape[1] != self.num_classes:
                raise ValueError(f"scores have {pred.shape[1]} channels but num_classes={self.num_classes}")
            pred = pred.argmax(axis=1)
        cm = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        self.cm = cm if self.cm is None else self.cm + cm

    def compute(self):
        """A dict of Python numbers: miou, fg_miou (class 0 left out), miou_micro, pixel_acc, mean_dice, iou and
        dice (per-class lists, NaN for classes absent from pred and target), class_names, confusion_matrix."""
        C = self.num_classes
        cm = to_numpy(self.cm) if self.cm is not None else np.zeros((C, C), dtype=np.int64)

        def num(a):
            return float(to_numpy(a))

        return {
            "miou": num(mean_iou(cm)),
            "fg_miou": num(mean_iou(cm, include_background=False)) if C > 1 else math.nan,
            "miou_micro": num(mean_iou(cm, average="micro")),
            "pixel_acc": num(pixel_accuracy(cm)),
            "mean_dice": num(mean_dice(cm)),
            "iou": [float(v) for v in iou(cm)],
            "dice": [float(v) for v in dice(cm)],
            "class_names": list(self.class_names),
            "confusion_matrix": cm.tolist(),
        }
