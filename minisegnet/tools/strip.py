"""Clear a notebook's outputs and execution counts in place, so lessons are committed clean.

    python -m minisegnet.tools.strip lessons/*.ipynb          # rewrite the notebooks
    python -m minisegnet.tools.strip --check lessons/*.ipynb  # exit 1 if any still has outputs

A lesson's outputs are made by running it; stored outputs only bloat the history and go stale.
This works on the notebook's JSON directly (no Jupyter needed) and writes it back the way
nbformat does (indent 1, sorted keys), so a clean notebook is left byte for byte unchanged.
"""

import argparse
import json
import sys
from pathlib import Path

# Cell metadata that running a notebook adds (nbclient's timings, Jupyter's collapse state).
RUN_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")


def strip_notebook(nb):
    """Remove outputs, execution counts and run metadata from a notebook dict, in place.

    Returns the number of cells that changed.
    """
    changed = 0
    for cell in nb.get("cells", []):
        before = json.dumps(cell, sort_keys=True)
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        for key in RUN_METADATA:
            cell.get("metadata", {}).pop(key, None)
        changed += json.dumps(cell, sort_keys=True) != before
    return changed


def dirty_cells(nb):
    """Indices of the code cells that carry outputs or an execution count."""
    return [
        i
        for i, cell in enumerate(nb.get("cells", []))
        if cell.get("cell_type") == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]


def strip_file(path):
    """Strip the notebook at ``path`` in place; the number of cells that changed."""
    path = Path(path)
    nb = json.loads(path.read_text(encoding="utf-8"))
    changed = strip_notebook(nb)
    if changed:
        path.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    return changed


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minisegnet.tools.strip", description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help="the .ipynb files to clean")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook has outputs")
    args = parser.parse_args(argv)
    status = 0
    for path in args.notebooks:
        if path.suffix != ".ipynb" or not path.is_file():
            print(f"{path}: not a notebook file (expected an existing .ipynb)", file=sys.stderr)
            status = 2
            continue
        if args.check:
            dirty = dirty_cells(json.loads(path.read_text(encoding="utf-8")))
            if dirty:
                print(f"{path}: outputs or execution counts in code cells {dirty}")
                status = max(status, 1)
        else:
            changed = strip_file(path)
            print(f"{path}: {'stripped ' + str(changed) + ' cells' if changed else 'already clean'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
