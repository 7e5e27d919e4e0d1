"""The checker: compare a backward pass with central differences (``minisegnet.gradcheck``).

For a function y = f(x1, ..., xk) we draw a *random* upstream gradient G of y's shape
and check the scalar L = <f(x), G>. Its analytic gradient is what ``backward(G)``
accumulates; its numeric gradient is ``(L(x + eps e_i) - L(x - eps e_i)) / (2 eps)``.
A random G (rather than ``y.sum()``) exposes errors that a plain sum would cancel, e.g.
a backward that permutes its output. Central differences are accurate to O(eps^2), so
float64 with eps = 1e-6 resolves gradients to about 1e-9; float32 cannot.

    >>> import numpy as np, minisegnet as msn, minisegnet.ops as F
    >>> x = msn.tensor(np.linspace(-1, 1, 6).reshape(2, 3), requires_grad=True)
    >>> gradcheck(F.tanh, x).ok
    True
"""

import warnings

import numpy as np

from ..backend import get_array_module, read_host
from ..tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    """Raised by ``gradcheck(..., raise_exception=True)`` when a gradient disagrees."""


class GradcheckReport:
    """What gradcheck found: ``ok``, ``max_abs_err``, ``max_rel_err`` and the ``worst`` element.

    ``max_rel_err`` is normwise per input, max|a - n| / max(max|a|, max|n|), so tiny
    gradient entries do not dominate it; the pass test is elementwise,
    |a - n| <= atol + rtol * |n|. ``worst`` is a dict (input, index, analytic, numeric)
    for the element furthest outside that tolerance.
    """

    def __init__(self, name, mode, rows, atol, rtol):
        self.name, self.mode, self.rows, self.atol, self.rtol = name, mode, rows, atol, rtol
        self.ok = all(r["ok"] for r in rows)
        self.max_abs_err = max((r["abs_err"] for r in rows), default=0.0)
        self.max_rel_err = max((r["rel_err"] for r in rows), default=0.0)
        self.worst = max(rows, key=lambda r: r["excess"])["worst"] if rows else None

    def __bool__(self):
        return self.ok

    def __str__(self):
        lines = [
            f"gradcheck {self.name} ({self.mode}): {'ok' if self.ok else 'FAILED'}  "
            f"max abs err {self.max_abs_err:.2e}  max rel err {self.max_rel_err:.2e}  "
            f"(atol {self.atol:g}, rtol {self.rtol:g})"
        ]
        for r in self.rows:
            lines.append(
                f"  input {r['input']} shape {r['shape']}: abs {r['abs_err']:.2e} rel {r['rel_err']:.2e}"
                f" {'ok' if r['ok'] else 'FAILED'}"
            )
        if self.worst is not None and not self.ok:
            w = self.worst
            lines.append(
                f"  worst: input {w['input']} index {w['index']}: analytic {w['analytic']:.10g} "
                f"numeric {w['numeric']:.10g}"
            )
        return "\n".join(lines)

    __repr__ = __str__


def _loss(fn, inputs, G):
    with no_grad():
        y = fn(*inputs)
    y = y.data if isinstance(y, Tensor) else y
    return (y * G).sum()


def _compare(i, x, analytic, numeric, atol, rtol, index_of):
    xp = get_array_module(analytic)
    diff = xp.abs(analytic - numeric)
    excess = diff / (atol + rtol * xp.abs(numeric))
    k = int(excess.argmax())
    scale = read_host(xp.maximum(xp.abs(analytic).max(), xp.abs(numeric).max()))
    abs_err = read_host(diff.max())
    return {
        "input": i,
        "shape": tuple(x.shape),
        "abs_err": abs_err,
        "rel_err": abs_err / scale if scale else abs_err,
        "excess": read_host(excess.reshape(-1)[k]),
        "ok": bool((excess <= 1).all()),
        "worst": {
            "input": i,
            "index": index_of(k),
            "analytic": read_host(analytic.reshape(-1)[k]),
            "numeric": read_host(numeric.reshape(-1)[k]),
        },
    }


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, mode="full", seed=0, raise_exception=True, name=None):
    """Check ``fn``'s backward against central differences for every input that requires grad.

    ``fn`` maps Tensors to one Tensor. ``mode="full"`` perturbs every element (2 calls of
    ``fn`` per element); ``mode="random"`` compares one directional derivative per input
    along a random direction (2 calls per input), cheap for large inputs. Works on CuPy
    arrays in place, without host copies. Returns a ``GradcheckReport``; raises
    ``GradcheckError`` (with the report) on failure when ``raise_exception`` is True.
    """
    if mode not in ("full", "random"):
        raise ValueError(f"mode must be 'full' or 'random', got {mode!r}")
    inputs = [x if isinstance(x, Tensor) else Tensor(x, requires_grad=np.asarray(x).dtype.kind == "f") for x in inputs]
    checked = [i for i, x in enumerate(inputs) if x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad")
    if any(inputs[i].dtype != np.float64 for i in checked):
        warnings.warn("gradcheck in float32 is too coarse for central differences; use float64 inputs", stacklevel=2)
    xp = get_array_module(*inputs)
    for i in checked:  # the perturbations below write through a flat view, which needs contiguous data
        inputs[i].data = xp.ascontiguousarray(inputs[i].data)
    # A stream of its own: with default_rng(seed) the upstream gradient would equal any test input drawn
    # from the same seed, and G = x can hide a wrong backward (batch norm's vanishes exactly then).
    rng = np.random.default_rng([seed, 0x6772616463])

    y = fn(*inputs)
    G = xp.asarray(rng.standard_normal(y.shape)).astype(y.dtype)
    for i in checked:
        inputs[i].grad = None
    y.backward(G)

    rows = []
    for i in checked:
        x = inputs[i]
        analytic = x.grad if x.grad is not None else xp.zeros_like(x.data)
        flat = x.data.reshape(-1)  # a view: writing into it perturbs x in place
        if mode == "full":
            numeric = xp.zeros(flat.shape, dtype=x.dtype)
            for k in range(flat.size):
                old = flat[k].copy()
                flat[k] = old + eps
                plus = _loss(fn, inputs, G)
                flat[k] = old - eps
                minus = _loss(fn, inputs, G)
                flat[k] = old
                numeric[k] = (plus - minus) / (2 * eps)
            rows.append(
                _compare(
                    i,
                    x,
                    analytic.reshape(-1),
                    numeric,
                    atol,
                    rtol,
                    lambda k, s=x.shape: tuple(int(v) for v in np.unravel_index(k, s)),
                )
            )
        else:
            v = xp.asarray(rng.standard_normal(x.shape)).astype(x.dtype)
            old = x.data.copy()
            x.data[...] = old + eps * v
            plus = _loss(fn, inputs, G)
            x.data[...] = old - eps * v
            minus = _loss(fn, inputs, G)
            x.data[...] = old
            numeric = ((plus - minus) / (2 * eps)).reshape(1)
            rows.append(
                _compare(i, x, (analytic * v).sum().reshape(1), numeric, atol, rtol, lambda k: "random direction")
            )
    report = GradcheckReport(name or getattr(fn, "__name__", type(fn).__name__), mode, rows, atol, rtol)
    if raise_exception and not report.ok:
        raise GradcheckError(str(report))
    return report
