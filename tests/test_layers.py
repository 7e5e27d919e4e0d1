"""minisegnet/layers.py: the layer classes' own behaviour beyond their ops (tested in tests/test_norm.py etc.)."""

import numpy as np

import minisegnet as msn
from minisegnet.layers import BatchNorm2d


def test_batch_norm_keeps_its_running_statistics_when_a_batch_is_not_finite(device):
    bn = BatchNorm2d(3).to(device)
    x = np.random.default_rng(0).random((2, 3, 4, 4)).astype(np.float32)
    bn(msn.tensor(x).to(device))
    mean, var = msn.to_numpy(bn.running_mean).copy(), msn.to_numpy(bn.running_var).copy()
    x[0, 1, 0, 0] = np.nan
    bn(msn.tensor(x).to(device))
    got_mean, got_var = msn.to_numpy(bn.running_mean), msn.to_numpy(bn.running_var)
    assert np.isfinite(got_mean).all() and np.isfinite(got_var).all()
    assert got_mean[1] == mean[1] and got_var[1] == var[1]  # the poisoned channel is left as it was
    assert got_mean[0] != mean[0]  # the others still learn from the batch
