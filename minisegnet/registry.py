"""Which implementation of an op runs: the taught Function, or a faster one registered for it.

The ops in ``minisegnet/ops/`` are written as the lessons teach them. Some have a faster twin in
``minisegnet/ops/fast/`` that computes the same arrays: a subclass of the taught Function that
replaces its ``forward`` and ``backward``. ``ops/fast/__init__.py`` pairs them up, in one table,
with ``register(taught, faster)``. Creating a taught Function (``Conv2d(stride, padding, dilation)``)
then makes its registered twin instead (``Function.__new__`` asks ``chosen``), unless the
reference switch is on:

    with minisegnet.reference_kernels():      # or MINISEGNET_REFERENCE=1, read at import
        loss = model(x)                       # every op runs the code the lessons teach

The switch also turns off the hand-written CUDA kernels (minisegnet/cuda.py).
"""

import os

_faster = {}  # taught Function class -> its faster subclass
_reference = os.environ.get("MINISEGNET_REFERENCE", "0").strip() not in ("", "0")


def register(taught, faster):
    """Run ``faster`` (a subclass of the Function class ``taught``) wherever ``taught`` is created."""
    if not issubclass(faster, taught):
        raise TypeError(f"register: {faster.__name__} must be a subclass of {taught.__name__}")
    _faster[taught] = faster


def chosen(cls):
    """The class to create for the Function class ``cls``: its registered twin, or ``cls`` itself."""
    return cls if _reference else _faster.get(cls, cls)


def fast_paths():
    """True (the default) when registered fast implementations run; False inside ``reference_kernels()``."""
    return not _reference


def registered():
    """{taught class: faster class} for every registered pair."""
    return dict(_faster)


class reference_kernels:
    """Run every op on its taught (reference) implementation inside the ``with`` block (``on=False``: the fast one).

    The reference implementations are the lessons' code: conv2d as ``W2 @ im2col(x)``, max pooling as
    an argmax over the window stack, no CUDA kernels. Results agree with the fast ones to rounding
    (the tests compare them); only the speed differs. A Function keeps the implementation it was
    created with, so switch before the forward pass, not between it and ``backward()``. The previous
    setting comes back on exit, also after an exception; blocks nest. (A class: a switch, not an op.)
    """

    def __init__(self, on=True):
        self.on = bool(on)
        self.before = []

    def __enter__(self):
        global _reference
        self.before.append(_reference)
        _reference = self.on
        return self

    def __exit__(self, *exc_info):
        global _reference
        _reference = self.before.pop()
