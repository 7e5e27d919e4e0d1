"""minisegnet/ops/norm.py: batch_norm in training and eval mode, running statistics, gradients."""

import numpy as np
import pytest

import minisegnet.ops as F
from minisegnet import Tensor, cuda
from minisegnet.backend import to_device, to_numpy
from minisegnet.gradcheck import gradcheck
from minisegnet.ops.fast.blocks import as_rows
from minisegnet.ops.fast.norm import _statistics
from minisegnet.registry import reference_kernels

from cuda_host import ran, use_host_kernels
from utils import rand, rel_error, to_torch
from utils import torch as get_torch

SHAPES = [(4, 3, 5, 6), (1, 2, 3, 1), (6, 5)]


def stats(C, device, seed=0):
    rng = np.random.default_rng(seed)
    return to_device(rng.standard_normal(C), device), to_device(rng.uniform(0.5, 2.0, C), device)


def numpy_batch_norm(a, mean, var, W, b, eps):
    shape = (1, -1) + (1,) * (a.ndim - 2)
    return (a - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * W.reshape(shape) + b.reshape(shape)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_forward_and_running_stats_by_formula(device, shape, training):
    C, M = shape[1], np.prod(shape) // shape[1]
    x, W, b = rand(*shape, device=device, seed=1), rand(C, device=device, seed=2), rand(C, device=device, seed=3)
    rm, rv = stats(C, device)
    rm0, rv0 = to_numpy(rm).copy(), to_numpy(rv).copy()
    y = F.batch_norm(x, rm, rv, W, b, training, momentum=0.25, eps=1e-3)
    a = to_numpy(x.data)
    axes = (0,) + tuple(range(2, a.ndim))
    if training:
        mean, var = a.mean(axis=axes), a.var(axis=axes)
        np.testing.assert_allclose(to_numpy(rm), 0.75 * rm0 + 0.25 * mean, rtol=1e-12)
        np.testing.assert_allclose(to_numpy(rv), 0.75 * rv0 + 0.25 * var * M / (M - 1), rtol=1e-12)
    else:
        mean, var = rm0, rv0
        np.testing.assert_array_equal(to_numpy(rm), rm0)
        np.testing.assert_array_equal(to_numpy(rv), rv0)
    expected = numpy_batch_norm(a, mean, var, to_numpy(W.data), to_numpy(b.data), 1e-3)
    assert rel_error(y, expected) <= 1e-12


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_matches_torch(device, shape, training, affine):
    torch = get_torch()
    C = shape[1]
    x = rand(*shape, device=device, seed=4)
    W, b = (rand(C, device=device, seed=5), rand(C, device=device, seed=6)) if affine else (None, None)
    rm, rv = stats(C, device, seed=7)
    trm, trv = to_torch(rm), to_torch(rv)
    y = F.batch_norm(x, rm, rv, W, b, training, momentum=0.3, eps=1e-4)
    tx = to_torch(x, requires_grad=True)
    tW, tb = (to_torch(W, True), to_torch(b, True)) if affine else (None, None)
    ty = torch.nn.functional.batch_norm(tx, trm, trv, tW, tb, training, momentum=0.3, eps=1e-4)
    gy = np.random.default_rng(8).standard_normal(shape)
    y.backward(to_device(gy, device))
    ty.backward(torch.from_numpy(gy))
    assert rel_error(y, ty.detach().numpy()) <= 1e-10
    assert rel_error(x.grad, tx.grad.numpy()) <= 1e-10
    assert rel_error(rm, trm.numpy()) <= 1e-12 and rel_error(rv, trv.numpy()) <= 1e-12
    if affine:
        assert rel_error(W.grad, tW.grad.numpy()) <= 1e-10 and rel_error(b.grad, tb.grad.numpy()) <= 1e-10


@pytest.mark.parametrize("shape", [(3, 2, 3, 4), (5, 3)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradcheck(device, shape, training):
    C = shape[1]
    x, W, b = rand(*shape, device=device, seed=9), rand(C, device=device, seed=10), rand(C, device=device, seed=11)
    rm, rv = stats(C, device)
    # momentum 0: gradcheck calls the op many times and must see the same running stats each time.
    fn = lambda x, W, b: F.batch_norm(x, rm, rv, W, b, training, momentum=0.0)  # noqa: E731
    assert gradcheck(fn, x, W, b).max_rel_err <= 1e-6
    assert gradcheck(lambda x: F.batch_norm(x, rm, rv, None, None, training, momentum=0.0), x).max_rel_err <= 1e-6


def test_batch_norm_running_stats_as_tensors_and_none(device):
    x = rand(4, 3, 2, 2, device=device)
    rm, rv = Tensor(to_device(np.zeros(3), device)), Tensor(to_device(np.ones(3), device))
    F.batch_norm(x, rm, rv, training=True)
    assert rel_error(rm, 0.1 * to_numpy(x.data).mean(axis=(0, 2, 3))) <= 1e-12  # updated in place
    y = F.batch_norm(x, None, None, training=True)  # no running stats: batch statistics only
    assert np.abs(to_numpy(y.data).mean(axis=(0, 2, 3))).max() < 1e-12


def test_batch_norm_float32(device):
    x = rand(4, 3, 5, 5, device=device, dtype=np.float32)
    rm, rv = to_device(np.zeros(3, np.float32), device), to_device(np.ones(3, np.float32), device)
    y = F.batch_norm(x, rm, rv, training=True)
    assert y.dtype == np.float32 and rm.dtype == np.float32
    y64 = F.batch_norm(x.data.astype(np.float64), None, None, training=True)
    assert rel_error(y, y64) <= 1e-5


def test_batch_norm_bad_arguments_raise(device):
    x = rand(2, 3, 4, 4, device=device)
    rm, rv = stats(3, device)
    w4 = rand(4, device=device)
    with pytest.raises(ValueError, match=r"\(N, C\) or \(N, C, H, W\), got shape \(2, 3, 4\)"):
        F.batch_norm(rand(2, 3, 4, device=device), rm, rv, training=True)
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\) for x with 3 channels, got \(4,\)"):
        F.batch_norm(x, rm, rv, w4, None, True)
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\)"):
        F.batch_norm(x, rm, rv, None, w4, True)
    with pytest.raises(ValueError, match=r"running_mean must have shape \(3,\)"):
        F.batch_norm(x, w4.data, rv, training=True)
    with pytest.raises(ValueError, match=r"running_var must have shape \(3,\)"):
        F.batch_norm(x, rm, w4.data, training=True)
    with pytest.raises(ValueError, match="needed when training=False"):
        F.batch_norm(x, None, None, training=False)
    with pytest.raises(ValueError, match="both running_mean and running_var"):
        F.batch_norm(x, rm, None, training=True)
    with pytest.raises(ValueError, match=r"more than 1 value per channel, got x of shape \(1, 3\)"):
        F.batch_norm(rand(1, 3, device=device), None, None, training=True)
    with pytest.raises(ValueError, match="running_mean is a buffer"):
        F.batch_norm(x, rand(3, device=device), rv, training=True)
    with pytest.raises(ValueError, match="momentum must be in"):
        F.batch_norm(x, rm, rv, training=True, momentum=1.5)


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (6, 5), (1, 2, 3, 1)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_fast_path_matches_the_reference(device, shape, training, affine, threads, blocks):
    C = shape[1]
    x = rand(*shape, device=device, seed=3)
    x.data += 5.0  # a mean far from 0: d = x - mean must be taken before any product
    W, b = (rand(C, device=device, seed=s) for s in (4, 5)) if affine else (None, None)
    gy = to_numpy(rand(*shape, device=device, seed=6).data)

    def one_pass():
        rm, rv = stats(C, device)
        for t in (x, W, b):
            if t is not None:
                t.grad = None
        y = F.batch_norm(x, rm, rv, W, b, training)
        y.backward(to_device(gy, device))
        grads = [to_numpy(t.grad) for t in (x, W, b) if t is not None]
        return [to_numpy(y.data), to_numpy(rm), to_numpy(rv), *grads]

    with reference_kernels():
        reference = one_pass()
    with reference_kernels(False):
        fast = one_pass()
    for r, f in zip(reference, fast):
        assert rel_error(f, r) <= 1e-11


@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_batch_norm_fast_statistics_are_as_stable_as_two_passes(device, offset, threads, blocks):
    # Per-plane sums and squared deviations, combined per channel (fast/norm.py's _statistics), against NumPy's
    # two-pass mean and var; with the means 1e7 standard deviations from 0, E[x^2] - mean^2 would lose everything.
    a = np.random.default_rng(12).standard_normal((3, 4, 5, 6)) * np.array([1.0, 1e-3, 10.0, 2.0])[:, None, None]
    a = a + offset
    x = to_device(a, device)
    mean, var = _statistics(as_rows(x, 4), x, 3, 4)
    np.testing.assert_allclose(to_numpy(mean), a.mean(axis=(0, 2, 3)), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(to_numpy(var), a.var(axis=(0, 2, 3)), rtol=1e-9)  # each channel's own var


def test_batch_norm_fast_path_in_float32_is_as_accurate_as_the_reference(device, blocks):
    a = np.random.default_rng(13).standard_normal((3, 4, 5, 6)) * np.array([1.0, 1e-3, 10.0, 2.0])[:, None, None]
    a = (a + 3).astype(np.float32).astype(np.float64)
    runs = {}
    for dtype, reference in ((np.float64, True), (np.float32, True), (np.float32, False)):
        with reference_kernels(reference):
            x = Tensor(to_device(a.astype(dtype), device), requires_grad=True)
            y = F.batch_norm(x, None, None, training=True)
            y.backward(to_device(np.cos(a).astype(dtype), device))
            runs[dtype, reference] = [y.data, x.grad]
    exact, taught, fast = runs.values()
    for e, t, f in zip(exact, taught, fast):
        assert f.dtype == np.float32 and rel_error(f, e) <= 2 * rel_error(t, e) + 1e-7


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batch_norm_cuda_kernels_equal_the_generic_code(device, dtype, monkeypatch):
    # On CuPy training mode runs its forward (statistics, y, running stats) and its backward (gb, gW, then gx) as
    # one CUDA kernel each, one block per channel (ops/fast/cuda_fused.py); MINISEGNET_CUDA_KERNELS=0: the array code.
    # Without a GPU the kernels' CUDA C runs on the host instead (tests/cuda_host.py).
    fetched = use_host_kernels(monkeypatch) if device == "cpu" else None
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for shape in SHAPES + [(3, 4, 17, 19), (300, 2)]:  # more values per channel than the 256 threads of a block
        C = shape[1]
        for affine, running in [(True, True), (False, True), (True, False)]:
            runs = []
            for kernels in (True, False):
                monkeypatch.setattr(cuda, "CUDA_KERNELS", kernels)
                x = rand(*shape, device=device, dtype=dtype, seed=C, low=-2.0, high=5.0)
                W = rand(C, device=device, dtype=dtype, seed=1) if affine else None
                b = rand(C, device=device, dtype=dtype, seed=2) if affine else None
                mean, var = (a.astype(dtype) for a in stats(C, device)) if running else (None, None)
                y = F.batch_norm(x, mean, var, W, b, training=True)
                y.backward(rand(*shape, device=device, dtype=dtype, seed=3, requires_grad=False).data)
                grads = [x.grad] + ([W.grad, b.grad] if affine else [])
                runs.append([y.data, *grads] + ([mean, var] if running else []))
                assert ran(fetched, *(["minisegnet_batch_norm_forward", "minisegnet_batch_norm_backward"] * kernels))
            for fused, generic in zip(*runs):
                assert fused.dtype == dtype and rel_error(fused, generic) <= tol, (shape, affine, running)


def test_an_empty_batch_in_eval_mode_passes_through_and_training_refuses_it(device, path):
    x = Tensor(to_device(np.zeros((0, 3, 4, 4)), device), requires_grad=True)
    stats = [to_device(np.zeros(3), device), to_device(np.ones(3), device)]
    y = F.batch_norm(x, *stats, training=False)
    y.sum().backward()
    assert y.shape == x.shape == x.grad.shape
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(x, *stats, training=True)
