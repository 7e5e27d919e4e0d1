"""ops/array.py: reductions, reshape/transpose, getitem, concat, pad, center_crop."""

import numpy as np
import pytest

import minisegnet as msn
import minisegnet.ops as F
from minisegnet.gradcheck import gradcheck

from utils import rand, rel_error, to_torch, torch

CASES = {
    "sum_all": lambda x: F.sum(x),
    "sum_axis": lambda x: F.sum(x, axis=1),
    "sum_axes_keepdims": lambda x: F.sum(x, axis=(0, 2), keepdims=True),
    "mean_all": lambda x: F.mean(x),
    "mean_neg_axis": lambda x: F.mean(x, axis=-1),
    "max_all": lambda x: F.max(x),
    "max_axis": lambda x: F.max(x, axis=1),
    "max_axes_keepdims": lambda x: F.max(x, axis=(1, 2), keepdims=True),
    "reshape": lambda x: F.reshape(x, (3, -1)),
    "transpose": lambda x: F.transpose(x, (2, 0, 1)),
    "transpose_reverse": lambda x: x.T,
    "broadcast_to": lambda x: F.broadcast_to(x[:, :1], (5, 2, 3, 4)),
    "getitem": lambda x: x[1:, ::2, None, -1],
    "getitem_ellipsis": lambda x: x[..., 1:3],
    "pad": lambda x: F.pad(x, ((0, 0), (1, 2), (2, 1))),
    "pad_int": lambda x: F.pad(x, 1, value=3.0),
    "center_crop": lambda x: F.center_crop(x, (2, 3)),
}


@pytest.mark.parametrize("name", CASES)
def test_array_op_gradcheck(device, name):
    rep = gradcheck(CASES[name], rand(2, 3, 4, device=device))
    assert rep.max_rel_err <= 1e-6, rep


def test_concat_gradcheck_three_inputs(device):
    xs = [rand(2, c, 3, 3, device=device, seed=c) for c in (1, 2, 3)]
    rep = gradcheck(lambda *ts: F.concat(ts, axis=1), *xs)
    assert rep.max_rel_err <= 1e-6, rep


def test_max_gradient_goes_to_the_first_maximum(device):
    x = msn.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], device=device, requires_grad=True)
    F.max(x, axis=1).sum().backward()
    np.testing.assert_array_equal(msn.to_numpy(x.grad), [[0, 1, 0], [1, 0, 0]])


def test_reductions_match_torch():
    torch_ = torch()
    x = rand(2, 3, 4)
    tx = to_torch(x)
    assert rel_error(F.sum(x, axis=(0, 2)), tx.sum(dim=(0, 2)).numpy()) < 1e-14
    assert rel_error(F.mean(x, axis=1, keepdims=True), tx.mean(dim=1, keepdim=True).numpy()) < 1e-14
    assert rel_error(F.max(x, axis=2), tx.max(dim=2).values.numpy()) < 1e-14
    assert torch_.is_tensor(tx)


def test_concat_error_names_both_shapes_and_the_axis():
    a, b = msn.tensor(np.zeros((2, 16, 30, 30))), msn.tensor(np.zeros((2, 16, 31, 31)))
    with pytest.raises(ValueError, match=r"\(2, 16, 30, 30\) and \(2, 16, 31, 31\) differ on axes \[2, 3\]"):
        F.concat([a, b], axis=1)
    with pytest.raises(ValueError, match="at least one"):
        F.concat([])


def test_errors_are_clear():
    x = msn.tensor(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"reshape .* \(2, 3, 4\) into \(5,\)"):
        F.reshape(x, (5,))
    with pytest.raises(ValueError, match="permutation"):
        F.transpose(x, (0, 0, 1))
    with pytest.raises(TypeError, match="basic indexing"):
        x[np.array([0, 1])]
    with pytest.raises(IndexError, match=r"\(2, 3, 4\)"):
        x[5]
    with pytest.raises(ValueError, match="larger than the input"):
        F.center_crop(x, (5, 5))
    with pytest.raises(ValueError, match="axis 3"):
        F.sum(x, axis=3)
    with pytest.raises(ValueError, match=">= 0"):
        F.pad(x, -1)
