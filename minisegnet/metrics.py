"""Segmentation metrics on plain arrays (NumPy or CuPy, no autograd): confusion matrix, IoU, Dice, pixel accuracy.

Everything is computed from the confusion matrix cm (C, C), cm[i, j] = number of pixels of true class i predicted as
class j (rows = target, columns = prediction, as in scikit-learn), or a stack of them (N, C, C), one per image. Per
class c: TP = cm[c, c], FN = row sum - TP, FP = column sum - TP, so IoU = TP / (TP + FP + FN) and
Dice = 2 TP / (2 TP + FP + FN).

The empty class, ``empty=``: a class absent from both prediction and target has 0 / 0. "nan" (default, as
torchmetrics' and scikit-learn's NaN / zero_division left out): its score is NaN and the means leave it out;
"zero": it scores 0; "one": it scores 1 (Kaggle's "both empty = 1", MONAI's DiceMetric(ignore_empty=False));
"ignore_empty": a class absent from the TARGET is NaN whatever was predicted (MONAI's default ignore_empty=True).
Boundary scores (Hausdorff, HD95, average surface distance) are in metrics_boundary.py.
"""

import math

import numpy as np

from .backend import bincount, get_array_module, to_numpy, unwrap
from .metrics_boundary import average_surface_distance, hausdorff_distance, surface_distances  # noqa: F401
from .ops.validate import fail_if

AVERAGES = ("macro", "micro", "weighted")
EMPTY = ("nan", "zero", "one", "ignore_empty")


def _array(a):
    return unwrap(a)  # a Tensor's array, or the array itself


def _cells(pred, target, C, ignore_index, what, images=1):
    """Each pixel's cell of the confusion matrices: (n * C + target) * C + pred as int64, ``pred``'s shape.

    n is the pixel's image with ``images`` = N (per-image matrices, pred (N, H, W)), else 0. A pixel that
    is not counted (target == ignore_index, or a label outside [0, C)) gets the extra cell images*C*C,
    which the caller's bincount counts and drops: no boolean mask, whose size a GPU would read back.
    """
    pred, target = _array(pred), _array(target)
    xp = get_array_module(pred, target)
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f"{what}: pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    for name, a in (("pred", pred), ("target", target)):
        if a.dtype.kind not in "iu":
            raise TypeError(f"{what}: {name} must hold integer labels, got dtype {a.dtype}")
    keep = xp.ones(target.shape, dtype=bool) if ignore_index is None else target != ignore_index
    pred, target = pred.astype(xp.int64), target.astype(xp.int64)
    for name, a in (("target", target), ("pred", pred)):
        bad = ((a < 0) | (a >= C)) & keep
        fail_if(bad, a, lambda v, name=name: f"{what}: {name} holds label {v}; expected [0, {C})")
        keep &= ~bad  # read at once, or recorded by deferred_checks: either way never counted
    cell = target * C + pred
    if images > 1:
        cell += xp.arange(images).reshape((images,) + (1,) * (cell.ndim - 1)) * (C * C)
    return xp.where(keep, cell, images * C * C)


def confusion_matrix(pred, target, num_classes, ignore_index=None):
    """cm (C, C) int64 with cm[i, j] = #pixels of target i predicted j; pred and target integer arrays of one shape.

    Pixels whose target equals ``ignore_index`` are not counted. Counting is one bincount of target * C + pred.
    """
    C = int(num_classes)
    cells = _cells(pred, target, C, ignore_index, "confusion_matrix")
    return bincount(cells, C * C + 1)[: C * C].reshape(C, C)


def confusion_matrices(pred, target, num_classes, ignore_index=None):
    """cms (N, C, C) int64, one confusion matrix per image: pred and target (N, H, W) integer labels."""
    C = int(num_classes)
    N = _array(target).shape[0]
    cells = _cells(pred, target, C, ignore_index, "confusion_matrices", images=N)
    return bincount(cells, N * C * C + 1)[: N * C * C].reshape(N, C, C)


def _ratio(num, den):
    # num / den with NaN where den == 0, without a divide-by-zero warning (CuPy has no errstate).
    xp = get_array_module(num, den)
    return xp.where(den > 0, num / xp.where(den > 0, den, 1), xp.nan)


