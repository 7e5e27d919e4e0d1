"""gradcheck/cases.py: the table of gradient-check cases behind `minisegnet gradcheck` and the op tests."""

import inspect
import math

import pytest

import minisegnet.ops as F
from minisegnet.gradcheck import cases as checks
from minisegnet.ops.dice import SoftDiceLoss
from minisegnet.ops.dice_family import DiceFamilyLoss


def test_every_case_passes(device):
    rows = checks.run_checks(device)
    assert len(rows) == len(checks.CASES) and len({r.name for r in rows}) == len(rows)
    failed = [(r.name, r.max_rel_err, r.error) for r in rows if not (r.ok and r.max_rel_err <= 1e-6)]
    assert not failed, checks.format_table(rows)


def test_every_public_op_has_a_case():
    public = {name for name, fn in vars(F).items() if inspect.isfunction(fn) and not name.startswith("_")}
    missing = public - checks.ops_covered() - set(checks.NOT_CHECKED)
    assert not missing, f"add cases to minisegnet/gradcheck/cases.py for: {sorted(missing)}"
    assert {"cross_entropy", "binary_cross_entropy_with_logits", "soft_dice_loss", "dice_ce_loss"} <= set(
        checks.ops_covered()
    )


def test_names_select_cases_by_op_or_full_name():
    rows = checks.run_checks(names=["soft_dice_loss", "relu"])
    assert {r.name.split()[0] for r in rows} == {"soft_dice_loss", "relu"} and len(rows) >= 9
    assert [r.name for r in checks.run_checks(names="cross_entropy sum")] == ["cross_entropy sum"]
    with pytest.raises(ValueError, match="'softmax2'"):
        checks.run_checks(names=["softmax2"])


def test_a_wrong_backward_and_a_crash_are_failed_rows(monkeypatch):
    def wrong(x):  # y = x * x whose backward sees only one factor: x instead of 2x
        return F.mul(x, x.detach())

    def crash(x):
        raise RuntimeError("op is broken\nsecond line")

    make = checks.inputs(checks.normal(3, 4))
    monkeypatch.setattr(checks, "CASES", [checks.Case("wrong", wrong, make), checks.Case("crash", crash, make)])
    rows = checks.run_checks()
    assert [r.ok for r in rows] == [False, False]
    assert (
        rows[0].max_rel_err > 0.1 and math.isnan(rows[1].max_rel_err) and rows[1].error == "RuntimeError: op is broken"
    )
    table = checks.format_table(rows)
    assert "FAILED" in table and "op is broken" in table and "2 cases, 2 failed" in table


def test_format_table_is_aligned():
    rows = [checks.Row("a", 1e-10, 2e-9, True), checks.Row("a longer name", 3e-9, 4e-10, True)]
    lines = checks.format_table(rows).splitlines()
    assert lines[0].startswith("case") and len({len(line) for line in lines[2:4]}) == 1
    assert lines[-1] == "2 cases, 0 failed, worst relative error among passing cases 2.00e-09"


def test_the_soft_dice_cases_check_the_lessons_function_and_the_family():
    # soft_dice_loss runs dice.py's SoftDiceLoss without switches and dice_family.py's DiceFamilyLoss with any.
    ran = {}
    for c in checks.CASES:
        if c.name.split()[0] == "soft_dice_loss":
            ran.setdefault(type(c.fn(*c.make_inputs("cpu")).creator), []).append(c.name)
    assert set(ran) == {SoftDiceLoss, DiceFamilyLoss}, ran
    assert {"soft_dice_loss default", "soft_dice_loss squared=False"} <= set(ran[SoftDiceLoss])
    assert len(ran[DiceFamilyLoss]) >= 20
