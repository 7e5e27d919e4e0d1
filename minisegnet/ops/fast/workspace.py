"""Work space for the convolutions: reused scratch buffers, batch chunks, and threads to run them.

fast/conv.py cuts a batch into chunks whose column matrix is about ``CHUNK_BYTES``, builds each
chunk's columns in a scratch buffer that is reused from call to call, and runs its products.
A fresh array KH*KW times the input's size would cost its page faults on every call, and a
cache-sized chunk is faster than the whole batch at once (benchmarks/bench_conv.py measures both).

Chunks are independent (each writes its own images of the output), so with
``set_num_threads(n)``, n >= 2, the calling thread and n - 1 of ours work through them at once,
each calling BLAS on one thread. NumPy releases the GIL inside copies and matrix products, so the threads really
run in parallel, and unlike BLAS's own threads they share the copies as well as the products
(benchmarks/results/conv_cpu.md compares the two).

``over_batch`` hands the same slices to elementwise work (batch norm, ReLU, max pooling): one core does not use
the memory bandwidth of two, and NumPy releases the GIL in these loops too.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ...backend import get_array_module
from ...threads import get_num_threads

CHUNK_BYTES = 4 << 20
# Less column data than this in all: one thread, since waking a thread (about 0.1 ms) costs more than it saves.
PARALLEL_BYTES = 2 << 20
_scratch = {}
_pool = None  # a ThreadPoolExecutor, made at the first parallel call


def scratch(like, role, shape):
    """A work array of ``shape`` and ``like``'s dtype and device, reused between calls (one per ``role``).

    Its contents are whatever was left in it. The buffer behind a role grows to the largest size
    asked for and stays allocated, so repeated calls touch no fresh memory; ``free_scratch()``
    releases it. Each thread has its own buffers. Only internal code uses them, and never hands
    one back to a caller.
    """
    size = 1
    for n in shape:
        size *= n
    key = (role, like.dtype.str, str(getattr(like, "device", "cpu")), threading.get_ident())
    buf = _scratch.get(key)
    if buf is None or buf.size < size:
        _scratch.pop(key, None)  # drop the old one before allocating its replacement
        buf = _scratch[key] = get_array_module(like).empty(size, dtype=like.dtype)
    return buf[:size].reshape(shape)


def free_scratch():
    """Release the reused work buffers of every thread (they come back at the next convolution)."""
    _scratch.clear()


def batch_chunks(N, bytes_per_image, xp=np):
    """[(n0, n1), ...] covering range(N) in chunks of at most about ``CHUNK_BYTES``, sizes within one image.

    At least one image per chunk. With ``set_num_threads(n)``, n >= 2, the number of chunks is
    rounded up to a multiple of n (at most N), so the threads finish together, unless the whole
    batch has less than ``PARALLEL_BYTES`` of columns. On the GPU (``xp`` is CuPy) the whole
    batch is one chunk: a cache-sized chunk helps a CPU, while a GPU wants few, large products
    (each chunk costs KH*KW + 2 kernel launches).
    """
    if xp is not np or N == 0:
        return [(0, N)]  # an empty batch is one empty chunk, so a sum over the chunks is a zero array
    per_chunk = max(1, min(N, CHUNK_BYTES // max(1, bytes_per_image)))
    k = -(-N // per_chunk)  # ceil: chunks needed to stay under CHUNK_BYTES
    threads = get_num_threads()
    if threads > 1 and N * bytes_per_image >= PARALLEL_BYTES:
        k = min(N, -(-k // threads) * threads)
    return [(N * i // k, N * (i + 1) // k) for i in range(k)]


def row_bands(rows, bytes_per_row, xp=np):
    """[(r0, r1), ...] covering range(rows) in near-equal bands of about ``CHUNK_BYTES`` at most; [(0, rows)] on a GPU.

    For one image whose columns alone are larger than a chunk (a 3x3 convolution of 16 channels at
    128 x 128 has 9.6 MB): fast/conv.py builds and multiplies them a band of output rows at a time, so a band's
    columns stay in cache while the product reads them.
    """
    if xp is not np:
        return [(0, rows)]
    k = max(1, min(rows, -(-rows * bytes_per_row // CHUNK_BYTES)))
    return [(rows * i // k, rows * (i + 1) // k) for i in range(k)]


def run_chunks(fn, chunks):
    """[fn(n0, n1) for (n0, n1) in chunks], on ``get_num_threads()`` threads when that is 2 or more.

    ``fn`` must write only to its own chunk's part of any shared output. With n threads the chunks
    are dealt out in n runs of neighbouring chunks, one per thread, the calling thread taking the
    first (one hand-off per thread: waking a thread costs more than a small chunk's work).
    Results come back in the order of ``chunks`` whichever thread finishes first, so sums over
    them are reproducible.
    """
    threads = min(get_num_threads(), len(chunks))
    if threads < 2:
        return [fn(n0, n1) for n0, n1 in chunks]
    runs = [chunks[len(chunks) * t // threads : len(chunks) * (t + 1) // threads] for t in range(threads)]
    others = [_executor().submit(_run, fn, run) for run in runs[1:]]
    results = _run(fn, runs[0])
    for future in others:
        results += future.result()
    return results


def over_batch(fn, x):
    """run_chunks(fn, ...) over slices of x's batch (axis 0): for elementwise work on an (N, ...) array, N >= 0.

    ``fn(n0, n1)`` handles images n0..n1-1. Slices as ``batch_chunks`` cuts them for x's size, so a small
    array stays on the calling thread and the GPU takes the whole batch at once.
    """
    return run_chunks(fn, batch_chunks(x.shape[0], x[:1].nbytes, get_array_module(x)))


def total(parts):
    """The sum of ``run_chunks``' results in chunk order, whichever thread finished first: reproducible.

    Adds into the first part, which must be an array of the caller's own (a fresh product, not a view of an input).
    """
    result = parts[0]
    for part in parts[1:]:
        result += part
    return result


def _run(fn, chunks):
    return [fn(n0, n1) for n0, n1 in chunks]


def _executor():
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="minisegnet")  # threads start as needed
    return _pool


def _forget_pool():
    # A forked child has none of its parent's threads: it must start its own pool, not queue work for the dead.
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)
