"""minisegnet.tensor: Tensor, Function wiring, backward order, accumulation, no_grad, memory release."""

import gc
import sys
import weakref

import numpy as np
import pytest

import minisegnet as msn
import minisegnet.ops as F
from minisegnet.tensor import Function

from utils import rand


def test_tensor_attributes_and_conversions(device):
    x = msn.tensor([[1.0, 2.0], [3.0, 4.0]], device=device, requires_grad=True)
    assert x.shape == (2, 2) and x.dtype == np.float64 and x.ndim == 2 and x.size == 4
    assert x.device == device and x.requires_grad and x.is_leaf
    assert isinstance(x.numpy(), np.ndarray)
    assert msn.tensor(3.5, device=device).item() == 3.5
    assert not x.detach().requires_grad
    assert "requires_grad=True" in repr(x)
    assert msn.tensor([1, 2], dtype=np.float32).dtype == np.float32


def test_item_needs_one_element():
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        msn.tensor([1.0, 2.0]).item()


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="int64"):
        msn.tensor([1, 2], requires_grad=True)


def test_backward_simple_graph(device):
    x = msn.tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
    y = (x * x + 3 * x).sum()
    y.backward()
    np.testing.assert_allclose(msn.to_numpy(x.grad), 2 * np.array([1.0, 2.0, 3.0]) + 3)


def test_diamond_graph_accumulates_both_paths(device):
    # y = a*b + a*c with b = 2a, c = a^2: dy/da = 4a + 3a^2 through three paths into a.
    a = msn.tensor([0.5, -1.5], device=device, requires_grad=True)
    b, c = a * 2, a**2
    y = (a * b + a * c).sum()
    y.backward()
    av = np.array([0.5, -1.5])
    np.testing.assert_allclose(msn.to_numpy(a.grad), 4 * av + 3 * av**2)


def test_gradients_accumulate_across_calls_until_zero_grad(device):
    x = msn.tensor([1.0, 2.0], device=device, requires_grad=True)
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(msn.to_numpy(x.grad), [6.0, 6.0])
    x.zero_grad()
    assert x.grad is None


def test_broadcasting_gradients_are_summed_back(device):
    x = rand(2, 3, 4, device=device)
    b = rand(3, 1, device=device, seed=1)
    (x * b).sum().backward()
    np.testing.assert_allclose(msn.to_numpy(b.grad), msn.to_numpy(x.data).sum(axis=(0, 2))[:, None])


def test_deep_chain_has_no_recursion_limit(device):
    x = msn.tensor(np.ones(3), device=device, requires_grad=True)
    y = x
    n = max(5000, sys.getrecursionlimit() + 100)
    for _ in range(n):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(msn.to_numpy(x.grad), np.full(3, 1.0001**n), rtol=1e-12)


def test_no_grad_records_no_graph(device):
    x = msn.tensor([1.0], device=device, requires_grad=True)
    with msn.no_grad():
        y = x * 2
    assert not y.requires_grad and y.creator is None
    assert msn.is_grad_enabled()


def test_requires_grad_propagates_only_from_inputs_that_require_it(device):
    a = msn.tensor([1.0], device=device)
    b = msn.tensor([2.0], device=device, requires_grad=True)
    assert not (a * a).requires_grad
    assert (a * b).requires_grad


def test_backward_needs_grad_for_non_scalar_and_checks_its_shape(device):
    x = rand(2, 3, device=device)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"shape \(2, 3\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"\(3,\)"):
        y.backward(np.ones(3))


def test_backward_on_tensor_without_grad_is_an_error():
    with pytest.raises(RuntimeError, match="does not require grad"):
        msn.tensor([1.0]).backward()


def test_graph_is_freed_after_backward(device):
    x = rand(4, device=device)
    h = F.exp(x)
    y = (h * 2).sum()
    ref = weakref.ref(h.creator)
    del h
    y.backward()
    gc.collect()
    assert ref() is None, "the Exp node (and the arrays it saved) should be released"
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_retain_graph_allows_a_second_backward(device):
    x = rand(3, device=device)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(msn.to_numpy(x.grad), 4 * msn.to_numpy(x.data))


def test_unused_output_of_multi_output_function_gets_zero_gradient(device):
    class Split(Function):
        def forward(self, x):
            return x[:2].copy(), x[2:].copy()

        def backward(self, g1, g2):
            xp = msn.get_array_module(g1)
            return xp.concatenate([g1, g2])

    x = rand(5, device=device)
    first, _ = Split()(x)
    (first * 3).sum().backward()
    np.testing.assert_allclose(msn.to_numpy(x.grad), [3, 3, 0, 0, 0])


def test_wrong_gradient_shape_from_backward_is_reported():
    class Bad(Function):
        def forward(self, x):
            return x * 2

        def backward(self, gy):
            return gy[:1]

    with pytest.raises(RuntimeError, match=r"Bad.backward returned a gradient of shape \(1,\)"):
        Bad()(msn.tensor([1.0, 2.0], requires_grad=True)).sum().backward()


def test_to_device_is_differentiable(device):
    x = rand(3, device="cpu")
    y = x.to(device)
    assert y.device == device
    (y * 2).sum().backward()
    np.testing.assert_allclose(x.grad, [2.0, 2.0, 2.0])


def test_numpy_array_on_the_left_of_an_operator_gives_a_tensor():
    x = msn.tensor([1.0, 2.0], requires_grad=True)
    y = np.array([3.0, 4.0]) * x
    assert isinstance(y, msn.Tensor)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [3.0, 4.0])


def test_python_numbers_keep_float32(device):
    x = rand(3, device=device, dtype=np.float32)
    assert (x * 2.5 + 1).dtype == np.float32
    assert (1.0 / x - 2).dtype == np.float32


def test_fork_of_an_intermediate_reached_first_by_a_short_path():
    # b feeds the sum directly and through a longer path; b's creator must run after both have added
    # their gradient (a topological-order bug once sent only the short path's gradient back).
    a = msn.tensor([1.0, 2.0], requires_grad=True)
    b = a * 1.0
    (b + b * 2).sum().backward()
    np.testing.assert_allclose(a.grad, [3.0, 3.0])


def test_tensor_of_an_array_stays_on_its_device(device, monkeypatch):
    monkeypatch.setenv("MINISEGNET_DEVICE", "cpu")
    a = msn.to_device(np.ones(3), device)
    assert msn.tensor(a).device == device
    assert msn.tensor([1.0, 2.0]).device == "cpu"