def _parts(cm):
    cm = _array(cm)
    tp = cm.diagonal(axis1=-2, axis2=-1).astype("float64")
    return tp, cm.sum(axis=-1) - tp, cm.sum(axis=-2) - tp  # TP, FN, FP per class (and image)


def _check_empty(empty):
    if empty not in EMPTY:
        raise ValueError(f"empty must be one of {', '.join(map(repr, EMPTY))}, got {empty!r}")


def _score(num, den, tp, fn, empty):
    """num / den with the empty-class policy applied where den == 0 (see the module docstring)."""
    _check_empty(empty)
    xp = get_array_module(num)
    values = _ratio(num, den)
    if empty in ("zero", "one"):
        return xp.where(den > 0, values, 0.0 if empty == "zero" else 1.0)
    if empty == "ignore_empty":
        return xp.where(tp + fn > 0, values, xp.nan)
    return values


def iou(cm, empty="nan"):
    """Per-class intersection over union (C,) (or (N, C) for per-image matrices): TP / (TP + FP + FN).

    A class absent from pred and target is NaN (``empty="nan"``), 0, or 1; "ignore_empty": NaN when absent from the
    target (module docstring)."""
    tp, fn, fp = _parts(cm)
    return _score(tp, tp + fp + fn, tp, fn, empty)


def dice(cm, empty="nan"):
    """Per-class Dice / F1 (C,) (or (N, C)): 2 TP / (2 TP + FP + FN); the empty class as in ``iou``."""
    tp, fn, fp = _parts(cm)
    return _score(2 * tp, 2 * tp + fp + fn, tp, fn, empty)


def pixel_accuracy(cm):
    """Fraction of counted pixels predicted correctly: trace(cm) / sum(cm) (NaN when nothing was counted)."""
    cm = _array(cm)
    return _ratio(cm.diagonal(axis1=-2, axis2=-1).sum(axis=-1).astype("float64"), cm.sum(axis=(-2, -1)))


def _mean(cm, per_class, micro, include_background, average, ignore_index, empty):
    if average not in AVERAGES:
        raise ValueError(f"average must be 'macro', 'micro' or 'weighted', got {average!r}")
    cm = _array(cm)
    xp = get_array_module(cm)
    C = cm.shape[-1]
    keep = xp.ones(C, dtype=bool)
    if not include_background:
        keep[0] = False
    if ignore_index is not None and 0 <= ignore_index < C:
        keep[ignore_index] = False  # an ignored real class is left out of the mean (as torchmetrics)
    tp, fn, fp = _parts(cm)
    if average == "micro":  # pool TP, FP, FN over the kept classes, then one ratio
        return micro(*((a * keep).sum(axis=-1) for a in (tp, fn, fp)))
    values = per_class(cm, empty)
    w = keep * (tp + fn if average == "weighted" else 1.0)  # weighted: by each class's target pixels
    present = ~xp.isnan(values) & keep
    # The mean over kept classes with a score (not NaN); NaN if there is none.
    return _ratio(xp.where(present, values * w, 0).sum(axis=-1), xp.where(present, w, 0).sum(axis=-1))


def mean_iou(cm, include_background=True, average="macro", ignore_index=None, empty="nan"):
    """Mean IoU over classes (a number, or (N,) for per-image matrices (N, C, C)).

    "macro": the mean of per-class IoU over classes with a score: with ``empty="nan"`` a class absent from pred and
    target does not count, with "zero" / "one" it counts as 0 / 1, with "ignore_empty" a class absent from the
    target does not count. "weighted": each class weighted by its number of target pixels. "micro": sum TP /
    sum (TP + FP + FN) pooled over classes. ``include_background=False`` leaves class 0 out, and an ``ignore_index``
    in [0, C) leaves that class out (its pixels are already dropped from cm)."""
    return _mean(cm, iou, lambda tp, fn, fp: _ratio(tp, tp + fp + fn), include_background, average, ignore_index, empty)


