"""ops/conv.py and ops/im2col.py: conv2d and conv_transpose2d against loop oracles, PyTorch and gradcheck.

The grid: every combination of kernel (1, 2, 3, 5, 1x3, 3x2), stride (1, 2, 3), padding (0, 1, 2)
and dilation (1, 2), and for the transposed convolution every valid output_padding of each; plus a
few cases mixing (h, w) pairs in every argument. The input size (odd/even, square/non-square) and
the (batch, channels) triple do not multiply the grid: they cycle along it, so each of their values
meets many combinations while the file stays within its time budget (~60 s on 2 cores).
"""

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest

import minisegnet.ops as F
from minisegnet import Tensor, cuda
from minisegnet import threads as threads_module
from minisegnet.backend import get_array_module, to_device, to_numpy
from minisegnet.gradcheck import gradcheck
from minisegnet.ops import im2col as taught_im2col
from minisegnet.ops.fast import conv as conv_fast
from minisegnet.ops.fast import im2col as fast_im2col
from minisegnet.ops.fast import workspace
from minisegnet.ops.fast.im2col import cuda_columns, shifted_col2im, shifted_im2col
from minisegnet.ops.im2col import col2im, conv_out_size, conv_transpose_out_size, im2col
from minisegnet.registry import reference_kernels

import naive
from utils import rand, rel_error
from utils import torch as import_torch


@pytest.fixture(params=["fast", "reference"])
def cols(request):
    """(im2col, col2im): the fast pair of ops/fast/im2col.py, then the taught pair of ops/im2col.py."""
    module = fast_im2col if request.param == "fast" else taught_im2col
    return module.im2col, module.col2im


