"""How big is minisegnet? The core story in reading order, then every module, against the budget in setup.cfg.

    python -m minisegnet.tools.size              # the report, and exit 1 when over budget
    python -m minisegnet.tools.size --markdown   # the core story as the README's table

Only code lines count: blank lines, comment lines and docstrings do not. The budget exists to
keep the package readable in an afternoon, and an explanation never makes code harder to read,
so it must never be squeezed out to fit. A line that holds code and a trailing comment counts
once, as code; a multi-line string that is not a docstring (a CUDA kernel's source, say)
counts every line it spans.

The limits live in setup.cfg under ``[minisegnet:size]``; the test suite fails when a module or
the package goes over them.
"""

import ast
import configparser
import io
import sys
import tokenize
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
SETUP_CFG = PACKAGE.parent / "setup.cfg"
DEFAULTS = {"max_module_lines": 300, "max_package_lines": 6000, "max_core_lines": 2500}

# The core story: the files that make a U-Net train, in the order to read them, each with its lesson.
CORE = (
    ("minisegnet/tensor.py", "2"),
    ("minisegnet/ops/elementwise.py", "2"),
    ("minisegnet/ops/array.py", "6"),
    ("minisegnet/ops/im2col.py", "3"),
    ("minisegnet/ops/conv.py", "3, 4"),
    ("minisegnet/ops/pool.py", "4"),
    ("minisegnet/ops/upsample.py", "4"),
    ("minisegnet/ops/norm.py", "5, 6"),
    ("minisegnet/ops/activation.py", "7"),
    ("minisegnet/ops/loss.py", "7"),
    ("minisegnet/ops/dice.py", "8"),
    ("minisegnet/module.py", "5"),
    ("minisegnet/layers.py", "5"),
    ("minisegnet/blocks.py", "6"),
    ("minisegnet/models.py", "5, 6"),
    ("minisegnet/optim.py", "5"),
    ("minisegnet/train.py", "5, 6"),
)

# Tokens that carry no code: layout, comments and the file's start and end.
NOT_CODE = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENCODING,
    tokenize.ENDMARKER,
}


def docstring_lines(tree):
    """The line numbers (1-based) spanned by the docstrings of a module and its classes and functions."""
    lines = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if not node.body:
            continue
        first = node.body[0]
        if not isinstance(first, ast.Expr):
            continue
        if not isinstance(first.value, ast.Constant) or not isinstance(first.value.value, str):
            continue
        lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def code_lines(source):
    """How many lines of ``source`` hold code: not blank, not only a comment, not part of a docstring."""
    lines = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in NOT_CODE:
            continue
        lines.update(range(token.start[0], token.end[0] + 1))
    return len(lines - docstring_lines(ast.parse(source)))


def module_sizes(package=PACKAGE):
    """{relative path: code lines} for every .py file of the package, largest first."""
    sizes = {
        str(p.relative_to(package.parent)): code_lines(p.read_text(encoding="utf-8"))
        for p in sorted(package.rglob("*.py"))
    }
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))


def budget(setup_cfg=SETUP_CFG):
    """The size limits from setup.cfg's [minisegnet:size] section (defaults when it is absent)."""
    cfg = configparser.ConfigParser()
    cfg.read(setup_cfg)
    section = cfg["minisegnet:size"] if cfg.has_section("minisegnet:size") else {}
    return {key: int(section.get(key, value)) for key, value in DEFAULTS.items()}


def core_total(sizes):
    """The code lines of the core story's files (``CORE``)."""
    return sum(sizes.get(path, 0) for path, _ in CORE)


def over_budget(sizes, limits):
    """Human-readable lines naming each module or total that exceeds its limit (empty when all is well)."""
    problems = [
        f"{path}: {n} code lines > {limits['max_module_lines']}"
        for path, n in sizes.items()
        if n > limits["max_module_lines"]
    ]
    total = sum(sizes.values())
    if total > limits["max_package_lines"]:
        problems.append(f"package total {total} code lines > {limits['max_package_lines']}")
    if set(sizes) >= {path for path, _ in CORE} and core_total(sizes) > limits["max_core_lines"]:
        problems.append(f"core story {core_total(sizes)} code lines > {limits['max_core_lines']}")
    return problems


def report(sizes, limits):
    """The core story in reading order (code lines, lesson), then every module, then the totals and the budget."""
    width = max(map(len, sizes), default=10)
    lines = ["the core story, in reading order:"]
    lines += [f"  {path:<{width}}  {sizes.get(path, 0):5d}   lesson {lesson}" for path, lesson in CORE]
    lines.append(f"  {'core story (' + str(len(CORE)) + ' files)':<{width}}  {core_total(sizes):5d} code lines")
    lines.append("every module:")
    lines += [f"  {path:<{width}}  {n:5d}" for path, n in sizes.items()]
    lines.append(
        f"  {'total (' + str(len(sizes)) + ' modules)':<{width}}  {sum(sizes.values()):5d} code lines"
        f"   budget: {limits['max_module_lines']} per module, {limits['max_core_lines']} for the core story,"
        f" {limits['max_package_lines']} in all"
    )
    return "\n".join(lines)


def markdown(sizes):
    """The core story as a Markdown table (file, what it holds, code lines, lesson): the README's "Read the code"."""
    rows = ["| # | file | code lines | lesson |", "|---|---|---|---|"]
    for i, (path, lesson) in enumerate(CORE, 1):
        name = path.removeprefix("minisegnet/")
        rows.append(f"| {i} | [{name}]({path}) | {sizes.get(path, 0)} | {lesson} |")
    rows.append(f"| | **the core story** | **{core_total(sizes):,}** | |")
    return "\n".join(rows)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    sizes = module_sizes()
    if argv == ["--markdown"]:
        print(markdown(sizes))
        return 0
    limits = budget()
    print(report(sizes, limits))
    problems = over_budget(sizes, limits)
    for problem in problems:
        print("over budget:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
