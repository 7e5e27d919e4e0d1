"""ops/fast/cuda_fused.py: where its kernels run and where the generic code does.

Each kernel is compared with the generic array code in the op's own test file (test_pool.py, test_loss.py,
test_norm.py), on CuPy where a GPU exists and on the host through tests/cuda_host.py everywhere else;
tests/test_cuda_sources.py compiles them with nvcc.
"""

import numpy as np
import pytest

import minisegnet.ops as F
from minisegnet import Tensor, cuda
from minisegnet.ops.fast import cuda_fused
from minisegnet.registry import reference_kernels

from cuda_host import ran, use_host_kernels
from utils import rel_error

POOL = (2, 2), (2, 2), (0, 0), (1, 1)  # kernel, stride, padding, output size of a 2x2 input


def fused_calls(x):
    """Each wrapper of cuda_fused.py called on small float arrays like ``x`` (dtype and module)."""
    labels = np.zeros((1, 2), dtype=np.int64)
    tap = np.zeros((1, 1, 1, 1), dtype=np.uint8)
    fused = cuda_fused.batch_norm_forward(x.reshape(2, 2), None, None, None, None, 0.1, 1e-5)
    return {
        "max_pool_forward": cuda_fused.max_pool_forward(x, *POOL),
        "max_pool_backward": cuda_fused.max_pool_backward(x[..., :1, :1], tap, x.shape, *POOL),
        "cross_entropy_forward": cuda_fused.cross_entropy_forward(x.reshape(1, 2, 2), labels, None, -100),
        "batch_norm_forward": fused,
        "batch_norm_backward": None if fused is None else cuda_fused.batch_norm_backward(fused[0], *fused[1:], None),
    }


def test_no_kernel_runs_on_numpy():
    # NumPy arrays always take the generic code: there is nothing to launch.
    assert all(result is None for result in fused_calls(np.ones((1, 1, 2, 2))).values())


@pytest.mark.slow  # g++ builds the kernels (about a second each)
def test_the_switches_and_unsupported_dtypes_turn_the_kernels_off(monkeypatch):
    fetched = use_host_kernels(monkeypatch)
    x = np.arange(4.0).reshape(1, 1, 2, 2)
    assert all(result is not None for result in fused_calls(x).values()) and fetched
    assert all(result is not None for result in fused_calls(x.astype(np.float32)).values())
    assert all(result is None for result in fused_calls(x.astype(np.float16)).values())  # no C type: generic
    with reference_kernels():
        assert all(result is None for result in fused_calls(x).values())
    monkeypatch.setattr(cuda, "CUDA_KERNELS", False)  # MINISEGNET_CUDA_KERNELS=0
    assert all(result is None for result in fused_calls(x).values())


@pytest.mark.slow  # g++ builds the kernels (about a second each)
def test_batch_norm_in_eval_mode_takes_the_generic_code(monkeypatch):
    fetched = use_host_kernels(monkeypatch)
    x = Tensor(np.random.default_rng(0).standard_normal((4, 3, 2, 2)), requires_grad=True)
    y = F.batch_norm(x, np.zeros(3), np.ones(3), training=False)
    y.backward(np.ones(y.shape))
    assert ran(fetched)  # none: eval mode is one multiply, nothing to fuse


@pytest.mark.slow  # g++ builds the kernels (about a second each)
def test_max_pool_kernel_with_more_than_256_taps(monkeypatch):
    # A 17x17 window has 289 taps: the tap index is uint16, the kernel's other variant.
    fetched = use_host_kernels(monkeypatch)
    a = np.random.default_rng(1).integers(-3, 4, (2, 2, 20, 19)).astype(np.float64)
    runs = []
    for kernels in (True, False):
        monkeypatch.setattr(cuda, "CUDA_KERNELS", kernels)
        x = Tensor(a, requires_grad=True)
        y, idx = F.max_pool2d(x, 17, 1, 3, return_indices=True)
        y.backward(np.random.default_rng(2).standard_normal(y.shape))
        runs.append((y.data, idx.data, x.grad))
        assert ran(fetched, *(["minisegnet_max_pool_forward", "minisegnet_max_pool_backward"] * kernels))
    (y, idx, gx), (y_generic, idx_generic, gx_generic) = runs
    np.testing.assert_array_equal(y, y_generic)
    np.testing.assert_array_equal(idx, idx_generic)
    assert rel_error(gx, gx_generic) <= 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["int32 sizes", "int32 labels"])
def test_the_host_launch_refuses_arguments_of_the_wrong_type(monkeypatch, bad):
    # The check a RawKernel leaves to its caller (tests/cuda_host.py): a wrong type there reads garbage on a GPU.
    use_host_kernels(monkeypatch)
    x = np.zeros((1, 2, 3))
    kernel = cuda_fused._kernel(
        np, cuda_fused._CROSS_ENTROPY_FORWARD_CUDA, "minisegnet_cross_entropy_forward", T=x.dtype
    )
    t = np.zeros((1, 3), dtype=np.int32 if bad == "int32 labels" else np.int64)
    n = np.int32(3) if bad == "int32 sizes" else np.int64(3)
    p, w, loss = np.empty_like(x), np.empty((1, 3)), np.empty((1, 3))
    args = (x, t, x, np.int32(0), np.int64(0), np.int32(0), n, np.int32(2), np.int64(3), p, w, loss)
    with pytest.raises(AssertionError, match="pixels|: t "):
        kernel((1,), (4,), args)


@pytest.mark.slow  # g++ builds the kernels (about a second each)
def test_batch_norm_with_float64_running_stats_runs_the_generic_code(monkeypatch):
    # float32 x with float64 buffers: the forward's kernel takes one dtype, so the generic forward runs (fast/norm.py),
    # and its own backward follows it: the fused backward only ever follows the fused forward.
    fetched = use_host_kernels(monkeypatch)
    rng = np.random.default_rng(3)
    a, gy = rng.standard_normal((5, 3, 4, 2)).astype(np.float32), rng.standard_normal((5, 3, 4, 2)).astype(np.float32)
    runs = []
    for kernels in (True, False):
        monkeypatch.setattr(cuda, "CUDA_KERNELS", kernels)
        x, W = Tensor(a, requires_grad=True), Tensor(np.linspace(0.5, 2, 3, dtype=np.float32), requires_grad=True)
        y = F.batch_norm(x, np.zeros(3), np.ones(3), W, None, training=True)
        y.backward(gy)
        runs.append((y.data, x.grad, W.grad))
        assert ran(fetched)
    for fused, generic in zip(*runs):
        assert fused.dtype == generic.dtype == np.float32 and rel_error(fused, generic) <= 1e-5
