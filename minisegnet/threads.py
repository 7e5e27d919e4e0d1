"""minisegnet's own CPU threads, like ``torch.set_num_threads``.

The fast convolutions, batch norm, ReLU and max pooling (ops/fast/) cut each batch into slices
that ``get_num_threads()`` threads work through at once (ops/fast/workspace.py). While
minisegnet runs its own threads, BLAS is held to one thread so the two do not compete.
"""

import numbers

_num_threads = 0
_blas_limits = None  # threadpoolctl's record of BLAS's own thread count while minisegnet holds it at one


def set_num_threads(n):
    """CPU threads for minisegnet's convolutions, batch norm, ReLU and max pooling.

    ``n`` >= 1: each batch is cut into chunks that n threads (the calling one and n - 1 of
    minisegnet's) work through at once, and BLAS is held to one thread, everywhere in the
    process, until ``set_num_threads(0)``. 0 (the default): the calling thread alone, with
    BLAS's own threads (all cores unless ``OPENBLAS_NUM_THREADS`` or threadpoolctl says otherwise).
    """
    global _num_threads, _blas_limits
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"the number of threads must be an int >= 0 (0: leave threads to BLAS), got {n!r}")
    if n and _blas_limits is None:
        from threadpoolctl import threadpool_limits

        _blas_limits = threadpool_limits(limits=1, user_api="blas")
    elif not n and _blas_limits is not None:
        _blas_limits.restore_original_limits()
        _blas_limits = None
    _num_threads = int(n)


def get_num_threads():
    """The number set by ``set_num_threads`` (0: threads left to BLAS)."""
    return _num_threads
