"""Every public op says what shapes its arrays have, so a learner never has to guess."""

import inspect
import re

import minisegnet.ops as F

# A shape such as (N, C, H, W), (C,), (N, C, H, W) or a phrase for shape-agnostic ops.
SHAPE = re.compile(
    r"\((?:[A-Z][A-Za-z0-9_]*|\d+)(?:, ?(?:[A-Z][A-Za-z0-9_]*|\d+|\.\.\.))*,?\)|(?i:any shape)|broadcast"
)


def public_ops():
    return [(name, fn) for name, fn in vars(F).items() if inspect.isfunction(fn) and not name.startswith("_")]


def test_there_are_public_ops():
    assert len(public_ops()) >= 25


def test_every_public_op_has_a_docstring_that_states_shapes():
    missing = [name for name, fn in public_ops() if not SHAPE.search(inspect.getdoc(fn) or "")]
    assert not missing, f"these ops' docstrings give no array shapes: {missing}"
