"""metrics_boundary.py: Hausdorff, HD95 and average surface distance, by hand and against MONAI."""

import numpy as np
import pytest

from minisegnet import metrics
from minisegnet import metrics_boundary as mb


def test_two_squares_by_hand():
    pred, target = np.zeros((1, 9, 9), dtype=int), np.zeros((1, 9, 9), dtype=int)
    pred[0, 2:5, 2:5] = 1
    target[0, 2:5, 3:6] = 1  # the same 3 x 3 square moved one pixel right
    assert mb.hausdorff_distance(pred, target, 2)[0, 1] == pytest.approx(1.0)
    d_pt, d_tp = mb.surface_distances(pred[0] == 1, target[0] == 1)
    assert d_pt.size == 8 and d_tp.size == 8  # a 3 x 3 square's boundary is its 8 outer pixels
    assert mb.average_surface_distance(pred, target, 2)[0, 1] == pytest.approx(np.concatenate([d_pt, d_tp]).mean())


def test_empty_classes_are_nan_or_inf():
    pred, target = np.zeros((1, 5, 5), dtype=int), np.zeros((1, 5, 5), dtype=int)
    pred[0, 1, 1] = 1  # class 1 only predicted; class 2 absent from both
    hd = mb.hausdorff_distance(pred, target, 3)
    assert np.isfinite(hd[0, 0]) and np.isinf(hd[0, 1]) and np.isnan(hd[0, 2])
    assert np.isinf(mb.average_surface_distance(pred, target, 3)[0, 1])
    with pytest.raises(ValueError, match="percentile must lie in"):
        mb.hausdorff_distance(pred, target, 3, percentile=101)
    with pytest.raises(ValueError, match="integer label arrays"):
        mb.hausdorff_distance(pred.astype(float), target, 3)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI's own deprecation notice inside get_mask_edges
@pytest.mark.parametrize("percentile", [None, 95])
def test_match_monai(percentile):
    torch = pytest.importorskip("torch")
    mm = pytest.importorskip("monai.metrics")
    rng = np.random.default_rng(0)
    pred = np.zeros((2, 24, 24), dtype=int)
    target = np.zeros((2, 24, 24), dtype=int)
    for n in range(2):
        for c, (y, x) in enumerate(rng.integers(2, 14, (2, 2)), start=1):
            pred[n, y : y + 8, x : x + rng.integers(4, 9)] = c
            target[n, y + rng.integers(-2, 3) : y + 7, x : x + 8] = c
    pred[0, 20:, 20:] = 2  # a stray island far from class 2's target
    onehot = [torch.tensor(np.eye(3)[a].transpose(0, 3, 1, 2)) for a in (pred, target)]
    hd = mm.HausdorffDistanceMetric(include_background=True, percentile=percentile)(*onehot).numpy()
    assert np.allclose(mb.hausdorff_distance(pred, target, 3, percentile), hd, rtol=1e-6)
    asd = mm.SurfaceDistanceMetric(include_background=True, symmetric=True)(*onehot).numpy()
    assert np.allclose(mb.average_surface_distance(pred, target, 3), asd, rtol=1e-6)


def test_the_names_are_in_metrics_too():
    assert metrics.hausdorff_distance is mb.hausdorff_distance
    assert metrics.average_surface_distance is mb.average_surface_distance
