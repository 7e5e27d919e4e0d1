"""ops/fast/workspace.py: reused scratch buffers, batch chunks, and the threads that run them."""

import os
import signal
import threading

import numpy as np
import pytest

import minisegnet.ops as F
import minisegnet.ops.fast.workspace as workspace
from minisegnet.backend import get_array_module, to_numpy
from minisegnet.ops.fast.im2col import cuda_columns
from minisegnet.ops.fast.workspace import CHUNK_BYTES, PARALLEL_BYTES, batch_chunks, row_bands, run_chunks
from minisegnet.threads import get_num_threads, set_num_threads

from utils import rand, rel_error


@pytest.fixture(autouse=True)
def fast_paths_only(fast):
    """Every test here is about the fast path's machinery."""


@pytest.fixture
def threads():
    """set_num_threads for one test, restored afterwards."""
    before = get_num_threads()
    yield set_num_threads
    set_num_threads(before)


def test_scratch_buffers_are_reused_and_never_returned(device):
    x, W = rand(3, 2, 9, 9, device=device, requires_grad=False), rand(4, 2, 3, 3, device=device, seed=1)
    workspace.free_scratch()
    y1 = F.conv2d(x, W, None, 1, 1).data
    buffers = dict(workspace._scratch)
    # The padded image is a scratch buffer too, except on CuPy, where the im2col kernel pads as it reads.
    assert {key[0] for key in buffers} >= {"col", "prod"} | (set() if cuda_columns(get_array_module(x)) else {"pad"})
    y2 = F.conv2d(x, W, None, 1, 1).data
    assert all(workspace._scratch[k] is buf for k, buf in buffers.items())  # the same buffers again
    if device == "cpu":
        assert not any(np.shares_memory(y2, buf) for buf in buffers.values())
    assert rel_error(y1, y2) == 0
    workspace.free_scratch()
    assert workspace._scratch == {} and rel_error(F.conv2d(x, W, None, 1, 1), y1) == 0


def _conv_results(device):
    # Forward + backward of a strided conv2d, a stride-1 conv2d and a conv_transpose2d sharing x and W.
    x, W, b = rand(5, 3, 7, 6, device=device), rand(3, 3, 3, 3, device=device, seed=1), rand(3, device=device)
    gy = rand(5, 3, 4, 3, device=device, seed=2, requires_grad=False).data
    gy1 = rand(5, 3, 7, 6, device=device, seed=4, requires_grad=False).data
    gyt = rand(5, 3, 15, 13, device=device, seed=3, requires_grad=False).data
    F.conv2d(x, W, b, 2, 1).backward(gy)
    F.conv2d(x, W, b, 1, 1).backward(gy1)  # gradients accumulate
    yt = F.conv_transpose2d(x, W.transpose(1, 0, 2, 3), None, 2, 0, 0)
    yt.backward(gyt)
    return [to_numpy(a) for a in (yt.data, x.grad, W.grad, b.grad)]


def test_many_small_batch_chunks_give_the_same_result(device, monkeypatch):
    whole = _conv_results(device)
    monkeypatch.setattr(workspace, "CHUNK_BYTES", 1)  # one image per chunk
    for a, r in zip(_conv_results(device), whole):
        assert rel_error(a, r) <= 1e-14


@pytest.mark.parametrize("n", [1, 2, 3])
def test_threads_give_the_same_result_as_one_thread(n, threads, monkeypatch):
    whole = _conv_results("cpu")
    threads(n)
    monkeypatch.setattr(workspace, "CHUNK_BYTES", 1)  # one image per chunk,
    monkeypatch.setattr(workspace, "PARALLEL_BYTES", 0)  # shared out however small
    for _ in range(3):  # the threads finish in varying order; the sums must not depend on it
        for a, r in zip(_conv_results("cpu"), whole):
            assert rel_error(a, r) <= 1e-14


def test_run_chunks_deals_neighbouring_chunks_to_the_threads_and_keeps_the_order(threads):
    def where(n0, n1):
        return n0, threading.current_thread().name

    chunks = [(n, n + 1) for n in range(7)]
    threads(3)  # runs [0, 1], [2, 3], [4, 5, 6]: the first on the calling thread
    places = run_chunks(where, chunks)
    assert [n0 for n0, _ in places] == list(range(7))
    names = [name for _, name in places]
    assert names[0] == names[1] == threading.current_thread().name
    assert names[2] == names[3] and names[4] == names[5] == names[6]  # a thread may take both runs, if it is quick
    assert all(name.startswith("minisegnet") for name in names[2:])
    for n in (0, 1):
        threads(n)
        assert {name for _, name in run_chunks(where, chunks)} == {threading.current_thread().name}


