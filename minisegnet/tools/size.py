"""How big is minisegnet? Lines per module and the package total, against the budget in setup.cfg.

    python -m minisegnet.tools.size

A module counts every line of its file (docstrings and comments are part of what a learner
reads). The limits live in setup.cfg under ``[minisegnet:size]``; the test suite fails when a
module or the package goes over them.
"""

import configparser
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
SETUP_CFG = PACKAGE.parent / "setup.cfg"
DEFAULTS = {"max_module_lines": 400, "max_package_lines": 8000}


def module_sizes(package=PACKAGE):
    """{relative path: line count} for every .py file of the package, largest first."""
    sizes = {
        str(p.relative_to(package.parent)): len(p.read_text(encoding="utf-8").splitlines())
        for p in sorted(package.rglob("*.py"))
    }
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))


def budget(setup_cfg=SETUP_CFG):
    """The size limits from setup.cfg's [minisegnet:size] section (defaults when it is absent)."""
    cfg = configparser.ConfigParser()
    cfg.read(setup_cfg)
    section = cfg["minisegnet:size"] if cfg.has_section("minisegnet:size") else {}
    return {key: int(section.get(key, value)) for key, value in DEFAULTS.items()}


def over_budget(sizes, limits):
    """Human-readable lines naming each module or total that exceeds its limit (empty when all is well)."""
    problems = [
        f"{path}: {n} lines > {limits['max_module_lines']}"
        for path, n in sizes.items()
        if n > limits["max_module_lines"]
    ]
    total = sum(sizes.values())
    if total > limits["max_package_lines"]:
        problems.append(f"package total {total} lines > {limits['max_package_lines']}")
    return problems


def report(sizes, limits):
    width = max(map(len, sizes), default=10)
    lines = [f"{path:<{width}}  {n:5d}" for path, n in sizes.items()]
    lines.append(
        f"{'total (' + str(len(sizes)) + ' modules)':<{width}}  {sum(sizes.values()):5d}"
        f"   budget: {limits['max_module_lines']} per module, {limits['max_package_lines']} in all"
    )
    return "\n".join(lines)


def main():
    sizes, limits = module_sizes(), budget()
    print(report(sizes, limits))
    problems = over_budget(sizes, limits)
    for p in problems:
        print("over budget:", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
