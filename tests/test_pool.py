"""minisegnet/ops/pool.py: max_pool2d (with indices), avg_pool2d and max_unpool2d against loops, torch, gradcheck."""

import numpy as np
import pytest

import minisegnet.ops as F
from minisegnet import Tensor, cuda
from minisegnet.backend import to_device, to_numpy
from minisegnet.gradcheck import gradcheck
from minisegnet.registry import reference_kernels

import naive
from cuda_host import ran, use_host_kernels
from utils import rand, rel_error, to_torch
from utils import torch as get_torch

# Odd and even, square and non-square inputs; batch 1 and > 1; one and several channels.
SHAPES = [(1, 1, 5, 7), (2, 3, 6, 6), (3, 2, 7, 4)]
# (kernel, stride, padding): ints over the grid, plus non-square pairs and stride None (= kernel).
GRID = [(k, s, p) for k in (2, 3) for s in (1, 2, 3) for p in (0, 1)]
GRID += [((2, 3), (1, 2), (1, 0)), ((3, 2), (2, 1), (0, 1)), ((1, 3), None, (0, 1)), (3, None, 1)]


def pair(v, default=None):
    v = default if v is None else v
    return (v, v) if np.isscalar(v) else tuple(v)


def tensor(a, device, requires_grad=True):
    return Tensor(to_device(np.asarray(a), device), requires_grad=requires_grad)


def with_ties(shape, seed):
    """Values on a coarse grid, so many windows hold several equal maxima."""
    return np.random.default_rng(seed).integers(-3, 4, size=shape).astype(np.float64)


def distinct(shape, seed):
    """Distinct values at least 1/size apart: no ties, so central differences see a smooth max."""
    n = int(np.prod(shape))
    return np.random.default_rng(seed).permutation(n).reshape(shape) / n


def pooled_upstream(y, seed=1):
    return np.random.default_rng(seed).standard_normal(y.shape)


# ---- max_pool2d ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k,s,p", GRID)
def test_max_pool_matches_naive_loops_with_ties(path, device, k, s, p):
    for shape in SHAPES:
        a = with_ties(shape, seed=sum(shape))
        x = tensor(a, device)
        y, idx = F.max_pool2d(x, k, s, p, return_indices=True)
        y_ref, idx_ref = naive.max_pool2d(a, pair(k), pair(s, k), pair(p))
        assert rel_error(y, y_ref) <= 1e-12
        assert idx.dtype == np.int64 and not idx.requires_grad
        np.testing.assert_array_equal(to_numpy(idx.data), idx_ref)
        gy = pooled_upstream(y)
        y.backward(to_device(gy, device))
        assert rel_error(x.grad, naive.max_pool2d_backward(gy, idx_ref, shape)) <= 1e-12


@pytest.mark.parametrize("k,s,p", GRID)
def test_max_pool_matches_torch_with_ties(device, k, s, p):
    torch = get_torch()
    for shape in SHAPES:
        a = with_ties(shape, seed=sum(shape) + 1)
        x, tx = tensor(a, device), to_torch(a, requires_grad=True)
        y, idx = F.max_pool2d(x, k, s, p, return_indices=True)
        ty, tidx = torch.nn.functional.max_pool2d(tx, k, s if s is not None else k, p, return_indices=True)
        assert rel_error(y, ty.detach().numpy()) <= 1e-12
        np.testing.assert_array_equal(to_numpy(idx.data), tidx.numpy())
        gy = pooled_upstream(y)
        y.backward(to_device(gy, device))
        ty.backward(torch.from_numpy(gy))
        assert rel_error(x.grad, tx.grad.numpy()) <= 1e-12


