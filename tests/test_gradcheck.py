"""minisegnet.gradcheck: it passes right gradients and catches wrong ones, naming the element."""

import numpy as np
import pytest

import minisegnet as msn
import minisegnet.ops as F
from minisegnet.gradcheck import GradcheckError, gradcheck
from minisegnet.tensor import Function

from utils import rand


class WrongExp(Function):
    """exp whose backward is off by 1% at one element: the kind of bug gradcheck exists for."""

    def forward(self, x):
        self.y = msn.get_array_module(x).exp(x)
        return self.y

    def backward(self, gy):
        gx = gy * self.y
        gx[1, 2] *= 1.01
        return gx


class ReversedBackward(Function):
    """y = 2 * x, but backward returns the gradient reversed: invisible to a plain sum."""

    def forward(self, x):
        return 2 * x

    def backward(self, gy):
        return 2 * gy[::-1]


def test_correct_gradient_passes_in_both_modes(device):
    x = rand(3, 4, device=device)
    for mode in ("full", "random"):
        rep = gradcheck(F.tanh, x, mode=mode)
        assert rep.ok and rep.max_rel_err <= 1e-8 and bool(rep)
        assert "ok" in str(rep)


def test_wrong_backward_fails_and_names_the_element(device):
    x = rand(3, 4, device=device)
    rep = gradcheck(lambda t: WrongExp()(t), x, raise_exception=False)
    assert not rep.ok
    assert rep.worst["input"] == 0 and rep.worst["index"] == (1, 2)
    assert rep.worst["analytic"] == pytest.approx(1.01 * rep.worst["numeric"], rel=1e-6)
    assert "index (1, 2)" in str(rep) and "FAILED" in str(rep)
    with pytest.raises(GradcheckError, match=r"index \(1, 2\)"):
        gradcheck(lambda t: WrongExp()(t), x)


def test_random_mode_also_catches_the_wrong_backward(device):
    rep = gradcheck(lambda t: WrongExp()(t), rand(3, 4, device=device), mode="random", raise_exception=False)
    assert not rep.ok


def test_random_upstream_gradient_catches_what_a_plain_sum_hides(device):
    x = rand(5, device=device)
    y = ReversedBackward()(x)
    y.sum().backward()  # with an all-ones upstream gradient the reversal is invisible...
    np.testing.assert_allclose(msn.to_numpy(x.grad), 2.0)
    x.grad = None
    assert not gradcheck(lambda t: ReversedBackward()(t), x, raise_exception=False).ok  # ...not with a random one


def test_several_inputs_and_a_non_differentiable_one(device):
    a, b = rand(2, 3, device=device), rand(2, 3, device=device, seed=1)
    c = rand(2, 3, device=device, seed=2, requires_grad=False)
    rep = gradcheck(lambda p, q, r: p * q + r, a, b, c)
    assert [row["input"] for row in rep.rows] == [0, 1]


def test_float32_warns_and_no_grad_input_is_an_error():
    with pytest.warns(UserWarning, match="float64"):
        gradcheck(F.tanh, rand(3, dtype=np.float32), atol=1e-2, rtol=1e-2)
    with pytest.raises(ValueError, match="no input requires grad"):
        gradcheck(F.tanh, rand(3, requires_grad=False))
    with pytest.raises(ValueError, match="'fast'"):
        gradcheck(F.tanh, rand(3), mode="fast")


def test_inputs_are_restored_after_checking(device):
    x = rand(3, 3, device=device)
    before = x.numpy()
    gradcheck(F.exp, x)
    np.testing.assert_array_equal(x.numpy(), before)


def test_non_contiguous_inputs_are_perturbed_for_real(device):
    x = rand(4, 3, device=device)
    xt = type(x)(x.data.T, requires_grad=True)  # a transposed view: reshape(-1) of it would be a copy
    rep = gradcheck(F.exp, xt)
    assert rep.ok and rep.max_rel_err <= 1e-8
