"""ops/weightmap.py: the U-Net border weight map against a brute-force loop version."""

import math

import numpy as np
import pytest

import minisegnet as msn
import minisegnet.ops as F
from minisegnet.backend import to_device

import naive


def scene():
    """Two class-1 blobs with a 2-pixel gap, a class-2 blob touching nothing, one class-1 pixel alone."""
    m = np.zeros((14, 16), dtype=np.int64)
    m[2:6, 2:6] = 1
    m[2:6, 8:12] = 1
    m[9:13, 3:9] = 2
    m[12, 14] = 1
    return m


def test_border_term_matches_brute_force(device):
    m = scene()
    w = F.unet_weight_map(to_device(m, device), w0=10, sigma=3, class_weights=None)
    assert msn.backend.device_of(w) == device and w.dtype == np.float32 and w.shape == m.shape
    expected = 1.0 + naive.unet_border_term(m, 10, 3)
    np.testing.assert_allclose(msn.to_numpy(w), expected, rtol=1e-6)


def test_balanced_class_weights():
    m = np.zeros((10, 10), dtype=np.int64)
    m[2:4, 2:7] = 1  # one object only: no border term, just w_c
    w = F.unet_weight_map(m)
    n1 = 10
    assert w[m == 1] == pytest.approx(100 / (2 * n1)) and w[m == 0] == pytest.approx(100 / (2 * (100 - n1)))
    assert w.mean() == pytest.approx(1.0)  # inverse frequency normalised so the image's mean weight is 1
    assert w[3, 3] / w[0, 0] == pytest.approx((100 - n1) / n1)


def test_given_class_weights_and_the_gap():
    m = scene()
    w = F.unet_weight_map(m, w0=10, sigma=5, class_weights={0: 1.0, 1: 2.0, 2: 3.0})
    border = naive.unet_border_term(m, 10, 5)
    np.testing.assert_allclose(w, np.array([1.0, 2.0, 3.0])[m] + border, rtol=1e-6)
    np.testing.assert_allclose(F.unet_weight_map(m, 10, 5, class_weights=np.array([1.0, 2.0, 3.0])), w)
    # In the 2-pixel gap between the two class-1 blobs, d1 = 1 and d2 = 2: the weight peaks there.
    assert w[3, 6] == pytest.approx(1.0 + 10 * math.exp(-9 / 50), rel=1e-6)
    assert w[3, 6] > w[8, 14]


def test_fewer_than_two_objects_and_batches():
    one = np.zeros((6, 6), dtype=np.int64)
    one[1:3, 1:3] = 1
    assert np.all(F.unet_weight_map(one, class_weights=None) == 1.0)
    assert np.all(F.unet_weight_map(np.zeros((6, 6), dtype=np.int64), class_weights=None) == 1.0)
    two = np.zeros((14, 16), dtype=np.int64)
    two[:6, :6] = scene()[:6, :6]
    batch = np.stack([scene(), two])
    w = F.unet_weight_map(batch)
    assert w.shape == (2, 14, 16) and w.dtype == np.float32
    np.testing.assert_array_equal(w[0], F.unet_weight_map(scene()))
    np.testing.assert_array_equal(w[1], F.unet_weight_map(two))  # balanced per image


def test_weight_map_bad_input():
    with pytest.raises(TypeError, match="integer labels.*float64"):
        F.unet_weight_map(np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(N, H, W\).*\(4,\)"):
        F.unet_weight_map(np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="got -1"):
        F.unet_weight_map(-np.ones((4, 4), dtype=int))
    with pytest.raises(ValueError, match="no entry for label 2"):
        F.unet_weight_map(scene(), class_weights={0: 1.0, 1: 1.0})
    with pytest.raises(ValueError, match="2 entries.*label 2"):
        F.unet_weight_map(scene(), class_weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="'inverse'"):
        F.unet_weight_map(scene(), class_weights="inverse")
    with pytest.raises(ValueError, match="sigma must be > 0, got 0"):
        F.unet_weight_map(scene(), sigma=0)
