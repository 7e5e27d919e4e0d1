"""metrics.py: confusion matrix, IoU, Dice, pixel accuracy, means and the meter, against plain loops."""

import math

import numpy as np
import pytest

import minisegnet as msn
from minisegnet import metrics
from minisegnet.backend import to_device

import naive


def batch(seed=0, C=4, shape=(2, 6, 7), ignore=None, absent=None):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, C, shape)
    pred = np.where(rng.random(shape) < 0.6, target, rng.integers(0, C, shape))  # mostly right
    if absent is not None:  # a class in neither pred nor target
        target[target == absent], pred[pred == absent] = 0, 0
    if ignore is not None:
        target[rng.random(shape) < 0.2] = ignore
    return pred, target


@pytest.mark.parametrize("ignore", [None, 255, 0])
def test_confusion_matrix_and_per_class_metrics_match_loops(device, ignore):
    pred, target = batch(ignore=ignore, absent=2)
    cm = metrics.confusion_matrix(to_device(pred, device), to_device(target, device), 4, ignore_index=ignore)
    assert msn.backend.device_of(cm) == device
    cm = msn.to_numpy(cm)
    np.testing.assert_array_equal(cm, naive.confusion_matrix(pred, target, 4, ignore))
    iou, dice = naive.per_class_iou_dice(pred, target, 4, ignore)
    np.testing.assert_allclose(msn.to_numpy(metrics.iou(cm)), iou, rtol=1e-14)
    np.testing.assert_allclose(msn.to_numpy(metrics.dice(cm)), dice, rtol=1e-14)
    counted = target != ignore if ignore is not None else np.ones(target.shape, bool)
    assert float(metrics.pixel_accuracy(cm)) == pytest.approx(np.mean(pred[counted] == target[counted]))


def test_means_skip_absent_classes_and_average_options(device):
    pred, target = batch(seed=3, absent=2)
    cm = metrics.confusion_matrix(to_device(pred, device), to_device(target, device), 4)
    iou, dice = naive.per_class_iou_dice(pred, target, 4)
    assert math.isnan(iou[2])
    present = [v for v in iou if not math.isnan(v)]
    assert float(metrics.mean_iou(cm)) == pytest.approx(sum(present) / 3)
    assert float(metrics.mean_iou(cm, include_background=False)) == pytest.approx((iou[1] + iou[3]) / 2)
    assert float(metrics.mean_dice(cm)) == pytest.approx((dice[0] + dice[1] + dice[3]) / 3)
    # micro: pool TP, FP, FN over classes, then one ratio
    tp = sum(np.sum((pred == c) & (target == c)) for c in range(1, 4))
    wrong = sum(np.sum((pred == c) != (target == c)) for c in range(1, 4))
    assert float(metrics.mean_iou(cm, include_background=False, average="micro")) == pytest.approx(tp / (tp + wrong))
    assert float(metrics.mean_dice(cm, average="micro")) == pytest.approx(float(metrics.pixel_accuracy(cm)))
    with pytest.raises(ValueError, match="'samples'"):
        metrics.mean_iou(cm, average="samples")


def test_empty_matrix_gives_nan_not_a_warning():
    cm = np.zeros((3, 3), dtype=np.int64)
    assert np.isnan(metrics.iou(cm)).all() and math.isnan(float(metrics.mean_iou(cm)))
    assert math.isnan(float(metrics.pixel_accuracy(cm)))


def test_meter_accumulates_batches(device):
    meter = metrics.SegmentationMeter(4, ignore_index=255, class_names=["bg", "a", "b", "c"])
    preds, targets = [], []
    for seed in range(3):
        pred, target = batch(seed, ignore=255)
        logits = np.random.default_rng(seed).standard_normal((2, 4, 6, 7))
        logits[np.arange(2)[:, None, None], pred, np.arange(6)[:, None], np.arange(7)] += 10  # argmax = pred
        meter.update(msn.tensor(logits, device=device), msn.tensor(target, device=device))
        preds.append(pred)
        targets.append(target)
    out = meter.compute()
    pred, target = np.concatenate(preds), np.concatenate(targets)
    iou, dice = naive.per_class_iou_dice(pred, target, 4, 255)
    assert out["iou"] == pytest.approx(iou) and out["dice"] == pytest.approx(dice)
    assert out["miou"] == pytest.approx(np.mean(iou)) and out["fg_miou"] == pytest.approx(np.mean(iou[1:]))
    assert out["mean_dice"] == pytest.approx(np.mean(dice))
    assert out["pixel_acc"] == pytest.approx(np.mean(pred[target != 255] == target[target != 255]))
    assert out["confusion_matrix"] == naive.confusion_matrix(pred, target, 4, 255).tolist()
    assert out["class_names"] == ["bg", "a", "b", "c"] and isinstance(out["miou_micro"], float)
    meter.reset()
    meter.update(pred, target)  # labels work as well as scores
    assert meter.compute()["iou"] == pytest.approx(iou)


def test_metrics_bad_input():
    pred, target = batch()
    with pytest.raises(ValueError, match=r"\(2, 6, 7\) != target shape \(2, 6\)"):
        metrics.confusion_matrix(pred, target[:, :, 0], 4)
    with pytest.raises(TypeError, match="target must hold integer labels, got dtype float64"):
        metrics.confusion_matrix(pred, target.astype(float), 4)
    with pytest.raises(ValueError, match=r"target holds label 255; expected \[0, 4\)"):
        metrics.confusion_matrix(pred, np.where(target == 0, 255, target), 4)
    with pytest.raises(ValueError, match=r"pred holds label 7"):
        metrics.confusion_matrix(np.where(pred == 0, 7, pred), target, 4)
    with pytest.raises(ValueError, match="3 names for num_classes=4"):
        metrics.SegmentationMeter(4, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="5 channels but num_classes=4"):
        metrics.SegmentationMeter(4).update(np.zeros((2, 5, 6, 7)), target)
