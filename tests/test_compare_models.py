"""benchmarks/compare_models.py in quick mode, so the README's model table cannot rot."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import compare_models  # noqa: E402


def test_quick_run_gives_a_well_formed_row_and_table():
    rows = compare_models.run(quick=True)
    assert len(rows) == 1
    row = rows[0]
    assert row["data"] == "shapes" and 0 <= row["miou"] <= 1 and row["parameters"] > 0
    table = compare_models.to_markdown(rows)
    assert table.count("\n") == 2 and "U-Net, CE+Dice" in table
