"""Small helpers the tests share: random tensors on a device, relative error, the torch oracle."""

import numpy as np
import pytest

from minisegnet import Tensor
from minisegnet.backend import to_device, to_numpy


def rand(*shape, device="cpu", dtype=np.float64, seed=0, requires_grad=True, low=None, high=None):
    """A random Tensor on ``device``: standard normal, or uniform in [low, high) when both are given."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(low, high, size=shape) if low is not None else rng.standard_normal(shape)
    return Tensor(to_device(a.astype(dtype), device), requires_grad=requires_grad)


def rand_labels(shape, C=3, device="cpu", seed=0, ignore=None):
    """Random integer labels in [0, C) of ``shape`` on ``device``; with ``ignore``, ~30% of them set to it."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, C, shape)
    if ignore is not None:
        t[rng.random(shape) < 0.3] = ignore
    return to_device(t, device)


def rel_error(a, b):
    """max|a - b| / max(max|a|, max|b|): the normwise relative error of two arrays or Tensors."""
    a = to_numpy(a).astype(np.float64)
    b = to_numpy(b).astype(np.float64)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    scale = max(np.abs(a).max(initial=0), np.abs(b).max(initial=0))
    return float(np.abs(a - b).max(initial=0) / scale) if scale else float(np.abs(a - b).max(initial=0))


def torch():
    """The torch module, or skip the test when PyTorch is not installed (it is only an oracle)."""
    return pytest.importorskip("torch")


def to_torch(x, requires_grad=False):
    """A float64/float32 torch tensor with the same values as a Tensor or array."""
    t = torch().from_numpy(to_numpy(x).copy())
    return t.requires_grad_(requires_grad)