KERNELS = {"k1": 1, "k2": 2, "k3": 3, "k5": 5, "k1x3": (1, 3), "k3x2": (3, 2)}
STRIDES, PADDINGS, DILATIONS = [1, 2, 3], [0, 1, 2], [1, 2]
CONV_SIZES = [(9, 9), (10, 10), (9, 10), (10, 9)]  # room for a 5x5 kernel with dilation 2 and no padding
CONVT_SIZES = [(5, 5), (6, 6), (5, 6), (6, 5)]  # big enough that padding 2 leaves a positive output
NCO = [(1, 1, 1), (2, 3, 2), (1, 2, 3), (3, 1, 2)]  # (N, C, OC): batch 1 and >1, channels 1 and several


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def conv_grid(name):
    """[(x_shape, OC, kernel, stride, padding, dilation)] with pairs for every argument."""
    if name == "pairs":
        return [
            ((2, 2, 9, 10), 3, (3, 2), (2, 1), (1, 0), (1, 2)),
            ((1, 3, 8, 7), 2, (1, 3), (1, 3), (0, 2), (2, 1)),
            ((3, 1, 10, 9), 2, (5, 3), (3, 2), (2, 1), (1, 1)),
        ]
    cases = []
    for k, (S, P, D) in enumerate(itertools.product(STRIDES, PADDINGS, DILATIONS)):
        N, C, OC = NCO[(k + k // 4) % 4]
        cases.append(((N, C) + CONV_SIZES[k % 4], OC, pair(KERNELS[name]), pair(S), pair(P), pair(D)))
    return cases


def convt_grid(name):
    """[(x_shape, OC, kernel, stride, padding, output_padding, dilation)]: every valid output_padding."""
    if name == "pairs":
        return [
            ((2, 2, 5, 6), 3, (3, 2), (2, 1), (1, 0), (1, 1), (1, 2)),
            ((1, 3, 4, 5), 2, (1, 3), (1, 3), (0, 2), (1, 2), (2, 1)),
        ]
    cases = []
    for k, (S, P, D) in enumerate(itertools.product(STRIDES, PADDINGS, DILATIONS)):
        for op in range(max(S, D)):  # valid: smaller than stride or dilation
            N, C, OC = NCO[len(cases) % 4]
            size = CONVT_SIZES[(k + op) % 4]
            cases.append(((N, C) + size, OC, pair(KERNELS[name]), pair(S), pair(P), (op, op // 2), pair(D)))
    return cases


GRID_NAMES = list(KERNELS) + ["pairs"]


def draw(x_shape, W_shape, OC, seed):
    """Random float64 (x, W, b) whose values are exactly representable in float32.

    The float32 runs then see the same inputs as the float64 oracles, and their error is the
    arithmetic's alone (not the rounding of the inputs, which a sum with cancellation such as gb
    would amplify far beyond 1e-4).
    """
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(s).astype(np.float32).astype(np.float64) for s in (x_shape, W_shape, OC))


def forward_backward(op, device, dtype, x, W, b, gy_seed, **kw):
    """(y, gx, gW, gb) as NumPy arrays after op(...).backward(gy), and the gy used (float64)."""
    X, Wt, B = (Tensor(to_device(a.astype(dtype), device), requires_grad=True) for a in (x, W, b))
    y = op(X, Wt, B, **kw)
    gy = np.random.default_rng(gy_seed).standard_normal(y.shape).astype(np.float32).astype(np.float64)
    y.backward(to_device(gy.astype(dtype), device))
    return [to_numpy(a) for a in (y.data, X.grad, Wt.grad, B.grad)], gy


def assert_close(ours, ref, tol, case, gy=None):
    """Normwise relative errors of (y, gx, gW, gb) within ``tol``.

    With ``gy`` given (the float32 checks), gb's error is measured against the size of the terms it
    sums, sum |gy|: a bias gradient of a few summands that nearly cancel has no float32 digits to
    spare, whatever the implementation.
    """
    for name, a, r in zip(("y", "gx", "gW", "gb"), ours, ref):
        err = rel_error(a, r)
        if name == "gb" and gy is not None:
            err = float(np.abs(a - r).max() / np.abs(gy).sum(axis=(0, 2, 3)).max())
        assert err <= tol, f"{name} relative error {err:.2e} > {tol:g} for {case}"


def torch_grads(fn, x, W, b, gy, *args):
    torch = import_torch()
    tx, tW, tb = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
    ty = fn(tx, tW, tb, *args)
    ty.backward(torch.tensor(gy))
    return [t.detach().numpy() for t in (ty, tx.grad, tW.grad, tb.grad)]


# ---- conv2d ----------------------------------------------------------------------------------


@pytest.mark.parametrize("grid", GRID_NAMES)
def test_conv2d_forward_and_gradients_match_the_loops(path, device, grid):
    for i, case in enumerate(conv_grid(grid)):
        xs, OC, K, S, P, D = case
        x, W, b = draw(xs, (OC, xs[1]) + K, OC, seed=i)
        kw = dict(stride=S, padding=P, dilation=D)
        ours, gy = forward_backward(F.conv2d, device, np.float64, x, W, b, gy_seed=100 + i, **kw)
        # gx is the transposed convolution of gy (the adjoint), with the output_padding that gives x's size.
        op = tuple((n + 2 * p - d * (k - 1) - 1) % s for n, k, s, p, d in zip(xs[2:], K, S, P, D))
        ref = [
            naive.conv2d(x, W, b, S, P, D),
            naive.conv_transpose2d(gy, W, None, S, P, op, D),
            naive.conv2d_weight_grad(x, gy, K, S, P, D),
            gy.sum(axis=(0, 2, 3)),
        ]
        assert_close(ours, ref, 1e-10, case)
        ours32, _ = forward_backward(F.conv2d, device, np.float32, x, W, b, gy_seed=100 + i, **kw)
        assert_close(ours32, ref, 1e-4, case, gy)


@pytest.mark.parametrize("grid", GRID_NAMES)
def test_conv2d_matches_torch(device, grid):
    torch = import_torch()
    for i, case in enumerate(conv_grid(grid)):
        xs, OC, K, S, P, D = case
        x, W, b = draw(xs, (OC, xs[1]) + K, OC, seed=i)
        ours, gy = forward_backward(F.conv2d, device, np.float64, x, W, b, gy_seed=i, stride=S, padding=P, dilation=D)
        ref = torch_grads(torch.nn.functional.conv2d, x, W, b, gy, S, P, D)
        assert_close(ours, ref, 1e-10, case)


# ---- conv_transpose2d ------------------------------------------------------------------------


@pytest.mark.parametrize("grid", GRID_NAMES)
def test_conv_transpose2d_forward_and_gradients_match_the_loops(path, device, grid):
    for i, case in enumerate(convt_grid(grid)):
        xs, OC, K, S, P, OP, D = case
        x, W, b = draw(xs, (xs[1], OC) + K, OC, seed=i)
        kw = dict(stride=S, padding=P, output_padding=OP, dilation=D)
        ours, gy = forward_backward(F.conv_transpose2d, device, np.float64, x, W, b, gy_seed=100 + i, **kw)
        # The adjoint of the adjoint: gx is conv2d(gy, W) at the H x W positions that made y
        # (with output_padding >= stride a conv2d of y's size has more); gW swaps x and gy.
        H, Wd = xs[2:]
        ref = [
            naive.conv_transpose2d(x, W, b, S, P, OP, D),
            naive.conv2d(gy, W, None, S, P, D)[:, :, :H, :Wd],
            naive.conv2d_weight_grad(gy, x, K, S, P, D),
            gy.sum(axis=(0, 2, 3)),
        ]
        assert_close(ours, ref, 1e-10, case)
        ours32, _ = forward_backward(F.conv_transpose2d, device, np.float32, x, W, b, gy_seed=100 + i, **kw)
        assert_close(ours32, ref, 1e-4, case, gy)


@pytest.mark.parametrize("grid", GRID_NAMES)
def test_conv_transpose2d_matches_torch(device, grid):
    torch = import_torch()
    for i, case in enumerate(convt_grid(grid)):
        xs, OC, K, S, P, OP, D = case
        x, W, b = draw(xs, (xs[1], OC) + K, OC, seed=i)
        kw = dict(stride=S, padding=P, output_padding=OP, dilation=D)
        ours, gy = forward_backward(F.conv_transpose2d, device, np.float64, x, W, b, gy_seed=i, **kw)
        ref = torch_grads(torch.nn.functional.conv_transpose2d, x, W, b, gy, S, P, OP, 1, D)
        assert_close(ours, ref, 1e-10, case)


# ---- the adjoint identity, gradcheck, sizes --------------------------------------------------


@pytest.mark.parametrize("grid", GRID_NAMES)
def test_conv_transpose2d_is_the_adjoint_of_conv2d(path, device, grid):
    # <conv2d(x, W), y> = <x, conv_transpose2d(y, W)> for every x and y: the output_padding below
    # makes conv_transpose2d return x's size.
    for i, (xs, OC, K, S, P, D) in enumerate(conv_grid(grid)):
        x = rand(*xs, device=device, seed=i, requires_grad=False)
        W = rand(OC, xs[1], *K, device=device, seed=50 + i, requires_grad=False)
        y_shape = (xs[0], OC) + conv_out_size(xs[2:], K, S, P, D)
        y = rand(*y_shape, device=device, seed=99 + i, requires_grad=False)
        op = tuple((n + 2 * p - d * (k - 1) - 1) % s for n, k, s, p, d in zip(xs[2:], K, S, P, D))
        lhs = float((F.conv2d(x, W, None, S, P, D).data * y.data).sum())
        rhs = float((x.data * F.conv_transpose2d(y, W, None, S, P, op, D).data).sum())
        assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs)), (xs, K, S, P, D, lhs, rhs)


@pytest.mark.parametrize(
    "K, S, P, D",
    [(3, 1, 1, 1), (3, 2, 1, 1), ((3, 2), (2, 1), (1, 0), (1, 2)), ((1, 3), 1, (0, 1), 2), (2, 2, 0, 1)],
)
def test_conv2d_gradcheck(path, device, K, S, P, D):
    x, W, b = rand(2, 2, 6, 7, device=device), rand(3, 2, *pair(K), device=device, seed=1), rand(3, device=device)
    rep = gradcheck(lambda x, W, b: F.conv2d(x, W, b, S, P, D), x, W, b)
    assert rep.max_rel_err <= 1e-6


@pytest.mark.parametrize(
    "K, S, P, OP, D", [(3, 2, 1, 1, 1), (2, 2, 0, 0, 1), ((3, 2), (2, 1), (1, 0), (1, 0), (1, 2)), (3, 1, 1, 1, 2)]
)
def test_conv_transpose2d_gradcheck(device, K, S, P, OP, D):
    x, W, b = rand(2, 2, 4, 5, device=device), rand(2, 3, *pair(K), device=device, seed=1), rand(3, device=device)
    rep = gradcheck(lambda x, W, b: F.conv_transpose2d(x, W, b, S, P, OP, D), x, W, b)
    assert rep.max_rel_err <= 1e-6


def test_output_sizes():
    assert conv_out_size(64, 3, 1, 1) == 64 and conv_out_size(7, 3, 2) == 3 and conv_out_size(10, 5, 1, 0, 2) == 2
    assert conv_out_size((9, 10), (3, 2), (2, 1), (1, 0), (1, 2)) == (5, 8)
    assert conv_transpose_out_size(16, 2, 2) == 32 and conv_transpose_out_size(5, 3, 2, 1, 1) == 10
    assert conv_transpose_out_size((4, 5), (3, 2), (2, 1), (1, 0), (1, 0), (1, 2)) == (8, 7)
    # A strided conv2d maps several sizes to one; output_padding picks which one comes back.
    assert [conv_out_size(conv_transpose_out_size(5, 3, 2, 1, op), 3, 2, 1) for op in (0, 1)] == [5, 5]


# ---- im2col / col2im and the batch chunks ----------------------------------------------------


@pytest.mark.parametrize("batch_first", [True, False])
def test_col2im_is_the_adjoint_of_im2col(cols, device, batch_first):
    for K, S, P, D in [(3, 1, 1, 1), ((3, 2), (2, 3), (2, 1), (1, 2)), (2, 2, 0, 1), (1, 1, 0, 1)]:
        x = rand(2, 3, 7, 8, device=device, requires_grad=False).data
        col = cols[0](x, K, S, P, D, batch_first=batch_first)
        c = rand(*col.shape, device=device, seed=1, requires_grad=False).data
        lhs = float((col * c).sum())
        rhs = float((x * cols[1](c, x.shape, K, S, P, D, batch_first=batch_first)).sum())
        assert abs(lhs - rhs) <= 1e-12 * abs(lhs), (K, S, P, D)


def test_fast_im2col_layouts_and_shortcuts(device):
    x = rand(2, 3, 6, 8, device=device, requires_grad=False).data
    xpad = np.pad(to_numpy(x), ((0, 0), (0, 0), (1, 1), (1, 1)))
    col = to_numpy(fast_im2col.im2col(x, (3, 2), (1, 2), 1))
    assert col.shape == (2, 3 * 3 * 2, 6 * 5)  # PyTorch's unfold layout
    # Image n = 1, row (c, i, j) = (2, 1, 0), column (oh, ow) = (3, 2) holds xpad[n, c, oh*SH + i, ow*SW + j].
    assert col[1, (2 * 3 + 1) * 2 + 0, 3 * 5 + 2] == xpad[1, 2, 3 + 1, 2 * 2 + 0]
    # batch_first=False: the same columns side by side, (C*KH*KW, N*OH*OW)
    wide = to_numpy(fast_im2col.im2col(x, (3, 2), (1, 2), 1, batch_first=False))
    np.testing.assert_array_equal(wide, col.transpose(1, 0, 2).reshape(18, 60))
    # 1x1, stride 1, no padding: the input itself, no copy
    assert fast_im2col.im2col(x, 1).shape == (2, 3, 48) and fast_im2col.im2col(x[:1], 1, batch_first=False).shape == (
        3,
        48,
    )
    if device == "cpu":
        assert np.shares_memory(fast_im2col.im2col(x, 1), x) and np.shares_memory(
            fast_im2col.im2col(x[:1], 1, batch_first=False), x
        )
    # A 2x2 stride-2 kernel tiles a 6x8 image: col2im's reordering shortcut equals the generic sum,
    # which runs for a 7x8 image (one row that no window reaches).
    for batch_first, shape in [(True, (2, 12, 12)), (False, (12, 24))]:
        c = rand(*shape, device=device, seed=2, requires_grad=False).data
        generic = to_numpy(fast_im2col.col2im(c, (2, 3, 7, 8), 2, 2, batch_first=batch_first))
        tiled = to_numpy(fast_im2col.col2im(c, (2, 3, 6, 8), 2, 2, batch_first=batch_first))
        assert np.array_equal(tiled, generic[:, :, :6]) and not generic[:, :, 6].any()


def test_col2im_results_are_not_overwritten_by_later_calls(cols, device):
    # col2im sums into a scratch buffer reused from call to call: what it returns must be a copy.
    c = rand(2, 12, 12, device=device, requires_grad=False).data  # 2x2 kernel, stride 2, 7x8 image: 3x4 windows
    first = cols[1](c, (2, 3, 7, 8), 2, 2)
    kept = to_numpy(first).copy()
    cols[1](2 * c, (2, 3, 7, 8), 2, 2)
    shifted = shifted_col2im(rand(2, 2 * 56, device=device, requires_grad=False).data, (2, 2, 7, 8), (1, 1))
    kept_shifted = to_numpy(shifted).copy()
    shifted_col2im(rand(2, 2 * 56, device=device, seed=5, requires_grad=False).data, (2, 2, 7, 8), (1, 1))
    np.testing.assert_array_equal(to_numpy(first), kept)
    np.testing.assert_array_equal(to_numpy(shifted), kept_shifted)


def test_shifted_im2col_is_im2col_in_whole_padded_rows(path, device):
    # Stride 1: the same columns as im2col(batch_first=False) once the WP - OW junk values of each
    # output row are dropped, and shifted_col2im is its adjoint (junk places of the input zero).
    for K, P, D, windows in [(3, 1, 1, None), ((3, 2), (2, 1), (1, 2), None), ((2, 3), 0, 1, (4, 3)), (5, 2, 1, None)]:
        x = rand(2, 3, 7, 8, device=device, requires_grad=False).data
        OH, OW = windows or conv_out_size((7, 8), K, 1, P, D)
        WP = 8 + 2 * pair(P)[1]
        col = to_numpy(shifted_im2col(x, K, P, D, windows)).reshape(-1, 2, OH, WP)
        ref = to_numpy(im2col(x, K, 1, P, D, windows, batch_first=False)).reshape(-1, 2, OH, OW)
        np.testing.assert_array_equal(col[..., :OW], ref)
        c = np.zeros(col.shape)
        c[..., :OW] = np.random.default_rng(1).standard_normal(ref.shape)
        gx = to_numpy(shifted_col2im(to_device(c.reshape(col.shape[0], -1), device), x.shape, K, P, D, windows))
        np.testing.assert_allclose(
            gx,
            to_numpy(col2im(c[..., :OW].reshape(ref.shape[0], -1), x.shape, K, 1, P, D, windows, batch_first=False)),
            rtol=1e-12,
            atol=1e-12,
        )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cuda_kernels_equal_the_generic_loops_and_the_reference_path(device, dtype, monkeypatch):
    # On CuPy, the fast im2col and col2im run one CUDA kernel each (cuda.cuda_kernel); NumPy has none.
    # MINISEGNET_CUDA_KERNELS=0 (cuda.CUDA_KERNELS) runs the fast path's loops on CuPy, and
    # reference_kernels() the reference path, kernels off too: all three must agree.
    if device == "cpu":
        assert cuda.cuda_kernel(np, "T x", "T y", "y = x", "copy") is None and not cuda_columns(np)
        pytest.skip("the CUDA kernels run on CuPy only")
    cases = [(3, 1, 1, 1, None), ((3, 2), (2, 3), (2, 1), (1, 2), None), (2, 2, 0, 1, None), (5, 1, 2, 2, None)]
    cases += [(1, 1, 0, 1, None), (3, 2, 1, 1, (3, 2)), ((1, 3), (3, 1), (0, 2), 1, None)]
    x = rand(2, 3, 7, 8, device=device, dtype=dtype, requires_grad=False).data
    w = rand(4, 3, 3, 3, device=device, dtype=dtype, seed=3)
    results = {}
    for kernels, reference in [(True, False), (False, False), (True, True)]:
        monkeypatch.setattr(cuda, "CUDA_KERNELS", kernels)
        columns = (im2col, col2im) if reference else (fast_im2col.im2col, fast_im2col.col2im)
        with reference_kernels(reference):
            assert cuda_columns(get_array_module(x)) == (kernels and not reference)
            out = results[kernels, reference] = []
            for K, S, P, D, windows in cases:
                for batch_first in (True, False):
                    col = columns[0](x, K, S, P, D, windows, batch_first=batch_first)
                    c = rand(*col.shape, device=device, dtype=dtype, seed=1, requires_grad=False).data
                    out += [col, columns[1](c, x.shape, K, S, P, D, windows, batch_first=batch_first)]
            xt = Tensor(x, requires_grad=True)
            y = F.conv2d(xt, w, padding=1)
            y.backward(to_device(np.ones(y.shape, dtype), device))
            out += [y.data, xt.grad, w.grad]
            w.grad = None
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for ours, generic, ref in zip(results[True, False], results[False, False], results[True, True]):
        assert ours.dtype == generic.dtype == ref.dtype and rel_error(ours, generic) <= tol
        assert rel_error(ours, ref) <= tol


# ---- the fast path against the reference path ---------------------------------------------


@pytest.mark.parametrize("grid", GRID_NAMES)
def test_fast_and_reference_paths_agree(device, grid):
    # fast/conv.py (chunks, whole-row columns, the flipped-kernel input gradient) against conv.py's
    # three lines, with the bench's threads too: every output and gradient to 1e-10 in float64.
    for i, case in enumerate(conv_grid(grid) + convt_grid(grid)):
        xs, OC, K, S, P = case[:5]
        op, kw = (F.conv2d, {}) if len(case) == 6 else (F.conv_transpose2d, {"output_padding": case[5]})
        W_shape = (OC, xs[1]) + K if op is F.conv2d else (xs[1], OC) + K
        x, W, b = draw(xs, W_shape, OC, seed=i)
        kw.update(stride=S, padding=P, dilation=case[-1])
        runs = []
        for reference in (False, True):
            with reference_kernels(reference):
                runs.append(forward_backward(op, device, np.float64, x, W, b, gy_seed=200 + i, **kw)[0])
        assert_close(runs[0], runs[1], 1e-10, (op.__name__, case))


@pytest.mark.parametrize("threads", [0, 2])
def test_tiled_transposed_conv_path_agrees_with_the_reference(device, threads, monkeypatch):
    # 2x2 stride 2, padding 0 (a U-Net's upsampling): fast/conv.py's tiled path, one product and one
    # reordering copy per chunk, here one image per chunk and, on the CPU, two threads.
    assert conv_fast._tiled((3, 4, 2, 2), ((2, 2), (0, 0), (1, 1)), (10, 12), (5, 6))
    assert not conv_fast._tiled((3, 4, 2, 2), ((2, 2), (0, 0), (1, 1)), (11, 12), (5, 6))  # output_padding 1
    monkeypatch.setattr(workspace, "CHUNK_BYTES", 1)
    before = threads_module.get_num_threads()
    threads_module.set_num_threads(threads if device == "cpu" else 0)
    try:
        for xs, OC, kw in [((3, 3, 5, 6), 4, {}), ((2, 4, 4, 4), 2, {"output_padding": 0})]:
            x, W, b = draw(xs, (xs[1], OC, 2, 2), OC, seed=7)
            runs = []
            for reference in (False, True):
                with reference_kernels(reference):
                    runs.append(forward_backward(F.conv_transpose2d, device, np.float64, x, W, b, 8, stride=2, **kw)[0])
            assert_close(runs[0], runs[1], 1e-10, xs)
    finally:
        threads_module.set_num_threads(before)


@pytest.mark.parametrize("batch_first", [True, False])
def test_im2col_fast_and_reference_agree(device, batch_first):
    for K, S, P, D, windows in [(3, 1, 1, 1, None), ((3, 2), (2, 3), (2, 1), (1, 2), None), (1, 1, 0, 1, None)]:
        x = rand(2, 3, 7, 8, device=device, requires_grad=False).data
        runs = []
        for columns in ((fast_im2col.im2col, fast_im2col.col2im), (im2col, col2im)):
            col = columns[0](x, K, S, P, D, windows, batch_first=batch_first)
            c = rand(*col.shape, device=device, seed=1, requires_grad=False).data
            runs.append((to_numpy(col), to_numpy(columns[1](c, x.shape, K, S, P, D, windows, batch_first=batch_first))))
        np.testing.assert_array_equal(runs[0][0], runs[1][0])
        assert rel_error(runs[0][1], runs[1][1]) <= 1e-14


def test_im2col_matches_torch_unfold(cols):
    torch = import_torch()
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 8))
    for K, S, P, D in [((3, 2), (1, 2), 1, 1), (3, 2, (0, 2), (2, 1))]:
        ref = torch.nn.functional.unfold(torch.tensor(x), K, dilation=D, padding=P, stride=S).numpy()
        np.testing.assert_array_equal(cols[0](x, K, S, P, D), ref)
        fold = torch.nn.functional.fold(torch.tensor(ref), x.shape[2:], K, dilation=D, padding=P, stride=S).numpy()
        np.testing.assert_allclose(cols[1](ref, x.shape, K, S, P, D), fold, rtol=1e-12)