def test_max_pool_all_equal_overlapping_windows_like_torch(path, device):
    # k=3 s=2: neighbouring windows share a row/column; every element ties, so only the first-max rule decides.
    torch = get_torch()
    a = np.ones((2, 2, 7, 6))
    x, tx = tensor(a, device), to_torch(a, requires_grad=True)
    y, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    ty, tidx = torch.nn.functional.max_pool2d(tx, 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(to_numpy(idx.data), tidx.numpy())
    y.sum().backward()
    ty.sum().backward()
    np.testing.assert_array_equal(to_numpy(x.grad), tx.grad.numpy())


def test_max_pool_nan_and_minus_inf_like_torch(path, device):
    torch = get_torch()
    a = np.full((1, 2, 5, 5), -np.inf)  # channel 0: windows that hold only -inf and padding
    a[0, 1] = np.arange(25.0).reshape(5, 5)
    a[0, 1, 1, 1] = a[0, 1, 3, 2] = a[0, 1, 3, 3] = np.nan  # NaN propagates; PyTorch keeps the last NaN's index
    y, idx = F.max_pool2d(tensor(a, device, requires_grad=False), 3, 2, 1, return_indices=True)
    ty, tidx = torch.nn.functional.max_pool2d(torch.from_numpy(a), 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(to_numpy(y.data), ty.numpy())
    np.testing.assert_array_equal(to_numpy(idx.data), tidx.numpy())


def test_max_pool_float32_keeps_dtype(device):
    x = rand(2, 3, 8, 8, device=device, dtype=np.float32)
    y = F.max_pool2d(x, 2)
    assert y.dtype == np.float32 and y.shape == (2, 3, 4, 4)
    ref = to_numpy(x.data).reshape(2, 3, 4, 2, 4, 2).max(axis=(3, 5))
    np.testing.assert_array_equal(to_numpy(y.data), ref)


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1), (3, 1, 1), ((2, 3), (1, 2), (1, 0))])
def test_max_pool_gradcheck(path, device, k, s, p):
    x = tensor(distinct((2, 2, 5, 6), seed=3), device)
    assert gradcheck(lambda t: F.max_pool2d(t, k, s, p), x).max_rel_err <= 1e-6


@pytest.mark.parametrize("k,s,p", GRID)
@pytest.mark.parametrize("nan", [True, False], ids=["nan", "no-nan"])
def test_max_pool_fast_and_reference_paths_agree(device, k, s, p, nan, threads, blocks):
    # The running arithmetic argmax (default) against the argmax over the window stack, on ties and -inf, with and
    # without NaN (the fast path looks for NaN windows only when y holds one); with two threads the fast path's
    # forward and backward take one image per slice, on two threads. (2, 3, 6, 6) with k = s = 2 or 3, no padding:
    # the windows tile x, and the backward writes gx without a zero fill.
    for shape in SHAPES:
        a = with_ties(shape, seed=sum(shape) + 2)
        a[..., 0, :2] = -np.inf
        if nan:
            a[0, 0, 1, 1:3] = np.nan
        runs = []
        for reference in (False, True):
            with reference_kernels(reference):
                x = tensor(a, device)
                y, idx = F.max_pool2d(x, k, s, p, return_indices=True)
                y.backward(to_device(pooled_upstream(y), device))
                runs.append([to_numpy(t) for t in (y.data, idx.data, x.grad)])
        for fast, ref in zip(*runs):
            np.testing.assert_array_equal(fast, ref)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_max_pool_cuda_kernels_equal_the_generic_code(device, dtype, monkeypatch):
    # On CuPy the forward (y and the winning tap) and the backward are one CUDA kernel each (ops/fast/cuda_fused.py);
    # MINISEGNET_CUDA_KERNELS=0 (cuda.CUDA_KERNELS) runs the generic array code. Ties, NaN and -inf included.
    # Without a GPU the kernels' CUDA C runs on the host instead (tests/cuda_host.py).
    fetched = use_host_kernels(monkeypatch) if device == "cpu" else None
    for k, s, p in GRID + [(5, 1, 2), (4, 3, 2)]:  # 25 taps; and windows reaching two cells into the padding
        for shape in SHAPES:
            a = with_ties(shape, seed=sum(shape) + 5).astype(dtype)
            a[..., 0, :2] = -np.inf
            a[0, 0, 1, 1:3] = np.nan
            runs = []
            for kernels in (True, False):
                monkeypatch.setattr(cuda, "CUDA_KERNELS", kernels)
                x = tensor(a, device)
                y, idx = F.max_pool2d(x, k, s, p, return_indices=True)
                y.backward(to_device(pooled_upstream(y).astype(dtype), device))
                runs.append([to_numpy(t) for t in (y.data, idx.data, x.grad)])
                assert ran(fetched, *(["minisegnet_max_pool_forward", "minisegnet_max_pool_backward"] * kernels))
            (y, idx, gx), (y_generic, idx_generic, gx_generic) = runs
            np.testing.assert_array_equal(y, y_generic)  # a max is exact, and so must its tap be
            np.testing.assert_array_equal(idx, idx_generic)
            # A pixel that wins several windows sums their gy in another order: rounding may differ.
            assert gx.dtype == dtype and rel_error(gx, gx_generic) <= (1e-12 if dtype == np.float64 else 1e-6)


