"""Every lesson notebook runs to the end in a fresh kernel, is committed clean, and is listed in the README.

The notebooks run in quick mode (``MINISEGNET_QUICK=1``: small sizes, few steps) with matplotlib's
Agg backend, from inside ``lessons/`` as a reader would. nbclient and ipykernel come with the
[dev] extra; without them the execution test skips.
"""

import json
import os
import re
from pathlib import Path

import pytest

from minisegnet.tools import strip

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"
NOTEBOOKS = sorted(LESSONS.glob("*.ipynb"))
CELL_TIMEOUT = 120  # seconds per cell; a quick-mode lesson takes well under a minute in all
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _ids(paths):
    return [p.stem for p in paths]


def _failure(path, nb, err):
    """A short message: the notebook, the failing cell's index and first lines, and the error."""
    bad = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and any(o.get("output_type") == "error" for o in cell.get("outputs", []))
    ]
    where = "unknown cell"
    if bad:
        source = nb.cells[bad[0]].source.strip().splitlines()
        head = "\n    ".join(source[:3]) + ("\n    ..." if len(source) > 3 else "")
        where = f"cell {bad[0]}:\n    {head}"
    ename, evalue = getattr(err, "ename", type(err).__name__), getattr(err, "evalue", str(err))
    # IPython marks the failing line of each traceback frame with an arrow; keep the last one.
    arrows = [line.strip() for line in ANSI.sub("", str(err)).splitlines() if line.lstrip().startswith("---->")]
    line = f"\n  {arrows[-1]}" if arrows else ""
    return f"{path.name} failed at {where}{line}\n{ename}: {ANSI.sub('', str(evalue)).strip()}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_lesson_runs_in_quick_mode(path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="nbformat comes with the [dev] extra")
    nbclient = pytest.importorskip("nbclient", reason="nbclient comes with the [dev] extra")
    pytest.importorskip("ipykernel", reason="ipykernel comes with the [dev] extra")
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    # The kernel inherits this process's environment: quick sizes, no windows, this checkout's package.
    monkeypatch.setenv("MINISEGNET_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(LESSONS)}}
    )
    failure = None
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
        failure = _failure(path, nb, err)
    if failure:  # failing outside the except block keeps nbclient's coloured traceback out of the report
        pytest.fail(failure, pytrace=False)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_lesson_is_committed_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    dirty = strip.dirty_cells(nb)
    assert not dirty, f"{path.name} has outputs in code cells {dirty}: run `python -m minisegnet.tools.strip {path}`"
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernel must be python3"


def test_readme_lists_every_lesson():
    readme = (LESSONS / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in NOTEBOOKS if p.name not in readme]
    assert NOTEBOOKS and not missing, f"lessons/README.md does not list {missing or 'any notebook'}"


def test_strip_clears_outputs_counts_and_timings(tmp_path):
    cell = {"cell_type": "code", "execution_count": 3, "metadata": {"execution": {"t": 1}, "tags": ["x"]}}
    cell.update(source="1 + 1", outputs=[{"output_type": "execute_result", "data": {"text/plain": "2"}}])
    nb = {"cells": [cell, {"cell_type": "markdown", "metadata": {}, "source": "# hi"}], "metadata": {}}
    nb.update(nbformat=4, nbformat_minor=5)
    path = tmp_path / "a.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    assert strip.dirty_cells(nb) == [0] and strip.main(["--check", str(path)]) == 1
    assert strip.main([str(path)]) == 0
    clean = json.loads(path.read_text(encoding="utf-8"))
    assert clean["cells"][0]["outputs"] == [] and clean["cells"][0]["execution_count"] is None
    assert clean["cells"][0]["metadata"] == {"tags": ["x"]} and clean["cells"][1]["source"] == "# hi"
    text = path.read_text(encoding="utf-8")
    assert strip.strip_file(path) == 0 and path.read_text(encoding="utf-8") == text  # a clean file is left alone
    assert strip.main(["--check", str(path)]) == 0
    assert strip.main([str(tmp_path / "missing.ipynb")]) == 2