# ---- what is and is not differentiated ------------------------------------------------------


def test_only_the_needed_gradients_are_computed(device):
    x, W = rand(2, 3, 6, 6, device=device, requires_grad=False), rand(4, 3, 3, 3, device=device, seed=1)
    y = F.conv2d(x, W, None, padding=1)
    y.backward(rand(*y.shape, device=device, seed=2, requires_grad=False).data)
    assert x.grad is None and W.grad.shape == (4, 3, 3, 3)
    xt = rand(2, 3, 4, 4, device=device)
    yt = F.conv_transpose2d(xt, W.detach().transpose(1, 0, 2, 3), rand(4, device=device, requires_grad=False), 2)
    assert yt.shape == (2, 4, 9, 9)
    yt.backward(rand(*yt.shape, device=device, seed=3, requires_grad=False).data)
    assert xt.grad.shape == xt.shape


# ---- errors ---------------------------------------------------------------------------------


def _t(*shape, dtype=np.float64):
    return Tensor(np.zeros(shape, dtype=dtype))


conv, convt = F.conv2d, F.conv_transpose2d
ERRORS = [  # (op, x shape, weight shape, bias shape, keyword arguments, error, message pattern)
    (conv, (2, 4, 8, 8), (6, 3, 3, 3), None, {}, ValueError, r"expects 3 input channels.*has 4 channels"),
    (convt, (2, 4, 8, 8), (3, 6, 3, 3), None, {}, ValueError, r"expects 3 input channels.*has 4 channels"),
    (conv, (1, 1, 4, 4), (1, 1, 5, 5), None, {}, ValueError, r"padded input size \(4 x 4\).*\(5 x 5\)"),
    (conv, (1, 1, 6, 2), (1, 1, 3, 3), None, {"padding": (1, 0)}, ValueError, r"\(8 x 2\).*\(3 x 3\)"),
    (conv, (1, 1, 6, 6), (1, 1, 3, 3), None, {"dilation": 3}, ValueError, r"\(6 x 6\).*dilated.*\(7 x 7\)"),
    (convt, (1, 1, 4, 4), (1, 1, 3, 3), None, {"stride": 2, "output_padding": 2}, ValueError, "smaller than either"),
    (convt, (1, 1, 4, 4), (1, 1, 3, 3), None, {"output_padding": 1}, ValueError, r"output_padding=\(1, 1\), stride"),
    (convt, (1, 1, 4, 4), (1, 1, 3, 3), None, {"output_padding": -1}, ValueError, "must be non-negative"),
    (convt, (1, 1, 2, 2), (1, 1, 1, 1), None, {"padding": 2}, ValueError, "non-positive output size"),
    (conv, (1, 1, 4, 4), (1, 1, 3, 3), None, {"stride": 0}, ValueError, "stride must be positive, got 0"),
    (conv, (1, 1, 4, 4), (1, 1, 3, 3), None, {"stride": (1, -1)}, ValueError, r"positive, got \(1, -1\)"),
    (convt, (1, 1, 4, 4), (1, 1, 3, 3), None, {"stride": 0}, ValueError, "stride must be positive"),
    (conv, (1, 1, 4, 4), (1, 1, 3, 3), None, {"dilation": 0}, ValueError, "dilation must be positive, got 0"),
    (convt, (1, 1, 4, 4), (1, 1, 3, 3), None, {"dilation": (1, 0)}, ValueError, "dilation must be positive"),
    (conv, (1, 1, 4, 4), (1, 1, 3, 3), None, {"padding": -1}, ValueError, "padding must be non-negative, got -1"),
    (convt, (1, 1, 4, 4), (1, 1, 3, 3), None, {"padding": -1}, ValueError, "padding must be non-negative"),
    (conv, (1, 4, 4), (1, 1, 3, 3), None, {}, ValueError, r"4-D input x \(N, C, H, W\), got shape \(1, 4, 4\)"),
    (convt, (1, 1, 1, 4, 4), (1, 1, 3, 3), None, {}, ValueError, r"4-D input x"),
    (conv, (1, 1, 4, 4), (1, 3, 3), None, {}, ValueError, r"4-D weight, got shape \(1, 3, 3\)"),
    (conv, (1, 1, 4, 4), (2, 1, 3, 3), (3,), {}, ValueError, r"bias must have shape \(2,\).*got \(3,\)"),
    (convt, (1, 1, 4, 4), (1, 2, 3, 3), (1,), {}, ValueError, r"bias must have shape \(2,\)"),
    (conv, (1, 1, 4, 4), (1, 1, 3, 3), None, {"stride": 1.5}, TypeError, "stride must be an int or a pair"),
    (conv, (1, 1, 4, 4), (1, 1, 3, 3), None, {"padding": (1, 1, 1)}, TypeError, "padding must be an int or a pair"),
]


