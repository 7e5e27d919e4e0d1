"""minisegnet.backend: array module dispatch, devices, the clear error for a missing GPU."""

import numpy as np
import pytest

import minisegnet as msn
from minisegnet import backend


def test_get_array_module_unwraps_tensors_and_defaults_to_numpy():
    assert backend.get_array_module(np.zeros(2)) is np
    assert backend.get_array_module(msn.tensor([1.0])) is np
    assert backend.get_array_module(None, 3.0) is np


def test_to_numpy_and_to_device_cpu_round_trip(device):
    a = np.arange(6.0).reshape(2, 3)
    b = backend.to_device(a, device)
    assert backend.device_of(b) == device
    np.testing.assert_array_equal(backend.to_numpy(b), a)
    assert isinstance(backend.to_numpy(msn.tensor(a)), np.ndarray)


def test_unknown_device_is_rejected():
    with pytest.raises(ValueError, match="'tpu'"):
        backend.to_device(np.zeros(1), "tpu")


def test_gpu_request_without_cupy_says_how_to_install(monkeypatch):
    monkeypatch.setattr(backend, "_gpu_ok", False)
    with pytest.raises(RuntimeError, match=r"pip install -e \"\.\[gpu\]\"") as info:
        backend.check_device("gpu")
    assert "device='cpu'" in str(info.value)
    with pytest.raises(RuntimeError, match="gpu"):
        msn.tensor([1.0], device="gpu")


def test_default_device_from_environment(monkeypatch):
    monkeypatch.setenv("MINISEGNET_DEVICE", "cpu")
    assert backend.default_device() == "cpu"
    monkeypatch.setenv("MINISEGNET_DEVICE", "quantum")
    with pytest.raises(ValueError, match="quantum"):
        backend.default_device()


def test_synchronize_is_safe_everywhere(device):
    backend.synchronize()


def test_mixing_numpy_and_cupy_is_an_error(device):
    if device == "cpu":
        pytest.skip("needs both backends")
    with pytest.raises(TypeError, match="cannot mix"):
        msn.tensor([1.0], device="gpu") + msn.tensor([1.0], device="cpu")


def test_bincount_counts_every_value_into_a_fixed_length(device):
    # backend.bincount: np.bincount with minlength on NumPy, a scatter-add on CuPy (no read of max(x)).
    x = np.random.default_rng(0).integers(0, 7, (3, 5, 4))
    counts = backend.bincount(backend.to_device(x, device), 9)
    assert backend.device_of(counts) == device and counts.dtype == np.int64 and counts.shape == (9,)
    np.testing.assert_array_equal(backend.to_numpy(counts), np.bincount(x.ravel(), minlength=9))
    empty = backend.bincount(backend.to_device(np.zeros(0, dtype=np.int64), device), 3)
    np.testing.assert_array_equal(backend.to_numpy(empty), [0, 0, 0])
