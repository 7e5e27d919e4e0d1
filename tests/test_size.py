"""minisegnet/tools/size.py: the package stays within the code-line budget written in setup.cfg."""

from pathlib import Path

from minisegnet.tools import size

SAMPLE = '''"""A module docstring
over two lines."""

# a comment line
import numpy as np  # a trailing comment: the line counts once, as code


def f(x):
    """A function docstring."""

    kernel = """
    two lines of a string that is data, not documentation
    """
    return np.asarray(x), kernel


class A:
    """A class docstring
    on two lines."""

    def g(self):
        return 1
'''


def test_every_module_and_the_package_fit_the_budget():
    sizes, limits = size.module_sizes(), size.budget()
    assert "minisegnet/tensor.py" in sizes and limits["max_module_lines"] == 300
    assert size.over_budget(sizes, limits) == [], size.report(sizes, limits)


def test_code_lines_skip_blank_lines_comments_and_docstrings():
    # import, def f, the 3-line string, return, class A, def g, return 1
    assert size.code_lines(SAMPLE) == 9


def test_a_string_that_is_not_first_in_its_body_counts_as_code():
    assert size.code_lines('x = 1\n"""not a docstring"""\n') == 2
    assert size.code_lines("") == 0


def test_over_budget_names_the_module_and_the_total():
    limits = {"max_module_lines": 400, "max_package_lines": 100, "max_core_lines": 10}
    problems = size.over_budget({"a.py": 500, "b.py": 10}, limits)
    assert problems == ["a.py: 500 code lines > 400", "package total 510 code lines > 100"]


def test_report_lists_modules_and_total(capsys):
    assert size.main([]) == 0
    out = capsys.readouterr().out
    assert "minisegnet/backend.py" in out and "total (" in out and "code lines" in out
    assert out.index("the core story") < out.index("minisegnet/tensor.py") < out.index("minisegnet/ops/conv.py")


def test_the_core_story_is_counted_apart_and_every_file_of_it_exists():
    sizes = size.module_sizes()
    assert all(path in sizes for path, _ in size.CORE)
    assert size.core_total(sizes) == sum(sizes[path] for path, _ in size.CORE) < sum(sizes.values())
    problems = size.over_budget(sizes, {"max_module_lines": 10**6, "max_package_lines": 10**6, "max_core_lines": 10})
    assert problems == [f"core story {size.core_total(sizes)} code lines > 10"]


def test_the_readme_reading_order_is_the_measured_one():
    readme = (Path(size.PACKAGE).parent / "README.md").read_text(encoding="utf-8")
    table = size.markdown(size.module_sizes())
    assert table in readme, "README's reading order is stale: paste `python -m minisegnet.tools.size --markdown`"
