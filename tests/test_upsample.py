"""minisegnet/ops/upsample.py: nearest and bilinear upsample, bed of nails, against loops, torch and gradcheck."""

import numpy as np
import pytest

import minisegnet.ops as F
from minisegnet.backend import to_device, to_numpy
from minisegnet.gradcheck import gradcheck

import naive
from utils import rand, rel_error, to_torch
from utils import torch as get_torch

SHAPES = [(1, 1, 5, 7), (2, 3, 4, 4), (1, 2, 1, 3)]
# (scale_factor, size) pairs: integer factors, a per-axis pair, and sizes that are not multiples (down as well).
RESIZES = [(2, None), (3, None), ((2, 3), None), (2.0, None), (None, (9, 5)), (None, (3, 2)), (None, (10, 14))]


def out_size(shape, scale, size):
    if size is not None:
        return size
    SH, SW = (scale, scale) if np.isscalar(scale) else scale
    return int(shape[2] * SH), int(shape[3] * SW)


def factors(scale):
    if scale is None:
        return None, None
    return (scale, scale) if np.isscalar(scale) else scale


def upstream(y, seed=1):
    return np.random.default_rng(seed).standard_normal(y.shape)


def torch_interpolate(a, gy, scale, size, mode, align_corners):
    """torch's output and input gradient, or None when torch is not installed."""
    try:
        torch = get_torch()
    except pytest.skip.Exception:
        return None
    tx = to_torch(a, requires_grad=True)
    kw = {"size": size} if size is not None else {"scale_factor": scale}
    ac = align_corners if mode == "bilinear" else None
    ty = torch.nn.functional.interpolate(tx, mode=mode, align_corners=ac, **kw)
    ty.backward(torch.from_numpy(gy))
    return ty.detach().numpy(), tx.grad.numpy()


@pytest.mark.parametrize("scale,size", RESIZES)
@pytest.mark.parametrize("align_corners", [False, True])
def test_bilinear_matches_naive_loops_and_torch(device, scale, size, align_corners):
    for shape in SHAPES:
        x = rand(*shape, device=device, seed=sum(shape))
        a = to_numpy(x.data)
        y = F.upsample(x, scale, mode="bilinear", align_corners=align_corners, size=size)
        OH, OW = out_size(shape, scale, size)
        assert y.shape == shape[:2] + (OH, OW)
        assert rel_error(y, naive.bilinear(a, (OH, OW), factors(scale), align_corners)) <= 1e-10
        gy = upstream(y)
        y.backward(to_device(gy, device))
        assert rel_error(x.grad, naive.bilinear_backward(gy, shape, factors(scale), align_corners)) <= 1e-10
        ref = torch_interpolate(a, gy, scale, size, "bilinear", align_corners)
        if ref is not None:
            assert rel_error(y, ref[0]) <= 1e-10 and rel_error(x.grad, ref[1]) <= 1e-10


