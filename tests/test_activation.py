"""ops/activation.py: relu, sigmoid, tanh, softmax, log_softmax, dropout."""

import numpy as np
import pytest

import minisegnet as msn
import minisegnet.ops as F

from utils import rand, rel_error, to_torch, torch

CASES = {
    "relu": F.relu,
    "sigmoid": F.sigmoid,
    "tanh": F.tanh,
    "softmax": lambda x: F.softmax(x, axis=1),
    "log_softmax": lambda x: F.log_softmax(x, axis=1),
    "softmax_last": lambda x: F.softmax(x, axis=-1),
}


# Each activation is gradchecked by its cases in minisegnet/gradcheck/cases.py (tests/test_gradcheck_cases.py
# runs the table on both backends), so no second copy of them here.


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "softmax", "log_softmax"])
def test_activation_matches_torch(name):
    torch_ = torch()
    x = rand(2, 3, 4, 5)
    y = CASES[name](x)
    g = np.random.default_rng(1).standard_normal(y.shape)
    y.backward(g)
    tx = to_torch(x, True)
    fn = {
        "relu": torch_.relu,
        "sigmoid": torch_.sigmoid,
        "tanh": torch_.tanh,
        "softmax": lambda t: torch_.softmax(t, 1),
        "log_softmax": lambda t: torch_.log_softmax(t, 1),
    }[name]
    ty = fn(tx)
    ty.backward(torch_.from_numpy(g))
    assert rel_error(y, ty.detach().numpy()) < 1e-13
    assert rel_error(x.grad, tx.grad.numpy()) < 1e-13


def test_softmax_is_stable_for_huge_scores(device):
    x = msn.tensor([[1000.0, 0.0, -1000.0]], device=device)
    np.testing.assert_allclose(F.softmax(x).numpy(), [[1.0, 0.0, 0.0]])
    assert np.isfinite(F.log_softmax(x).numpy()).all()
    assert np.isfinite(F.sigmoid(msn.tensor([-1000.0, 1000.0], device=device)).numpy()).all()


def test_dropout_scales_and_masks_consistently(device):
    x = msn.tensor(np.ones((4, 8, 5, 5)), device=device, requires_grad=True)
    y = F.dropout(x, p=0.5)
    kept = y.numpy() != 0
    np.testing.assert_allclose(y.numpy()[kept], 2.0)
    y.sum().backward()
    np.testing.assert_array_equal(msn.to_numpy(x.grad) != 0, kept)
    z = F.dropout2d(x, p=0.5).numpy()
    assert all(len(np.unique(z[n, c])) == 1 for n in range(4) for c in range(8))  # whole channels
    assert F.dropout(x, 0.5, training=False) is x


def test_dropout_rejects_bad_probability():
    with pytest.raises(ValueError, match="1.5"):
        F.dropout(msn.tensor([1.0]), p=1.5)


@pytest.mark.parametrize("shape", [(), (0, 3), (1, 4), (3, 3, 4, 5)])
def test_relu_fast_path_is_the_reference_bit_for_bit(device, shape, threads, blocks):
    a = np.random.default_rng(2).standard_normal(shape)
    if a.size > 4:
        a.flat[:4] = [np.nan, np.inf, 0.0, -0.0]  # NaN stays NaN, and passes no gradient; 0 passes none either
    x = msn.tensor(a, device=device)
    gy = msn.backend.to_device(np.random.default_rng(3).standard_normal(shape), device)
    runs = []
    for reference in (True, False):
        with msn.reference_kernels(reference):
            x.requires_grad, x.grad = True, None
            y = F.relu(x)
            y.backward(gy)
            runs.append((y.numpy(), msn.to_numpy(x.grad)))
    for r, f in zip(*runs):
        np.testing.assert_array_equal(f, r)
    y = runs[1][0][~np.isnan(runs[1][0])]
    assert (y >= 0).all() and np.array_equal(runs[1][1] != 0, runs[1][0] > 0)


def test_relu_keeps_its_output_not_a_mask_and_maps_minus_inf_to_0_like_torch(device):
    torch_ = torch()
    a = np.array([[-np.inf, -2.0, 0.0, 3.0, np.inf, np.nan]])
    x = msn.tensor(a, device=device, requires_grad=True)
    y = F.relu(x)
    assert y.creator.y is y.data and not hasattr(y.creator, "mask")  # the graph holds y, which it holds anyway
    y.backward(msn.backend.to_device(np.full(a.shape, 5.0), device))
    tx = torch_.tensor(a, requires_grad=True)
    ty = torch_.relu(tx)
    ty.backward(torch_.full(a.shape, 5.0, dtype=torch_.float64))
    np.testing.assert_array_equal(y.numpy(), ty.detach().numpy())  # relu(-inf) = 0, relu(nan) = nan
    # At NaN, torch passes gy; the taught mask x > 0 passes nothing, and so does the fast path.
    np.testing.assert_array_equal(msn.to_numpy(x.grad), np.append(tx.grad.numpy()[:, :5], [[0.0]], axis=1))
    with msn.reference_kernels():
        np.testing.assert_array_equal(F.relu(msn.tensor(a, device=device)).numpy(), ty.detach().numpy())


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "softmax_last"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_fast_paths_match_the_reference(device, name, dtype):
    # Scores far from 0 and far apart: the shift by the max must come first; gy in float64 for float32 outputs.
    a = 30 * np.random.default_rng(4).standard_normal((2, 5, 3, 4)) + 100
    gy = np.random.default_rng(5).standard_normal(a.shape)
    runs = []
    for reference in (True, False):
        with msn.reference_kernels(reference):
            x = msn.tensor(a.astype(dtype), device=device, requires_grad=True)
            y = CASES[name](x)
            assert type(y.creator).__module__.endswith("fast.activation") != reference
            y.backward(msn.backend.to_device(gy.astype(dtype if name == "softmax" else np.float64), device))
            runs.append((y, x.grad))
    tol = 1e-12 if dtype == np.float64 else 2e-6
    for r, f in zip(*runs):
        assert f.dtype == r.dtype and rel_error(f, r) <= tol
