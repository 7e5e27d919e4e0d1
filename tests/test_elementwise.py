"""ops/elementwise.py: forward values, float64 gradcheck over broadcasting shapes, torch agreement, errors."""

import numpy as np
import pytest

import minisegnet as msn
import minisegnet.ops as F
from minisegnet.gradcheck import gradcheck
from minisegnet.ops.elementwise import sum_to

from utils import rand, rel_error, to_torch, torch

SHAPE_PAIRS = [
    ((3,), (3,)),
    ((2, 3), (3,)),
    ((2, 1, 4), (3, 1)),
    ((1,), (2, 3)),
    ((2, 3, 4, 5), (1, 3, 1, 1)),
    ((), (2,)),
]
BINARY = {"add": F.add, "sub": F.sub, "mul": F.mul, "div": F.div}


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=str)
def test_binary_ops_gradcheck_with_broadcasting(device, name, shapes):
    a = rand(*shapes[0], device=device)
    b = rand(*shapes[1], device=device, seed=1, low=0.5, high=2.0) if name == "div" else rand(*shapes[1], device=device)
    rep = gradcheck(BINARY[name], a, b)
    assert rep.max_rel_err <= 1e-6, rep


# The unary ops and matmul are gradchecked by their cases in minisegnet/gradcheck/cases.py
# (tests/test_gradcheck_cases.py runs the table on both backends); the grid above adds broadcasting shapes.


def test_operators_match_numpy(device):
    a, b = rand(2, 3, device=device), rand(2, 3, device=device, seed=1, low=1.0, high=2.0)
    an, bn = msn.to_numpy(a.data), msn.to_numpy(b.data)
    for got, want in [
        (a + b, an + bn),
        (a - b, an - bn),
        (a * b, an * bn),
        (a / b, an / bn),
        (-a, -an),
        (b**2, bn**2),
        (2 - a, 2 - an),
        (1 / b, 1 / bn),
        (a @ b.T, an @ bn.T),
    ]:
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-15)


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
def test_binary_ops_match_torch(name):
    torch_ = torch()
    a, b = rand(2, 3, 4), rand(3, 1, seed=1, low=0.5, high=2.0)
    y = BINARY[name](a, b)
    g = np.random.default_rng(2).standard_normal(y.shape)
    y.backward(g)
    ta, tb = to_torch(a, True), to_torch(b, True)
    ty = getattr(torch_, name)(ta, tb)
    ty.backward(torch_.from_numpy(g))
    assert rel_error(y, ty.detach().numpy()) < 1e-14
    assert rel_error(a.grad, ta.grad.numpy()) < 1e-14
    assert rel_error(b.grad, tb.grad.numpy()) < 1e-14


def test_sum_to_is_the_adjoint_of_broadcasting():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((3, 1)), rng.standard_normal((2, 3, 4))
    assert np.isclose((np.broadcast_to(x, y.shape) * y).sum(), (x * sum_to(y, x.shape)).sum())


def test_incompatible_shapes_name_both():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4,\)"):
        msn.tensor(np.ones((2, 3))) + msn.tensor(np.ones(4))


def test_matmul_shape_error_and_pow_needs_a_number():
    with pytest.raises(ValueError, match=r"\(2, 3\) @ \(2, 3\)"):
        F.matmul(msn.tensor(np.ones((2, 3))), msn.tensor(np.ones((2, 3))))
    with pytest.raises(TypeError, match="exponent"):
        F.pow(msn.tensor([1.0]), msn.tensor([2.0]))