@pytest.mark.parametrize("scale,size", RESIZES + [(None, (15, 21)), ((1, 4), None)])
def test_nearest_matches_torch(device, scale, size):
    for shape in SHAPES:
        x = rand(*shape, device=device, seed=sum(shape))
        a = to_numpy(x.data)
        y = F.upsample(x, scale, size=size)
        OH, OW = out_size(shape, scale, size)
        if OH % shape[2] == 0 and OW % shape[3] == 0:  # an integer factor is a plain repeat
            assert rel_error(y, a.repeat(OH // shape[2], axis=2).repeat(OW // shape[3], axis=3)) == 0
        gy = upstream(y)
        y.backward(to_device(gy, device))
        ref = torch_interpolate(a, gy, scale, size, "nearest", False)
        if ref is not None:
            assert rel_error(y, ref[0]) == 0 and rel_error(x.grad, ref[1]) <= 1e-12


def test_nearest_backward_sums_blocks(device):
    x = rand(2, 1, 3, 2, device=device)
    F.upsample(x, (2, 3)).backward(to_device(np.ones((2, 1, 6, 6)), device))
    np.testing.assert_array_equal(to_numpy(x.grad), np.full((2, 1, 3, 2), 6.0))


@pytest.mark.parametrize(
    "mode,align_corners,scale,size",
    [
        ("nearest", False, 2, None),
        ("nearest", False, None, (7, 4)),
        ("bilinear", False, 2, None),
        ("bilinear", True, (3, 2), None),
        ("bilinear", False, None, (7, 4)),
        ("bilinear", True, None, (2, 9)),
    ],
)
def test_upsample_gradcheck(device, mode, align_corners, scale, size):
    x = rand(2, 2, 4, 3, device=device, seed=2)
    fn = lambda t: F.upsample(t, scale, mode=mode, align_corners=align_corners, size=size)  # noqa: E731
    assert gradcheck(fn, x).max_rel_err <= 1e-6


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_upsample_float32_keeps_dtype_and_default_factor_is_2(device, mode):
    x = rand(1, 2, 3, 5, device=device, dtype=np.float32)
    y = F.upsample(x, mode=mode)
    assert y.dtype == np.float32 and y.shape == (1, 2, 6, 10)
    y64 = F.upsample(x.data.astype(np.float64), mode=mode)
    assert rel_error(y, y64) <= 1e-6


# ---- bed of nails ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, (2, 3), (1, 2)])
def test_bed_of_nails(device, scale):
    SH, SW = (scale, scale) if np.isscalar(scale) else scale
    x = rand(2, 3, 3, 4, device=device)
    y = F.bed_of_nails(x, scale)
    expected = np.zeros((2, 3, 3 * SH, 4 * SW))
    expected[:, :, ::SH, ::SW] = to_numpy(x.data)
    np.testing.assert_array_equal(to_numpy(y.data), expected)
    gy = upstream(y)
    y.backward(to_device(gy, device))
    np.testing.assert_array_equal(to_numpy(x.grad), gy[:, :, ::SH, ::SW])
    assert gradcheck(lambda t: F.bed_of_nails(t, scale), rand(1, 2, 3, 2, device=device)).max_rel_err <= 1e-6


# ---- errors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,kwargs,error,words",
    [
        ((2, 3, 4), {}, ValueError, r"\(N, C, H, W\)"),
        ((1, 1, 2, 2), {"mode": "bicubic"}, ValueError, "'bicubic'"),
        ((1, 1, 2, 2), {"scale_factor": 1.5}, TypeError, "1.5"),
        ((1, 1, 2, 2), {"scale_factor": 0}, ValueError, r"positive, got \(0, 0\)"),
        ((1, 1, 2, 2), {"scale_factor": (2, -1)}, ValueError, r"\(2, -1\)"),
        ((1, 1, 2, 2), {"scale_factor": 2, "size": (4, 4)}, ValueError, "not both"),
        ((1, 1, 2, 2), {"size": (0, 3)}, ValueError, r"\(0, 3\)"),
        ((1, 1, 2, 2), {"align_corners": True}, ValueError, "align_corners"),
    ],
)
def test_upsample_bad_arguments_raise(device, shape, kwargs, error, words):
    with pytest.raises(error, match=words):
        F.upsample(rand(*shape, device=device), **kwargs)


def test_bed_of_nails_bad_arguments_raise(device):
    with pytest.raises(ValueError, match=r"positive, got \(0, 0\)"):
        F.bed_of_nails(rand(1, 1, 2, 2, device=device), 0)
    with pytest.raises(TypeError, match="2.5"):
        F.bed_of_nails(rand(1, 1, 2, 2, device=device), 2.5)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        F.bed_of_nails(rand(2, 2, device=device), 2)


def test_interpolation_matrices_are_built_once_per_size_dtype_and_device(device):
    x = rand(2, 3, 5, 7, device=device)
    first = F.upsample(x, 2, mode="bilinear")
    second = F.upsample(rand(2, 3, 5, 7, device=device, seed=1), 2, mode="bilinear")
    assert second.creator.AH is first.creator.AH and second.creator.AWt is first.creator.AWt  # on the device already
    other = F.upsample(rand(2, 3, 5, 7, device=device, dtype=np.float32), 2, mode="bilinear")
    assert other.creator.AH.dtype == np.float32 and other.creator.AH is not first.creator.AH