# ---- avg_pool2d ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k,s,p", GRID)
def test_avg_pool_matches_naive_loops_and_torch(device, k, s, p):
    for shape in SHAPES:
        x = rand(*shape, device=device, seed=sum(shape))
        a = to_numpy(x.data)
        y = F.avg_pool2d(x, k, s, p)
        assert rel_error(y, naive.avg_pool2d(a, pair(k), pair(s, k), pair(p))) <= 1e-10
        gy = pooled_upstream(y)
        y.backward(to_device(gy, device))
        gx_ref = naive.avg_pool2d_backward(gy, shape, pair(k), pair(s, k), pair(p))
        assert rel_error(x.grad, gx_ref) <= 1e-10
        try:
            torch = get_torch()
        except pytest.skip.Exception:
            continue
        tx = to_torch(a, requires_grad=True)
        ty = torch.nn.functional.avg_pool2d(tx, k, s if s is not None else k, p)
        ty.backward(torch.from_numpy(gy))
        assert rel_error(y, ty.detach().numpy()) <= 1e-10 and rel_error(x.grad, tx.grad.numpy()) <= 1e-10


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 0))])
def test_avg_pool_gradcheck(device, k, s, p):
    x = rand(2, 2, 5, 6, device=device, seed=4)
    assert gradcheck(lambda t: F.avg_pool2d(t, k, s, p), x).max_rel_err <= 1e-6


# ---- max_unpool2d ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1), (3, 3, 0), (2, 1, 1), ((2, 3), (2, 3), (1, 0))])
@pytest.mark.parametrize("sized", [False, True])
def test_max_unpool_matches_naive_loops_and_torch(device, k, s, p, sized):
    for shape in SHAPES:
        a = distinct(shape, seed=sum(shape))
        pooled, idx = F.max_pool2d(tensor(a, device, requires_grad=False), k, s, p, return_indices=True)
        out_size = shape[2:] if sized else None
        if not sized and any(
            (o - 1) * S - 2 * P + K < n for o, S, P, K, n in zip(idx.shape[2:], pair(s), pair(p), pair(k), shape[2:])
        ):
            continue  # the default output is smaller than x, so an index may point outside it (tested below)
        # Overlapping windows can name one cell twice; which value lands there is then unspecified (PyTorch runs
        # in parallel), unless the values agree, as they do when unpooling the pooled maxima themselves.
        overlap = any(S < K for S, K in zip(pair(s), pair(k)))
        v = tensor(to_numpy(pooled.data), device) if overlap else rand(*idx.shape, device=device, seed=5)
        y = F.max_unpool2d(v, idx, k, s, p, output_size=out_size)
        if sized:
            assert y.shape == shape
        idx_np = to_numpy(idx.data)
        assert rel_error(y, naive.max_unpool2d(to_numpy(v.data), idx_np, y.shape[2:])) <= 1e-12
        gy = pooled_upstream(y)
        y.backward(to_device(gy, device))
        assert rel_error(v.grad, naive.max_unpool2d_backward(gy, idx_np)) <= 1e-12
        try:
            torch = get_torch()
        except pytest.skip.Exception:
            continue
        tv = to_torch(v, requires_grad=True)
        ty = torch.nn.functional.max_unpool2d(tv, torch.from_numpy(idx_np), k, s, p, output_size=out_size)
        ty.backward(torch.from_numpy(gy))
        assert rel_error(y, ty.detach().numpy()) <= 1e-12 and rel_error(v.grad, tv.grad.numpy()) <= 1e-12


