"""The teaching assistant's voice: run a student's function, compare its output, name the likely mistake.

Whatever an answer returns (None, a list, a Tensor, NaN, ...) or raises becomes one short verdict; an
exception is reported with the file (or notebook cell) and line of the student's own code where it was raised.
"""

import linecache
import os
import sys
import sysconfig
import traceback

import numpy as np

from ..gradcheck import gradcheck
from ..tensor import Function, Tensor

STUB = "still raises NotImplementedError: replace the `raise NotImplementedError` line with your code"
EXPECTED_ERROR = "1e-8"  # a right float64 answer's relative error stays below this (it is usually near 1e-16)

# Code in these folders is not the student's: the package itself, Python's standard library, NumPy and friends.
_NOT_YOURS = tuple(
    {os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep}
    | {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
)
_errors = []  # the relative errors of the running check's float64 comparisons


class Feedback:
    """The verdict of one check: ``ok``, a ``hint`` key for the mistake found (None when ok) and the ``message``."""

    def __init__(self, name, ok, message, hint=None):
        self.name, self.ok, self.message, self.hint = name, ok, message, hint

    def __bool__(self):
        return self.ok

    def __repr__(self):
        return f"<{self.name}: {'passed' if self.ok else 'not yet: ' + str(self.hint)}>"


def verdict(name, ok, message, hint=None):
    """Print the message (a pass begins with a tick, a failure with "Not yet") and return the Feedback."""
    print(("\u2714 " if ok else "\u2718 Not yet: ") + message)
    return Feedback(name, ok, message, hint)


class Wrong(Exception):
    """Raised inside a check to stop at the first problem; carries the hint key and the message."""

    def __init__(self, hint, message):
        super().__init__(message)
        self.hint, self.message = hint, message


def your_line(err):
    """Where ``err`` was raised in the student's code, as ' (cell In[3], line 7: code)'; '' when not in it."""
    frames = [(f.f_code.co_filename, line) for f, line in traceback.walk_tb(err.__traceback__)]
    yours = [(file, line) for file, line in frames if not file.startswith(_NOT_YOURS + ("<frozen",))]
    if not yours:
        return ""
    file, line = yours[-1]
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    cell = getattr(getattr(shell, "compile", None), "_filename_map", {}).get(file)
    where = f"cell In[{cell}]" if cell is not None else os.path.basename(file)
    code = linecache.getline(file, line).strip()
    return f" ({where}, line {line}" + (f": {code})" if code else ")")


def raised(name, err):
    """One line for an exception raised while running the student's ``name``."""
    if isinstance(err, NotImplementedError):
        return Wrong("stub", f"{name} {STUB}{your_line(err)}.")
    text = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
    return Wrong("error", f"{name} raised {type(err).__name__}{': ' + text if text else ''}{your_line(err)}")


def run(name, fn, *args):
    """fn(*args), turning a stub or a crash into ``Wrong`` with a message that names the line that raised."""
    try:
        return fn(*args)
    except Exception as err:
        raise raised(name, err) from None


def describe(value):
    """What a returned value is, in a few words: "None", "a ragged list", "an array of <U1", "a dict", ..."""
    if value is None:
        return "None"
    if isinstance(value, Tensor):
        return f"a Tensor of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"an array of {value.dtype}" + (f" and shape {value.shape}" if value.dtype.kind in "biuf" else "")
    if isinstance(value, (list, tuple)):
        kind = type(value).__name__
        if any(v is None or isinstance(v, (np.ndarray, Tensor)) for v in value):
            return f"a {kind} of {len(value)} items"
        try:
            array = np.asarray(value)
        except (ValueError, TypeError):
            return f"a ragged {kind} (its rows have different lengths)"
        if array.dtype.kind not in "biuf":
            return f"a {kind} of {array.dtype}"
        return f"a {kind} of shape {array.shape}"
    if isinstance(value, dict):
        return f"a dict with the keys {sorted(map(str, value))}"
    return f"a {type(value).__name__}"


def as_array(what, got, shape, case=""):
    """``got`` if it is a NumPy array of numbers, else ``Wrong`` saying what it is and what was expected."""
    if got is None:
        raise Wrong("none", f"{what} is None: did you forget to return it?{case}")
    if isinstance(got, Tensor):
        raise Wrong("tensor", f"{what} is a Tensor: return a NumPy array (the Tensor's .data) of shape {shape}{case}")
    if not isinstance(got, np.ndarray) or got.dtype.kind not in "biuf":
        raise Wrong("type", f"{what} is {describe(got)}: return a NumPy array of numbers of shape {shape}{case}")
    return got


def rel_error(got, expected):
    """max |got - expected| / max |expected| (or |got|): 0 for equal arrays, about 1e-16 for a float64 rounding."""
    scale = max(float(np.max(np.abs(expected), initial=0.0)), float(np.max(np.abs(got), initial=0.0)), 1e-300)
    return float(np.max(np.abs(got.astype(np.float64) - expected), initial=0.0)) / scale


def close(a, b, atol=1e-6, rtol=1e-5):
    return a.shape == b.shape and bool(np.allclose(a, b, atol=atol, rtol=rtol))


def compare(what, got, expected, mistakes=(), case="", tol=(1e-6, 1e-5)):
    """Raise ``Wrong`` unless ``got`` is an array that matches ``expected`` within ``tol`` = (atol, rtol).

    ``mistakes`` lists (hint, explanation, wrong) where ``wrong`` is the array that mistake would give, or
    the shape it would give; the first one ``got`` matches names the mistake. Otherwise the message names
    a NaN or inf, the shape that was expected, or the element with the largest error.
    """
    case = f" ({case})" if case else ""
    got = as_array(what, got, expected.shape, case)
    if close(got, expected, *tol):
        if expected.dtype == np.float64:
            _errors.append(rel_error(got, expected))
        return
    for hint, explanation, wrong in mistakes:
        if isinstance(wrong, tuple) and got.shape == wrong or not isinstance(wrong, tuple) and close(got, wrong):
            raise Wrong(hint, f"{what}: {explanation}{case}")
    if got.shape != expected.shape:
        raise Wrong("shape", f"{what} has shape {got.shape}, expected {expected.shape}{case}")
    finite = np.isfinite(got)
    if not finite.all():
        index = tuple(int(i) for i in np.argwhere(~finite)[0])
        name = "NaN" if np.isnan(got[index]) else "inf"
        count = int((~finite).sum())
        raise Wrong("nan", f"{what}{list(index)} is {name} ({count} of {got.size} elements are NaN or inf){case}")
    err = np.abs(got - expected)
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(err)), err.shape))
    count = int((err > tol[0] + tol[1] * np.abs(expected)).sum())
    raise Wrong(
        "value",
        f"{what}{list(index)} is {got[index]:.6g}, expected {expected[index]:.6g}; {count} of {err.size} "
        f"elements are wrong, relative error {rel_error(got, expected):.1e}{case}",
    )


