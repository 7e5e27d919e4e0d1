"""minisegnet/__init__.py and the package's layering: the top-level names, imports in isolation, no import cycle."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np

import minisegnet as msn

PACKAGE = Path(msn.__file__).resolve().parent
ROOT = PACKAGE.parent

# The one cycle kept on purpose: Tensor's operators are the ops (x + y is ops.add), and every op is a
# Function of tensor.py, so tensor.py imports ops at its bottom, once Tensor and Function exist.
DEFERRED = {("minisegnet.tensor", "minisegnet.ops")}


def module_names():
    """Every module of the package by its dotted name (a package by its own name, not __init__)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def _is_module(dotted):
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(name):
    """The package's modules that ``name`` imports anywhere: at its top, in if/try blocks and inside functions
    (an import inside a function closes a cycle as surely as one at the top, only later)."""
    path = ROOT.joinpath(*name.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names if a.name.startswith("minisegnet"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if not base.startswith("minisegnet"):
                continue
            for alias in node.names:
                target = f"{base}.{alias.name}"
                targets.add(target if _is_module(target) else base)
    # Importing a.b.c runs a.b's __init__ first: an edge to each enclosing package but the importer's own.
    for target in list(targets):
        parts = target.split(".")
        for k in range(2, len(parts)):
            parent = ".".join(parts[:k])
            if not (name == parent or name.startswith(parent + ".")):
                targets.add(parent)
    targets.discard(name)
    return targets


def find_cycle(graph):
    """One import cycle of ``graph`` ({module: set of modules}) as a list of names, or None."""
    state = {}
    for start in graph:
        if start in state:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = "open"
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = "done"
            elif state.get(child) == "open":
                return path[path.index(child) :] + [child]
            elif child not in state and child in graph:
                state[child] = "open"
                path.append(child)
                stack.append((child, iter(sorted(graph[child]))))
    return None


def test_no_import_cycle_among_the_modules():
    graph = {name: imports_of(name) for name in module_names()}
    for source, target in DEFERRED:
        assert target in graph[source], f"{source} no longer imports {target}: drop it from DEFERRED"
        graph[source].discard(target)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_import_graph_sees_the_ways_of_importing():
    assert {"minisegnet.ops", "minisegnet.backend"} <= imports_of("minisegnet.tensor")
    assert "minisegnet.module" in imports_of("minisegnet.layers")
    assert {"minisegnet.data", "minisegnet.data.folder"} <= imports_of("minisegnet.predict")
    assert "minisegnet.plots" in imports_of("minisegnet.train")  # imported inside a function
    assert "minisegnet.train" in imports_of("minisegnet.cli")  # inside a function, below an if


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    # One interpreter; before each module every minisegnet module is forgotten, so each is imported first.
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {module_names()!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'minisegnet' or m.startswith('minisegnet.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as e:\n"
        "        failed.append(f'{name}: {type(e).__name__}: {e}')\n"
        "print('\\n'.join(failed))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_import_minisegnet_leaves_data_and_metrics_for_first_use():
    code = (
        "import sys, minisegnet as msn\n"
        "print(sorted(m for m in ('minisegnet.data', 'minisegnet.metrics') if m in sys.modules))\n"
        "print(msn.data.shapes.__name__, msn.metrics.iou.__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.split("\n")[:2] == ["[]", "shapes iou"], result.stdout + result.stderr


def test_subpackages_are_reached_from_the_top_level():
    for name in ("data", "metrics", "ops", "nn", "models", "optim"):
        assert getattr(msn, name).__name__ == f"minisegnet.{name}"
    assert msn.nn.Conv2d is msn.layers.Conv2d and msn.nn.Module is msn.module.Module
    assert msn.models.UNet and msn.optim.Adam and msn.ops.conv2d and msn.data.DataLoader


def test_an_unknown_top_level_name_is_an_attribute_error():
    try:
        msn.no_such_thing  # noqa: B018
    except AttributeError as e:
        assert "no_such_thing" in str(e)
    else:
        raise AssertionError("msn.no_such_thing did not raise")


def test_gradcheck_is_callable_from_the_top_level_and_from_its_package():
    from minisegnet.gradcheck import GradcheckError, gradcheck
    from minisegnet.gradcheck.cases import run_checks

    x = msn.tensor(np.linspace(-1, 1, 4), requires_grad=True)
    assert msn.gradcheck is gradcheck and msn.gradcheck(msn.ops.tanh, x).ok
    assert callable(msn.gradcheck)  # still the function after the package's submodules were imported
    assert issubclass(GradcheckError, AssertionError) and run_checks(names=["tanh"])[0].ok