def test_threads_hold_blas_to_one_thread_until_reset(threads):
    from threadpoolctl import threadpool_info

    def blas_threads():
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    threads(0)
    before = blas_threads()
    threads(2)
    assert blas_threads() <= {1}
    threads(0)
    assert blas_threads() == before


def test_batch_chunks_cover_the_batch_evenly_and_keep_one_chunk_on_a_gpu(threads):
    threads(0)
    assert batch_chunks(10, CHUNK_BYTES // 3) == [(0, 2), (2, 5), (5, 7), (7, 10)]  # 4 chunks of <= 3 images
    assert batch_chunks(10, CHUNK_BYTES * 2) == [(n, n + 1) for n in range(10)]
    assert batch_chunks(10, 1) == [(0, 10)]
    assert batch_chunks(10, CHUNK_BYTES // 3, xp=object()) == [(0, 10)]  # any array module but NumPy
    threads(2)
    assert batch_chunks(10, 1) == [(0, 10)]  # too little work to share
    assert batch_chunks(10, PARALLEL_BYTES // 10 + 1) == [(0, 5), (5, 10)]  # one chunk per thread
    assert batch_chunks(10, CHUNK_BYTES // 3) == [(0, 2), (2, 5), (5, 7), (7, 10)]  # already a multiple of 2
    assert batch_chunks(9, CHUNK_BYTES // 4) == [(0, 2), (2, 4), (4, 6), (6, 9)]  # 3 chunks -> 4
    assert batch_chunks(1, 1) == [(0, 1)]


def test_row_bands_split_only_an_image_larger_than_a_chunk_into_near_equal_bands():
    assert row_bands(128, CHUNK_BYTES // 128) == [(0, 128)]  # the image's columns fit in one chunk
    assert row_bands(128, CHUNK_BYTES // 40) == [(0, 32), (32, 64), (64, 96), (96, 128)]  # 3.2 chunks -> 4 bands
    assert row_bands(5, CHUNK_BYTES) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]  # a row per band at the least
    assert row_bands(7, 10 * CHUNK_BYTES) == [(r, r + 1) for r in range(7)]
    assert row_bands(128, CHUNK_BYTES, xp=object()) == [(0, 128)]  # on a GPU: one band


def test_a_large_image_in_row_bands_gives_the_same_convolution(monkeypatch):
    # (2, 3, 20x20) at a CHUNK_BYTES of 1/3 of one image's whole-row columns: 3 bands per image, against one.
    x, W, b = rand(2, 3, 20, 20), rand(4, 3, 3, 3, seed=1), rand(4, seed=2)
    gy = rand(2, 4, 20, 20, seed=3, requires_grad=False).data
    results = []
    for chunk in (None, 27 * 20 * 22 * 8 // 3):
        if chunk:
            monkeypatch.setattr(workspace, "CHUNK_BYTES", chunk)
            assert len(row_bands(20, 27 * 22 * 8)) == 3
        for t in (x, W, b):
            t.grad = None
        y = F.conv2d(x, W, b, 1, 1)
        y.backward(gy)
        results.append([to_numpy(a) for a in (y.data, x.grad, W.grad, b.grad)])
    for a, r in zip(*results):
        assert rel_error(a, r) <= 1e-14


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True])
def test_set_num_threads_refuses_bad_values(bad, threads):
    with pytest.raises(ValueError, match="number of threads must be an int >= 0"):
        threads(bad)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_its_own_threads(threads, monkeypatch):
    threads(2)
    monkeypatch.setattr(workspace, "PARALLEL_BYTES", 0)
    expected = _conv_results("cpu")  # the parent's pool now has a thread
    pid = os.fork()
    if pid == 0:  # the child: killed by SIGALRM if it hangs waiting for its parent's threads, exits 1 if wrong
        signal.alarm(30)
        ok = all(rel_error(a, r) <= 1e-14 for a, r in zip(_conv_results("cpu"), expected))
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
