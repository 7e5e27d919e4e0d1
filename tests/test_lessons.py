"""Every lesson notebook runs to the end in a fresh kernel, stores fresh full-run outputs, quotes in its prose only
measurements its outputs show, and is listed in the README.

The notebooks run in quick mode (``MINISEGNET_QUICK=1``: small sizes, few steps) with matplotlib's
Agg backend, from inside ``lessons/`` as a reader would. nbclient and ipykernel come with the
[dev] extra; without them the execution test skips. The quick run never writes the notebook; the stored
outputs come from ``python -m minisegnet.tools.lessons execute`` (full mode) and must not be older than
their cells' sources.
"""

import json
import os
import re
from pathlib import Path

import pytest

from minisegnet.tools import lessons as tool

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"
NOTEBOOKS = sorted(LESSONS.glob("*.ipynb"))
MAX_BYTES = 1_500_000
CELL_TIMEOUT = 120  # seconds per cell; a quick-mode lesson takes well under a minute in all
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def nbformat_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


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
    before = path.read_bytes()
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
    assert path.read_bytes() == before, f"the quick run changed {path.name} on disk"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_lesson_outputs_are_fresh_and_small(path):
    stale = tool.stale_cells(path)
    assert not stale, "\n".join(stale)
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size / 1e6:.1f} MB, over 1.5 MB"
    nb = nbformat_json(path)
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernel must be python3"
    assert nb["metadata"].get("minisegnet", {}).get("mode") == "full", f"{path.name}: not from a full run"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_lesson_prose_quotes_only_measurements_its_outputs_show(path):
    problems = tool.unbacked_numbers(path)
    assert not problems, "\n".join(problems)


def _notebook_with(tmp_path, prose, printed):
    cells = [{"cell_type": "markdown", "metadata": {}, "source": prose}]
    out = {"output_type": "stream", "name": "stdout", "text": printed}
    cells.append({"cell_type": "code", "metadata": {}, "source": "", "outputs": [out], "execution_count": 1})
    path = tmp_path / "prose.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}}), encoding="utf-8")
    return path


def test_a_quoted_measurement_must_be_printed_to_its_written_digits(tmp_path):
    printed = "mIoU 0.7968, loss 2.006, object 14.3% of pixels, |grad| 6.84e-03\n"
    fine = "The U-Net reached mIoU 0.797 (about 0.80), loss 2.006, 14% object, gradients of 6.8e-3."
    assert tool.unbacked_numbers(_notebook_with(tmp_path, fine, printed)) == []
    wrong = {"0.81": "mIoU 0.81.", "2.0061": "A loss of 2.0061 here.", "15%": "15% object.", "0.143": "A 0.143 share."}
    for number, sentence in wrong.items():  # off by more than half a unit of the last digit, or not a percentage
        [problem] = tool.unbacked_numbers(_notebook_with(tmp_path, sentence, printed))
        assert f"prose.ipynb cell 0: {number} is in no stored output" in problem


def test_settings_integers_math_code_and_quoted_figures_are_not_checked(tmp_path):
    prose = (
        "We train 1,000 steps on 64x64 images with `lr=0.005` and smooth 1e-6; a blend of $0.75$ and $0.25$.\n\n"
        "On an H100 it took 0.445 ms (quoted from [the notes](notes.md)). But this run took 3.25 ms."
    )
    (tmp_path / "notes.md").write_text("0.445 ms", encoding="utf-8")
    [problem] = tool.unbacked_numbers(_notebook_with(tmp_path, prose, "nothing printed\n"))
    assert "3.25 is in no stored output" in problem
    (tmp_path / "notes.md").unlink()
    problems = tool.unbacked_numbers(tmp_path / "prose.ipynb")
    assert any("the quoted source notes.md does not exist" in p for p in problems)


def test_check_names_an_unbacked_number(tmp_path, capsys):
    path = _notebook_with(tmp_path, "It reached 0.93.", "0.91\n")
    assert tool.main(["check", str(path)]) == 1
    assert "prose.ipynb cell 0: 0.93 is in no stored output" in capsys.readouterr().out


def test_readme_lists_every_lesson():
    readme = (LESSONS / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in NOTEBOOKS if p.name not in readme]
    assert NOTEBOOKS and not missing, f"lessons/README.md does not list {missing or 'any notebook'}"


def _tiny_notebook(path, cells):
    nbformat = pytest.importorskip("nbformat", reason="nbformat comes with the [dev] extra")
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    nb.cells = [nbformat.v4.new_markdown_cell("# tiny")] + [nbformat.v4.new_code_cell(c) for c in cells]
    path.write_text(nbformat.writes(nb), encoding="utf-8")


@pytest.mark.slow
def test_freshness_check_fails_on_an_edited_cell_and_passes_after_refresh(tmp_path):
    pytest.importorskip("nbclient", reason="nbclient comes with the [dev] extra")
    pytest.importorskip("ipykernel", reason="ipykernel comes with the [dev] extra")
    path = tmp_path / "tiny.ipynb"
    _tiny_notebook(path, ["import os\nprint(os.environ.get('MINISEGNET_QUICK'))", "x = 6 * 7\nx"])
    assert "no outputs from the tool yet" in tool.stale_cells(path)[0]
    assert tool.execute(path) > 0
    assert tool.stale_cells(path) == [] and tool.main(["check", str(path)]) == 0
    nb = nbformat_json(path)
    assert "".join(nb["cells"][1]["outputs"][0]["text"]) == "None\n"  # full mode: MINISEGNET_QUICK unset in the kernel
    assert "".join(nb["cells"][2]["outputs"][0]["data"]["text/plain"]) == "42"
    assert {"cpu", "cores", "os", "python", "numpy"} <= set(nb["metadata"]["minisegnet"]["machine"])
    nb["cells"][2]["source"] = "x = 6 * 9\nx"
    path.write_text(json.dumps(nb), encoding="utf-8")
    [problem] = tool.stale_cells(path)
    assert "tiny.ipynb cell 2 ('x = 6 * 9')" in problem and tool.refresh_command(path) in problem
    assert tool.main(["check", str(path)]) == 1
    tool.execute(path)
    assert tool.stale_cells(path) == []
    assert "".join(nbformat_json(path)["cells"][2]["outputs"][0]["data"]["text/plain"]) == "54"
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.ipynb"]  # the temporary file was renamed away


def test_a_failing_notebook_is_not_written(tmp_path):
    pytest.importorskip("nbclient", reason="nbclient comes with the [dev] extra")
    pytest.importorskip("ipykernel", reason="ipykernel comes with the [dev] extra")
    path = tmp_path / "bad.ipynb"
    _tiny_notebook(path, ["1 / 0"])
    before = path.read_bytes()
    with pytest.raises(Exception, match="ZeroDivisionError"):
        tool.execute(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["bad.ipynb"]


def test_editing_a_cell_makes_it_and_later_cells_stale_not_earlier_ones():
    nb = {"cells": [{"cell_type": "code", "source": s} for s in ("a = 1", "b = 2", "c = 3")]}
    before = tool.cell_hashes(nb)
    nb["cells"][1]["source"] = "b = 3"
    after = tool.cell_hashes(nb)
    assert before[0] == after[0] and before[1] != after[1] and before[2] != after[2]


def test_select_names_lessons_by_their_start():
    assert [p.name for p in tool.select(["01"])] == ["01_task_representation.ipynb"]
    assert tool.select([]) == NOTEBOOKS
    with pytest.raises(SystemExit, match="no lesson matches 'zz'"):
        tool.select(["zz"])