@pytest.mark.parametrize("op, xs, ws, bs, kw, error, match", ERRORS)
def test_bad_arguments_raise_one_clear_line(op, xs, ws, bs, kw, error, match):
    with pytest.raises(error, match=match) as info:
        op(_t(*xs), _t(*ws), None if bs is None else _t(*bs), **kw)
    assert "\n" not in str(info.value)


def test_mixed_dtypes_are_refused():
    with pytest.raises(TypeError, match="share one dtype, got float64, float32"):
        F.conv2d(_t(1, 1, 4, 4), _t(1, 1, 3, 3, dtype=np.float32))


# ---- the benchmark still runs ---------------------------------------------------------------


@pytest.mark.slow
def test_benchmark_runs_in_quick_mode():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_conv.py"
    spec = importlib.util.spec_from_file_location("bench_conv", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.run(quick=True, memory=False)
    assert len(rows) == len(bench.SHAPES)
    assert all(r[f"{name}_s"] > 0 for r in rows for name in ("minisegnet", "textbook", "products"))
    # The textbook reference agrees with minisegnet (so the comparison in the table is like for like).
    x, W, b = draw((2, 3, 6, 6), (4, 3, 3, 3), 4, seed=0)
    ours, gy = forward_backward(F.conv2d, "cpu", np.float64, x, W, b, gy_seed=0, padding=1)
    assert_close(bench.textbook_conv(x, W, b, gy, 1, 1), ours, 1e-12, "textbook conv")
    xt, Wt, bt = draw((2, 3, 4, 4), (3, 2, 2, 2), 2, seed=1)
    ours, gyt = forward_backward(F.conv_transpose2d, "cpu", np.float64, xt, Wt, bt, gy_seed=1, stride=2)
    assert_close(bench.textbook_conv_transpose(xt, Wt, bt, gyt, 2, 0), ours, 1e-12, "textbook conv_transpose")


@pytest.mark.parametrize("transposed", [False, True], ids=["conv2d", "conv_transpose2d"])
def test_an_empty_batch_gives_empty_outputs_and_zero_weight_gradients(device, path, threads, transposed):
    x = Tensor(to_device(np.zeros((0, 3, 8, 8)), device), requires_grad=True)
    W = rand(3 if transposed else 4, 4 if transposed else 3, 3, 3, device=device)
    y = F.conv_transpose2d(x, W, stride=2) if transposed else F.conv2d(x, W, padding=1)
    assert y.shape[0] == 0
    y.sum().backward()
    assert x.grad.shape == x.shape and W.grad.shape == W.shape and not to_numpy(W.grad).any()


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_wide_3x3_convolutions_go_through_winograd_and_match_the_reference(monkeypatch, dtype, tol):
    # 64 channels in and out at 6x7 pixels: the fast twin's forward and input gradient take F(4x4, 3x3).
    from minisegnet.ops.fast import winograd

    calls = []
    forward = winograd.conv2d_forward
    monkeypatch.setattr(winograd, "conv2d_forward", lambda *a, **k: calls.append(a[0].shape) or forward(*a, **k))
    x, W, b = draw((2, 64, 6, 7), (64, 64, 3, 3), 64, seed=11)
    runs = []
    for reference in (False, True):
        with reference_kernels(reference):
            runs.append(forward_backward(F.conv2d, "cpu", dtype, x, W, b, 12, padding=1)[0])
    assert calls == [(2, 64, 6, 7), (2, 64, 6, 7)]  # the forward, then the input gradient (a forward pass of gy)
    assert_close(runs[0], runs[1], tol, "winograd")
