"""Checks shared by every loss (cross-entropy, BCE, focal, the Dice family): labels, weights, finiteness, switches.

Each raises a one-line error that names the bad value and what was expected. A check that looks at the values
reads one boolean back from the device (``backend.read_host``: a GPU sync, counted by ``host_reads.count_host_reads``),
or, inside ``checks.deferred_checks()`` (the training loop), records it there to be read at the next flush.
"""

from ..backend import get_array_module, read_host
from ..checks import open_checks


def constant(a, like):
    """A list or number given as a class / pixel weight, made an array on ``like``'s device; arrays pass through."""
    if isinstance(a, (list, tuple, int, float)):
        return get_array_module(like).asarray(a, dtype=float)
    return a


def first_bad(a, bad):
    """The first element of ``a`` where the boolean array ``bad`` holds, as a Python number (for error messages)."""
    return read_host(a[bad].ravel()[0])


def fail_if(bad, a, message):
    """Raise ``ValueError(message(v))``, v the first value of ``a`` where the boolean array ``bad`` holds, if any does.

    Inside ``checks.deferred_checks()`` nothing is read: the flag and v stay on the device until its flush.
    """
    checks = open_checks()
    if checks is None:
        if read_host(bad.any()):
            raise ValueError(message(first_bad(a, bad)))
    elif bad.size:
        first = bad.reshape(-1).argmax()  # the first True (0 when none: that value is then never shown)
        checks.record(bad.any(), a.reshape(-1)[first], message)


def check_finite(x, what):
    """Raise a ValueError naming the first NaN or Inf in ``x``."""
    xp = get_array_module(x)
    fail_if(~xp.isfinite(x), x, lambda v: f"{what} contains {v} at least once; expected finite values")


def check_labels(t, C, ignore_index, what):
    """Raise unless ``t`` holds integers in [0, C) or equal to ``ignore_index`` (which may be None)."""
    xp = get_array_module(t)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{what} must hold integer class labels, got dtype {t.dtype}")
    bad = (t < 0) | (t >= C)
    if ignore_index is not None:
        bad &= t != ignore_index
    extra = "" if ignore_index is None else f" or equal ignore_index={ignore_index}"
    fail_if(bad, t, lambda v: f"{what} holds label {v}; labels must lie in [0, {C}) for C={C}{extra}")
    return xp


def check_unit_interval(a, what, hint=""):
    """Raise unless every value of ``a`` lies in [0, 1] (NaN fails too, since NaN compares false)."""
    inside = (a >= 0) & (a <= 1)
    fail_if(~inside, a, lambda v: f"{what} must lie in [0, 1]{hint}, got {v}")


def check_class_weight(weight, C, what, nonnegative=False):
    """Raise unless ``weight`` is a 1-D array of C entries (and, with ``nonnegative``, none below 0)."""
    if weight.ndim != 1 or weight.shape[0] != C:
        raise ValueError(f"{what} must have shape ({C},), one entry per class, got shape {tuple(weight.shape)}")
    if nonnegative:
        fail_if(weight < 0, weight, lambda v: f"{what} must be >= 0, got {v}")


def check_choice(value, choices, what):
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def check_number(value, what, low=0.0, high=None):
    """Raise unless ``value`` is a real number in [low, high] (high None: no upper bound)."""
    ok = isinstance(value, (int, float)) and value == value and value >= low and (high is None or value <= high)
    if not ok:
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{what} must be a number {bound}, got {value!r}")


def check_int_not_one_hot(target, ndim, what):
    """Raise when an integer target has the class axis (N, C, H, W): labels are (N, H, W), masks float or bool."""
    if target.dtype.kind in "iu" and target.ndim == ndim:
        raise TypeError(
            f"{what}: integer target of shape {tuple(target.shape)} looks like a one-hot mask of dtype {target.dtype}; "
            "use a float or bool one-hot mask, or integer labels (N, H, W)"
        )
