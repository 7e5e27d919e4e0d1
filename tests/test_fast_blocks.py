"""ops/fast/blocks.py: an (N, ...) array as rows, walked in cache-sized blocks that stay inside the threads' slices."""

import threading

import numpy as np
import pytest

import minisegnet.ops.fast.blocks as blocks
from minisegnet.backend import get_array_module, to_device, to_numpy


def walk(a, per_image):
    """The (r0, r1, thread) of every block over_blocks hands out, in the order they ran on each thread."""
    seen, lock = [], threading.Lock()

    def fn(r0, r1):
        with lock:
            seen.append((r0, r1, threading.get_ident()))

    blocks.over_blocks(fn, a, per_image)
    return seen


@pytest.mark.parametrize("shape,per_image", [((4, 3, 5, 6), 3), ((4, 3, 5, 6), 90), ((7, 2), 2), ((0, 3, 2, 2), 3)])
def test_blocks_cover_every_row_once_within_the_threads_slices(device, threads, shape, per_image, monkeypatch):
    a = to_device(np.zeros(shape, dtype=np.float32), device)
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 2 * a[:1].nbytes // per_image)  # two rows per block on a CPU
    seen = walk(a, per_image)
    rows = sorted((r0, r1) for r0, r1, _ in seen)
    covered = [r for r0, r1 in rows for r in range(r0, r1)]
    assert covered == list(range(shape[0] * per_image))
    for r0, r1 in rows:
        if get_array_module(a) is np:
            assert r1 - r0 <= 2
        if threads > 1:  # the threads fixture gives each image its own slice: a block never spans two images
            assert r0 // per_image == (r1 - 1) // per_image


def test_as_rows_is_a_view_with_per_image_rows(device):
    a = to_device(np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 2, 2), device)
    rows = blocks.as_rows(a, 3)
    assert rows.shape == (6, 4)
    rows[4, 1] = -1.0  # image 1, channel 1, element 1
    assert float(to_numpy(a)[1, 1, 0, 1]) == -1.0
    assert blocks.as_rows(a, 12).shape == (24, 1)
    assert blocks.as_rows(a[:0], 3).shape == (0, 0)
