"""metrics.py's averages, ignore_index, empty-class policy and per-image scores against torchmetrics."""

import numpy as np
import pytest

from minisegnet import metrics


def _labels(seed=0, C=4):
    rng = np.random.default_rng(seed)
    p, t = rng.integers(0, C, (4, 6, 7)), rng.integers(0, C, (4, 6, 7))
    p[p == 3], t[t == 3] = 2, 2  # class 3 absent from both
    t[0][t[0] == 2] = 0  # image 0 lacks class 2 in the target
    return p, t


@pytest.mark.parametrize("average", ["macro", "micro", "weighted", "none"])
@pytest.mark.parametrize("ignore_index", [None, 1])
def test_jaccard_index_matches_torchmetrics(average, ignore_index):
    torch = pytest.importorskip("torch")
    tmc = pytest.importorskip("torchmetrics.classification")
    p, t = _labels()
    ref = tmc.MulticlassJaccardIndex(4, average=average, ignore_index=ignore_index)
    expected = ref(torch.tensor(p), torch.tensor(t)).numpy()
    cm = metrics.confusion_matrix(p, t, 4, ignore_index)
    if average == "none":  # torchmetrics' zero_division=0 is empty="zero"
        got = metrics.iou(cm, empty="zero")
    else:
        got = metrics.mean_iou(cm, average=average, ignore_index=ignore_index)
    assert np.allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_per_image_scores_match_torchmetrics_segmentation():
    torch = pytest.importorskip("torch")
    seg = pytest.importorskip("torchmetrics.segmentation")
    p, t = _labels(1)
    cms = metrics.confusion_matrices(p, t, 4)
    iou = seg.MeanIoU(num_classes=4, input_format="index", per_class=True)(torch.tensor(p), torch.tensor(t))
    got = np.nanmean(metrics.iou(cms)[:, :3], axis=0)  # class 3 is absent everywhere
    assert np.allclose(got, iou.numpy()[:3], rtol=1e-6)
    dice = seg.DiceScore(num_classes=4, input_format="index", average="macro")(torch.tensor(p), torch.tensor(t))
    assert metrics.mean_dice(cms).mean() == pytest.approx(dice.item(), rel=1e-6)


def test_per_image_matrices_sum_to_the_data_set_matrix():
    p, t = _labels(2)
    t[1, 0] = 255
    cms = metrics.confusion_matrices(p, t, 4, ignore_index=255)
    assert cms.shape == (4, 4, 4)
    assert np.array_equal(cms.sum(0), metrics.confusion_matrix(p, t, 4, ignore_index=255))


def test_empty_class_policies():
    # class 1: predicted but absent from the target; class 2: absent from both.
    cm = np.array([[5, 1, 0], [0, 0, 0], [0, 0, 0]])
    assert np.allclose(metrics.iou(cm), [5 / 6, 0, np.nan], equal_nan=True)
    assert np.allclose(metrics.iou(cm, empty="zero"), [5 / 6, 0, 0])
    assert np.allclose(metrics.dice(cm, empty="one"), [10 / 11, 0, 1])  # Kaggle: both empty = 1
    assert np.allclose(metrics.dice(cm, empty="ignore_empty"), [10 / 11, np.nan, np.nan], equal_nan=True)  # MONAI
    assert metrics.mean_iou(cm) == pytest.approx((5 / 6) / 2)
    assert metrics.mean_iou(cm, empty="one") == pytest.approx((5 / 6 + 1) / 3)
    assert metrics.mean_iou(cm, empty="ignore_empty") == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="empty must be one of 'nan', 'zero', 'one', 'ignore_empty', got 'skip'"):
        metrics.iou(cm, empty="skip")
    with pytest.raises(ValueError, match="got 'skip'"):
        metrics.SegmentationMeter(3, empty="skip")


def test_meter_reports_weighted_per_image_and_leaves_an_ignored_class_out():
    p, t = _labels(3)
    meter = metrics.SegmentationMeter(4, ignore_index=0, empty="nan")
    meter.update(p[:2], t[:2])
    meter.update(p[2:], t[2:])
    r = meter.compute()
    cm = metrics.confusion_matrix(p, t, 4, ignore_index=0)
    assert r["miou"] == pytest.approx(np.nanmean(metrics.iou(cm)[1:]))  # class 0 (ignored) not in the mean
    assert r["miou_weighted"] == pytest.approx(float(metrics.mean_iou(cm, average="weighted", ignore_index=0)))
    cms = metrics.confusion_matrices(p, t, 4, ignore_index=0)
    assert r["miou_per_image"] == pytest.approx(np.nanmean(metrics.mean_iou(cms, ignore_index=0)))
    assert r["empty"] == "nan"


@pytest.mark.parametrize("ignore_empty,empty", [(True, "ignore_empty"), (False, "one")])
def test_per_image_dice_matches_monai_dice_metric(ignore_empty, empty):
    torch = pytest.importorskip("torch")
    mm = pytest.importorskip("monai.metrics")
    p, t = _labels(4)
    p[1][p[1] == 2] = 0  # image 1: class 2 in the target only; class 3 absent everywhere
    onehot = [torch.tensor(np.eye(4)[a].transpose(0, 3, 1, 2)) for a in (p, t)]
    ref = mm.DiceMetric(include_background=True, reduction="none", ignore_empty=ignore_empty)(*onehot).numpy()
    got = metrics.dice(metrics.confusion_matrices(p, t, 4), empty=empty)
    assert np.allclose(got, ref, rtol=1e-6, equal_nan=True)
