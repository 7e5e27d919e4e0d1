"""ops/fast/winograd.py: the Winograd convolution against the reference im2col path of ops/conv.py.

The reference is ``minisegnet.ops.conv2d`` inside ``reference_kernels()`` (y = W2 @ im2col(x)), run in float64;
its autograd gives the input and weight gradients. float64 Winograd must agree to 1e-10 (normwise relative
error, max|a - b| / max|b|). float32 Winograd is compared with the float64 reference on the same float32 inputs,
so the error measured is the algorithm's own rounding, bounded per tile size:

- F(2x2, 3x3): 16 eps32 (1.9e-6). Its transforms add and halve, so it rounds about as im2col does: on the grid
  below and on U-Net shapes up to 256 channels both measured 1-7e-7 (1-6 eps32).
- F(4x4, 3x3): 128 eps32 (1.5e-5). B^T's rows sum to 10 in absolute value and A^T's to 19, so the data and
  output transforms amplify the rounding of the products: measured 0.4-6.2e-6 (3-52 eps32) on the same shapes,
  which leaves a factor of 2.5 to the bound.
"""

import itertools

import numpy as np
import pytest

import minisegnet.ops as F
from minisegnet import Tensor
from minisegnet.backend import to_device, to_numpy
from minisegnet.ops.fast import winograd
from minisegnet.registry import reference_kernels

from utils import rel_error

EPS32 = float(np.finfo(np.float32).eps)
BOUND32 = {2: 16 * EPS32, 4: 128 * EPS32}
# (N, C, OC, H, W): odd and even sizes, ragged tiles for both m, batch 1 and more, one channel and several
SHAPES = [(1, 1, 1, 3, 3), (2, 3, 5, 7, 9), (1, 4, 2, 5, 5), (3, 2, 3, 10, 6), (2, 16, 8, 9, 12), (1, 5, 7, 1, 4)]
PADDINGS = [0, 1, 2, (1, 0), 3]


def draw(shape, seed):
    """x, W, b, gy in float64 for (N, C, OC, H, W) with a He-scaled weight; gy matches the padding-1 output."""
    N, C, OC, H, Wd = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, Wd))
    W = rng.standard_normal((OC, C, 3, 3)) * np.sqrt(2 / (9 * C))
    return x, W, rng.standard_normal(OC)


def reference(x, W, b, padding, seed):
    """(y, gx, gW, gy) from ops.conv2d's im2col path and its autograd, with gy drawn for y's shape."""
    with reference_kernels():
        tx, tW = Tensor(x, requires_grad=True), Tensor(W, requires_grad=True)
        y = F.conv2d(tx, tW, None if b is None else Tensor(b), stride=1, padding=padding)
        gy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(x.dtype)
        y.backward(gy)
    return y.data, tx.grad, tW.grad, gy


def ours(x, W, b, gy, padding, m, device):
    """Winograd's (y, gx, gW) computed on ``device``, brought back to the host."""
    xd, Wd, gyd = (to_device(a, device) for a in (x, W, gy))
    bd = None if b is None else to_device(b, device)
    y = winograd.conv2d_forward(xd, Wd, bd, padding, m)
    gx = winograd.conv2d_input_grad(gyd, Wd, x.shape, padding, m)
    gW = winograd.conv2d_weight_grad(xd, gyd, padding, m)
    return tuple(to_numpy(a) for a in (y, gx, gW))


def fits(shape, padding):
    P = padding if isinstance(padding, tuple) else (padding, padding)
    return shape[3] + 2 * P[0] >= 3 and shape[4] + 2 * P[1] >= 3


CASES = [(s, p) for s, p in itertools.product(SHAPES, PADDINGS) if fits(s, p)]


@pytest.mark.parametrize("m", winograd.TILES)
@pytest.mark.parametrize("shape, padding", CASES)
def test_float64_matches_the_im2col_reference(shape, padding, m, device):
    x, W, b = draw(shape, seed=sum(shape))
    bias = b if shape[0] != 2 else None  # with and without bias
    y, gx, gW, gy = reference(x, W, bias, padding, seed=sum(shape))
    got = ours(x, W, bias, gy, padding, m, device)
    for name, a, r in zip(("y", "gx", "gW"), got, (y, gx, gW)):
        assert a.dtype == np.float64 and a.shape == r.shape, name
        assert rel_error(a, r) <= 1e-10, f"{name}: {rel_error(a, r):.2e}"


@pytest.mark.parametrize("m", winograd.TILES)
@pytest.mark.parametrize("shape", [(2, 3, 16, 17, 15), (2, 32, 32, 12, 12), (1, 128, 64, 8, 8)])
def test_float32_error_is_bounded(shape, m, device):
    x, W, b = (a.astype(np.float32) for a in draw(shape, seed=3))
    truth = reference(*(a.astype(np.float64) for a in (x, W, b)), 1, seed=3)
    gy = truth[3].astype(np.float32)
    got = ours(x, W, b, gy, 1, m, device)
    for name, a, r in zip(("y", "gx", "gW"), got, truth[:3]):
        assert a.dtype == np.float32, name
        err = rel_error(a, r)
        assert err <= BOUND32[m], f"{name}, F({m}x{m}, 3x3): {err:.2e} = {err / EPS32:.0f} eps32"


@pytest.mark.parametrize("m, r", [(2, 3), (4, 3), (3, 2), (3, 4)])
def test_one_dimensional_identity(m, r):
    # y_i = sum_k d_(i+k) g_k for i < m, computed as AT [(G g) * (BT d)]
    AT, G, BT = winograd.matrices(m, r)
    rng = np.random.default_rng(m * 10 + r)
    d, g = rng.standard_normal(m + r - 1), rng.standard_normal(r)
    direct = np.array([d[i : i + r] @ g for i in range(m)])
    np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), direct, rtol=0, atol=1e-13)


def test_f2_matrices_are_the_documented_ones():
    AT, G, BT = winograd.matrices(2, 3)
    np.testing.assert_array_equal(BT, [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, -1, 0, 1]])
    np.testing.assert_array_equal(G, [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    np.testing.assert_array_equal(AT, [[1, 1, 1, 0], [0, 1, -1, 1]])
    assert np.all(winograd.matrices(4, 3)[2] == np.round(winograd.matrices(4, 3)[2]))  # integer data transform


def test_matrices_follow_the_array_module_and_dtype():
    x = np.ones((1, 1, 4, 4), dtype=np.float32)
    W = np.ones((1, 1, 3, 3), dtype=np.float32)
    assert winograd.conv2d_forward(x, W, None, 0).dtype == np.float32
    assert winograd.conv2d_forward(x.astype(np.float64), W.astype(np.float64), None, 0).dtype == np.float64


ERRORS = [
    (lambda: winograd.conv2d_forward(np.ones((1, 1, 5, 5)), np.ones((1, 1, 5, 5))), "needs a 3x3 kernel, got 5x5"),
    (lambda: winograd.conv2d_forward(np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3)), m=3), "one of (2, 4), got 3"),
    (lambda: winograd.conv2d_forward(np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3)), padding=0), "smaller than the"),
    (lambda: winograd.conv2d_weight_grad(np.ones((1, 1, 5, 5)), np.ones((1, 1, 4, 5))), "gy has 4x5 pixels"),
    (lambda: winograd.matrices(6, 3), "no interpolation points for F(6, 3)"),
]


@pytest.mark.parametrize("call, message", ERRORS)
def test_bad_arguments_raise_one_clear_line(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value) and "\n" not in str(info.value)
