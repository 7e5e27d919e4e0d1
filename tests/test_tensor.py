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


# ---- every leaf owns its .grad (PyTorch's contract) ------------------------------------------------

GRAPHS = {
    "sum": lambda a, b: a.sum() + b.sum(),
    "mean": lambda a, b: a.mean() + b.mean(),
    "broadcast add": lambda a, b: (a + b[0]).sum(),
    "add": lambda a, b: (a + b).sum(),
    "reshape": lambda a, b: (a.reshape(6) + b.reshape(6)).sum(),
    "transpose": lambda a, b: (a.T * b.T).sum(),
    "concat": lambda a, b: (F.concat([a, b], axis=0) * 2).sum(),
    "getitem": lambda a, b: (a[0] + b[1]).sum(),
}


def _leaf_memory_is_private(leaves, others=()):
    xp = msn.get_array_module(leaves[0].data)
    grads = [p.grad for p in leaves]
    for i, g in enumerate(grads):
        assert g.shape == leaves[i].shape and g.dtype == leaves[i].dtype and g.flags.c_contiguous
        for h in grads[i + 1 :] + list(others):
            assert not xp.shares_memory(g, h), "two leaves (or a leaf and the caller) share one gradient array"


@pytest.mark.parametrize("graph", GRAPHS)
def test_every_leaf_gets_its_own_writable_grad(device, graph):
    a = rand(2, 3, device=device)
    b = rand(2, 3, device=device, seed=1)
    GRAPHS[graph](a, b).backward()
    _leaf_memory_is_private([a, b])
    before = msn.to_numpy(b.grad).copy()
    a.grad *= 0.5  # in-place clipping: the first thing a student writes
    np.testing.assert_array_equal(msn.to_numpy(b.grad), before)


def test_add_gives_the_two_leaves_two_arrays_not_the_callers(device):
    a = rand(2, 3, device=device)
    b = rand(2, 3, device=device, seed=1)
    g = msn.to_device(np.ones((2, 3)), device)
    (a + b).backward(g)
    assert a.grad is not b.grad
    _leaf_memory_is_private([a, b], [g])
    a.grad *= 0.5
    np.testing.assert_array_equal(msn.to_numpy(g), 1.0)
    np.testing.assert_array_equal(msn.to_numpy(b.grad), 1.0)


def test_a_leaf_called_backward_on_copies_the_callers_grad(device):
    x = rand(3, device=device)
    g = msn.to_device(np.full(3, 2.0), device)
    x.backward(g)
    x.grad *= 0.5
    np.testing.assert_array_equal(msn.to_numpy(g), 2.0)
    x.backward(g)
    np.testing.assert_array_equal(msn.to_numpy(x.grad), 3.0)


def test_a_view_of_the_callers_grad_is_copied(device):
    x = rand(2, 3, device=device)
    g = msn.to_device(np.ones(6), device)
    x.reshape(6).backward(g)  # reshape's backward hands on a view of g
    _leaf_memory_is_private([x], [g])


def test_accumulation_over_two_backward_calls_stays_private(device):
    a = rand(2, 3, device=device)
    b = rand(2, 3, device=device, seed=1)
    for _ in range(2):
        (a + b).sum().backward()
    np.testing.assert_array_equal(msn.to_numpy(a.grad), 2.0)
    _leaf_memory_is_private([a, b])
    b.grad *= 0.5
    np.testing.assert_array_equal(msn.to_numpy(a.grad), 2.0)


def test_a_gradient_of_another_dtype_is_cast_to_the_leafs():
    a = rand(3, dtype=np.float32)
    b = rand(3, seed=1)  # float64: a * b is float64, and so is gy * b
    (a * b).sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64


@pytest.mark.parametrize("transposed", [False, True], ids=["conv2d", "conv_transpose2d"])
def test_conv_gradients_survive_the_next_convolution(device, transposed):
    # The convolutions reuse scratch buffers: no leaf's gradient may be one of them.
    x = rand(2, 3, 6, 6, device=device)
    W = rand(3 if transposed else 4, 4 if transposed else 3, 3, 3, device=device, seed=1)
    y = F.conv_transpose2d(x, W, stride=2, padding=1) if transposed else F.conv2d(x, W, padding=1)
    y.sum().backward()
    gx = msn.to_numpy(x.grad).copy()
    gW = msn.to_numpy(W.grad).copy()
    z = rand(2, 3, 6, 6, device=device, seed=2, requires_grad=False)
    V = rand(4, 3, 3, 3, device=device, seed=3)
    F.conv2d(z, V, padding=1).sum().backward()
    F.conv2d(z, V, stride=2).sum().backward()
    np.testing.assert_array_equal(msn.to_numpy(x.grad), gx)
    np.testing.assert_array_equal(msn.to_numpy(W.grad), gW)


def test_no_grad_nests_is_reusable_and_decorates():
    from minisegnet.tensor import is_grad_enabled

    switch = msn.no_grad()
    with switch:
        with switch:  # the same object inside itself
            assert not is_grad_enabled()
        assert not is_grad_enabled()
    assert is_grad_enabled()
    with switch:
        assert not is_grad_enabled()
    assert is_grad_enabled()

    @msn.no_grad()
    def inside():
        return is_grad_enabled()

    assert inside() is False and is_grad_enabled()
