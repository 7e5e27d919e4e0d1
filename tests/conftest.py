"""Shared fixtures: every test that takes ``device`` runs once on NumPy and once on CuPy."""

import os

import numpy as np
import pytest

from minisegnet.backend import cupy_available
from minisegnet.ops.fast import blocks as fast_blocks
from minisegnet.ops.fast import workspace
from minisegnet.registry import reference_kernels
from minisegnet.threads import get_num_threads, set_num_threads

os.environ.setdefault("MINISEGNET_QUICK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def device(request):
    """ "cpu" or "gpu"; the GPU half skips cleanly where CuPy or a GPU is missing."""
    if request.param == "gpu" and not cupy_available():
        pytest.skip("CuPy with a usable GPU is not available")
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(params=["fast", "reference"])
def path(request):
    """ "fast" or "reference": the test runs on the ops' default fast paths, then inside reference_kernels()."""
    with reference_kernels(request.param == "reference"):
        yield request.param


@pytest.fixture
def fast():
    """The fast paths, whatever MINISEGNET_REFERENCE says: for tests of the speed machinery itself."""
    with reference_kernels(False):
        yield


@pytest.fixture(params=[1, 2])
def threads(request, monkeypatch):
    """1, then 2: the fast paths' batch slices on the calling thread, then one image per slice on two threads."""
    before = get_num_threads()
    if request.param > 1:
        monkeypatch.setattr(workspace, "CHUNK_BYTES", 1)
        monkeypatch.setattr(workspace, "PARALLEL_BYTES", 0)
    set_num_threads(request.param)
    yield request.param
    set_num_threads(before)


@pytest.fixture(params=["whole", "row"])
def blocks(request, monkeypatch):
    """ "whole": fast/blocks.py's cache-sized blocks (one block for a test's small arrays), then "row": one row each."""
    if request.param == "row":
        monkeypatch.setattr(fast_blocks, "BLOCK_BYTES", 1)
    return request.param