def pair_of(name, got, what="(y, indices)"):
    """``got`` as a pair, or ``Wrong`` when it is None or not two things."""
    if got is None:
        raise Wrong("none", f"{name} returned None: did you forget to return {what}?")
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise Wrong("type", f"{name} must return the pair {what}, got {describe(got)}")
    return got


def check(name, body, what):
    """Run ``body()`` (which raises ``Wrong`` at the first problem) and turn the outcome into a verdict.

    A pass prints the largest relative error of the float64 comparisons against what to expect.
    """
    _errors.clear()
    try:
        body()
    except Wrong as wrong:
        return verdict(name, False, wrong.message, wrong.hint)
    except Exception as err:  # anything else an unexpected answer provokes still gets one line
        wrong = raised(f"checking {name} on your answer", err)
        return verdict(name, False, wrong.message, wrong.hint)
    error = max(_errors, default=None)
    if error is None:
        return verdict(name, True, f"{name} is right: {what}.")
    if error <= float(EXPECTED_ERROR):
        return verdict(name, True, f"{name} is right: {what}; relative error {error:.1e}, below {EXPECTED_ERROR}.")
    return verdict(
        name,
        True,
        f"{name} is right within the check's tolerance: {what}; but its relative error {error:.1e} is above the "
        f"{EXPECTED_ERROR} that float64 reaches: is part of it computed in float32?",
    )


def gradient_check(name, forward, backward, *inputs):
    """Gradcheck a Function made of the library's ``forward`` and the student's ``backward`` (float64).

    ``backward(gy, *arrays)`` returns one gradient per input of ``forward`` (None where there is none).
    Raises ``Wrong`` with gradcheck's report when the gradient disagrees with central differences.
    """

    class Student(Function):
        def forward(self, *arrays):
            self.arrays = arrays
            return forward(*arrays)

        def backward(self, gy):
            grads = run(name, backward, gy, *self.arrays)
            grads = tuple(grads) if isinstance(grads, (tuple, list)) else (grads,)
            for g, a in zip(grads, self.arrays):
                as_array(f"{name}'s gradient", g, a.shape, " (in gradcheck)")
            return grads

    tensors = [Tensor(a, requires_grad=a.dtype.kind == "f") for a in inputs]
    report = gradcheck(lambda *ts: Student()(*ts), *tensors, raise_exception=False, name=name)
    if not report:
        w = report.worst
        raise Wrong(
            "gradcheck",
            f"{name} disagrees with central differences: at input {w['input']} index {list(w['index'])} yours gives "
            f"{w['analytic']:.6g}, central differences {w['numeric']:.6g} (relative error {report.max_rel_err:.1e})",
        )