def test_max_unpool_puts_the_maxima_back(device):
    # SegNet's use: unpool(pool(x)) keeps every window's maximum where it was and zeros the rest.
    a = distinct((2, 3, 6, 8), seed=6)
    y, idx = F.max_pool2d(tensor(a, device, requires_grad=False), 2, return_indices=True)
    back = to_numpy(F.max_unpool2d(y, idx, 2).data)
    blocks = a.reshape(2, 3, 3, 2, 4, 2)
    is_max = blocks == blocks.max(axis=(3, 5), keepdims=True)
    np.testing.assert_array_equal(back, (blocks * is_max).reshape(a.shape))


def test_max_unpool_gradcheck(device):
    # Windows that do not overlap: a repeated index would make the forward keep only one of two values.
    _, idx = F.max_pool2d(tensor(distinct((2, 2, 7, 5), seed=7), device), 3, 3, 1, return_indices=True)
    v = rand(*idx.shape, device=device, seed=8)
    assert gradcheck(lambda t: F.max_unpool2d(t, idx, 3, 3, 1, output_size=(7, 5)), v).max_rel_err <= 1e-6


# ---- errors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", [F.max_pool2d, F.avg_pool2d])
@pytest.mark.parametrize(
    "shape,args,error,words",
    [
        ((4, 4), (2,), ValueError, "(N, C, H, W)"),
        ((1, 1, 4, 4), (5,), ValueError, "larger than the padded input"),
        ((1, 1, 4, 4), ((2, 7),), ValueError, "(2, 7)"),
        ((1, 1, 4, 4), (2, 0), ValueError, "stride must be positive"),
        ((1, 1, 4, 4), (2, (1, -1)), ValueError, "(1, -1)"),
        ((1, 1, 4, 4), (3, 1, 2), ValueError, "at most half of kernel_size"),
        ((1, 1, 4, 4), (2, 1, -1), ValueError, "non-negative"),
        ((1, 1, 4, 4), (0,), ValueError, "kernel_size must be positive"),
        ((1, 1, 4, 4), (2.5,), TypeError, "2.5"),
        ((1, 1, 4, 4), ((2, 2, 2),), TypeError, "(2, 2, 2)"),
    ],
)
def test_pool_bad_arguments_raise(device, op, shape, args, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        op(rand(*shape, device=device), *args)


def test_max_unpool_bad_indices_raise(device):
    v = rand(1, 2, 3, 3, device=device)
    good = np.zeros((1, 2, 3, 3), dtype=np.int64)
    with pytest.raises(ValueError, match="invalid index 36"):
        F.max_unpool2d(v, tensor(good + 36, device, False), 2)  # the output plane is 6 x 6
    with pytest.raises(ValueError, match="invalid index -1"):
        F.max_unpool2d(v, tensor(good - 1, device, False), 2)
    with pytest.raises(ValueError, match=r"indices have shape \(1, 2, 3, 2\) but x has shape \(1, 2, 3, 3\)"):
        F.max_unpool2d(v, tensor(good[..., :2], device, False), 2)
    with pytest.raises(TypeError, match="indices must be integers"):
        F.max_unpool2d(v, tensor(good.astype(np.float64), device, False), 2)
    with pytest.raises(ValueError, match="strictly between 4 and 8"):
        F.max_unpool2d(v, tensor(good, device, False), 2, output_size=(8, 6))
    with pytest.raises(ValueError, match="output_size must be"):
        F.max_unpool2d(v, tensor(good, device, False), 2, output_size=(6,))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        F.max_unpool2d(rand(2, 3, 3, device=device), tensor(good[0], device, False), 2)
