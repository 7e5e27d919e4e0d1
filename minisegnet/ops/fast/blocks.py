"""Cache-sized blocks for elementwise work: several NumPy calls in a row over one block while it is in cache.

NumPy runs one operation over a whole array before the next begins, so ``y *= a; y += b`` reads and writes y twice.
When y is larger than a core's L2 cache, both passes go to slower memory. Cut into blocks of about
``BLOCK_BYTES`` and run both calls on one block before moving to the next, the second call finds its block
in cache: the number of NumPy calls stays the same, but only the first of them over a block reaches main memory.

A block is a range of *rows*: an (N, ...) array is read as N * k rows of equal length (k per image: the C
channel planes of (N, C, H, W) for per-channel work, or every element for ReLU). Threads take slices of
the batch as ``over_batch`` cuts them (fast/workspace.py), and each thread walks its slice block by block.
A GPU takes each slice in one block: there every call is a kernel launch, and more blocks would mean more launches.
"""

import numpy as np

from ...backend import get_array_module
from .workspace import over_batch

BLOCK_BYTES = 256 << 10  # the block of the largest array; with two or three arrays at once it stays in a 1 MiB L2


def as_rows(a, per_image):
    """a (N, ...) C-contiguous as a view (N * per_image, rest): ``per_image`` rows per image."""
    rows = a.shape[0] * per_image
    return a.reshape(rows, a.size // rows if rows else 0)


def over_blocks(fn, a, per_image):
    """fn(r0, r1) for consecutive row ranges of ``as_rows(a, per_image)``, each about ``BLOCK_BYTES`` of a.

    Covers rows 0 .. N * per_image - 1 once; ``fn`` must write only to its own rows of any shared output.
    The ranges never cross the slices that threads take (fast/workspace.py's ``over_batch``).
    """
    if get_array_module(a) is not np:
        over_batch(lambda n0, n1: fn(n0 * per_image, n1 * per_image), a)
        return
    row_bytes = a[:1].nbytes // max(1, per_image)
    step = max(1, BLOCK_BYTES // max(1, row_bytes))

    def part(n0, n1):
        end = n1 * per_image
        for r0 in range(n0 * per_image, end, step):
            fn(r0, min(r0 + step, end))

    over_batch(part, a)
