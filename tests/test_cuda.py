"""minisegnet.cuda: hand-written kernels only on CuPy, only while the switches allow them."""

import os
import subprocess
import sys

import numpy as np
import pytest

import minisegnet as msn
from minisegnet import cuda


@pytest.mark.parametrize("value,on", [("0", False), ("1", True), (" 0 ", False)])
def test_cuda_kernels_switch_from_environment(value, on):
    # MINISEGNET_CUDA_KERNELS=0 makes cuda_kernel answer None (the generic array code runs), read at import.
    code = "import numpy as np, minisegnet.cuda as c; print(c.CUDA_KERNELS, c.cuda_kernel(np, '', '', '', 'k'))"
    env = {**os.environ, "MINISEGNET_CUDA_KERNELS": value}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(on), "None"]  # None on NumPy either way


def test_no_kernel_on_numpy_nor_inside_the_reference_switch():
    assert not cuda.kernels_on(np)
    assert cuda.cuda_kernel(np, "T x", "T y", "y = x", "copy") is None
    assert cuda.raw_kernel(np, "", "k") is None
    with msn.reference_kernels():
        assert cuda.cuda_kernel(object(), "T x", "T y", "y = x", "copy") is None  # any array module
        assert not cuda.kernels_on(object())
