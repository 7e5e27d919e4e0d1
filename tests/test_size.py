"""minisegnet/tools/size.py: the package stays within the size budget written in setup.cfg."""

from minisegnet.tools import size


def test_every_module_and_the_package_fit_the_budget():
    sizes, limits = size.module_sizes(), size.budget()
    assert "minisegnet/tensor.py" in sizes and limits["max_module_lines"] == 400
    assert size.over_budget(sizes, limits) == [], size.report(sizes, limits)


def test_over_budget_names_the_module_and_the_total():
    problems = size.over_budget({"a.py": 500, "b.py": 10}, {"max_module_lines": 400, "max_package_lines": 100})
    assert problems == ["a.py: 500 lines > 400", "package total 510 lines > 100"]


def test_report_lists_modules_and_total(capsys):
    assert size.main() == 0
    out = capsys.readouterr().out
    assert "minisegnet/backend.py" in out and "total (" in out