def mean_dice(cm, include_background=True, average="macro", ignore_index=None, empty="nan"):
    """Mean Dice over classes, averaged like ``mean_iou`` (the same ``average``, ``ignore_index`` and ``empty``)."""
    return _mean(
        cm, dice, lambda tp, fn, fp: _ratio(2 * tp, 2 * tp + fp + fn), include_background, average, ignore_index, empty
    )


class SegmentationMeter:
    """Accumulates one confusion matrix over batches (and one per image) and reports the usual metrics.

        meter = SegmentationMeter(num_classes=3)
        for images, masks in loader:
            meter.update(model(images), masks)   # logits (N, C, H, W) or labels (N, H, W)
        meter.compute()["miou"]

    ``empty`` is the policy for a class absent from pred and target ("nan": left out of the means; "zero", "one",
    "ignore_empty": see the module docstring); an ``ignore_index`` in [0, C) also leaves that class out of the
    means. The matrices stay on the device of the first batch; ``compute`` returns Python numbers.
    """

    def __init__(self, num_classes, ignore_index=None, class_names=None, empty="nan"):
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names for num_classes={num_classes}")
        _check_empty(empty)
        self.num_classes, self.ignore_index, self.empty = int(num_classes), ignore_index, empty
        self.class_names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
        self.reset()

    def reset(self):
        """Forget every batch seen so far."""
        self.cm, self.image_iou, self.image_dice = None, [], []

    def update(self, pred_or_logits, target):
        """Add one batch: labels (N, H, W) or scores (N, C, H, W) (argmax over axis 1), target (N, H, W)."""
        pred, target = _array(pred_or_logits), _array(target)
        if pred.ndim == target.ndim + 1:
            if pred.shape[1] != self.num_classes:
                raise ValueError(f"scores have {pred.shape[1]} channels but num_classes={self.num_classes}")
            pred = pred.argmax(axis=1)
        cms = confusion_matrices(pred, target, self.num_classes, self.ignore_index)
        self.cm = cms.sum(axis=0) if self.cm is None else self.cm + cms.sum(axis=0)
        kw = {"ignore_index": self.ignore_index, "empty": self.empty}
        self.image_iou.append(mean_iou(cms, **kw))  # kept on the device: no sync per batch
        self.image_dice.append(mean_dice(cms, **kw))

    def compute(self):
        """A dict of Python numbers, each from the data set's confusion matrix except the per-image ones:

        miou, fg_miou (class 0 left out), miou_micro, miou_weighted (classes weighted by target pixels), pixel_acc,
        mean_dice; miou_per_image and dice_per_image (each image's mean over its classes with a score, then the mean
        over images with one); iou and dice (per class, NaN for classes absent from pred and target under
        empty="nan"); empty (the policy), class_names, confusion_matrix."""
        C = self.num_classes
        cm = to_numpy(self.cm) if self.cm is not None else np.zeros((C, C), dtype=np.int64)
        kw = {"ignore_index": self.ignore_index, "empty": self.empty}
        # cm is on the host now: the numbers below read nothing more from the device.

        def over_images(batches):
            if not batches:
                return math.nan
            # One read for all batches so far; the joined array replaces the list, so the next call
            # (the progress bar asks every few steps) reads one array again, not one per batch.
            batches[:] = [get_array_module(*batches).concatenate(batches)]
            scores = to_numpy(batches[0])
            return float(np.nanmean(scores)) if np.isfinite(scores).any() else math.nan

        return {
            "miou": float(mean_iou(cm, **kw)),
            "fg_miou": float(mean_iou(cm, include_background=False, **kw)) if C > 1 else math.nan,
            "miou_micro": float(mean_iou(cm, average="micro", **kw)),
            "miou_weighted": float(mean_iou(cm, average="weighted", **kw)),
            "pixel_acc": float(pixel_accuracy(cm)),
            "mean_dice": float(mean_dice(cm, **kw)),
            "miou_per_image": over_images(self.image_iou),
            "dice_per_image": over_images(self.image_dice),
            "iou": [float(v) for v in iou(cm, self.empty)],
            "dice": [float(v) for v in dice(cm, self.empty)],
            "empty": self.empty,
            "class_names": list(self.class_names),
            "confusion_matrix": cm.tolist(),
        }
