"""The teaching assistant's voice: run a student's function, compare its output, name the likely mistake."""

import numpy as np

from ..gradcheck import gradcheck
from ..tensor import Function, Tensor

STUB = "still raises NotImplementedError: replace the `raise NotImplementedError` line with your code"


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


def passed(name, what):
    return verdict(name, True, f"{name} is right: {what}.")


class Wrong(Exception):
    """Raised inside a check to stop at the first problem; carries the hint key and the message."""

    def __init__(self, hint, message):
        super().__init__(message)
        self.hint, self.message = hint, message


def run(name, fn, *args):
    """fn(*args), turning a stub or a crash into ``Wrong`` with a message that says so."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise Wrong("stub", f"{name} {STUB}.") from None
    except Exception as err:
        raise Wrong("error", f"{name} raised {type(err).__name__}: {err}") from None


def close(a, b, atol=1e-6, rtol=1e-5):
    return a.shape == b.shape and bool(np.allclose(a, b, atol=atol, rtol=rtol))


def compare(what, got, expected, mistakes=(), case=""):
    """Raise ``Wrong`` unless ``got`` matches ``expected``.

    ``mistakes`` lists (hint, explanation, wrong) where ``wrong`` is the array that mistake would give, or
    the shape it would give; the first one ``got`` matches names the mistake. Otherwise the message names
    the first element with the largest error, or the shape that was expected.
    """
    case = f" ({case})" if case else ""
    if got is None:
        raise Wrong("none", f"{what} is None: did you forget to return it?{case}")
    got = np.asarray(got)
    if close(got, expected):
        return
    for hint, explanation, wrong in mistakes:
        if isinstance(wrong, tuple) and got.shape == wrong or not isinstance(wrong, tuple) and close(got, wrong):
            raise Wrong(hint, f"{what}: {explanation}{case}")
    if got.shape != expected.shape:
        raise Wrong("shape", f"{what} has shape {got.shape}, expected {expected.shape}{case}")
    err = np.abs(got - expected)
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(err)), err.shape))
    count = int((err > 1e-6 + 1e-5 * np.abs(expected)).sum())
    raise Wrong(
        "value",
        f"{what}{list(index)} is {got[index]:.6g}, expected {expected[index]:.6g}; "
        f"{count} of {err.size} elements are wrong{case}",
    )


def check(name, body, what):
    """Run ``body()`` (which raises ``Wrong`` at the first problem) and turn the outcome into a verdict."""
    try:
        body()
    except Wrong as wrong:
        return verdict(name, False, wrong.message, wrong.hint)
    return passed(name, what)


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
            return tuple(grads) if isinstance(grads, (tuple, list)) else (grads,)

    tensors = [Tensor(a, requires_grad=a.dtype.kind == "f") for a in inputs]
    report = gradcheck(lambda *ts: Student()(*ts), *tensors, raise_exception=False, name=name)
    if not report:
        raise Wrong("gradcheck", f"{name} disagrees with central differences:\n{report}")
