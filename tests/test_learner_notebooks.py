"""The code challenges' learner notebooks are made mechanically from the solution notebooks."""
import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("make_learner_notebooks", ROOT / "scripts" / "make_learner_notebooks.py")
mln = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mln)

SOLUTION = '''import torch

def masked_mean(x, mask):
    # BEGIN SOLUTION hint: sum the kept values, then divide by how many there are
    kept = x[mask]
    return kept.sum() / kept.numel()
    # END SOLUTION

value = 1
# BEGIN SOLUTION
value = 2
# END SOLUTION
print(value)'''


def test_blocks_become_stubs_at_their_indentation():
    out, n = mln.strip_solutions(SOLUTION)
    assert n == 2
    assert out == '''import torch

def masked_mean(x, mask):
    # TODO: sum the kept values, then divide by how many there are
    raise NotImplementedError("sum the kept values, then divide by how many there are")

value = 1
# TODO: write this part
raise NotImplementedError("write this part")
print(value)'''
    compile(out, "<learner>", "exec")                      # the stub is valid Python


@pytest.mark.parametrize("bad,match", [
    ("# BEGIN SOLUTION\nx = 1", "without END"),
    ("x = 1\n# END SOLUTION", "END SOLUTION without BEGIN"),
    ("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION", "inside another"),
])
def test_marker_errors(bad, match):
    with pytest.raises(mln.MarkerError, match=match):
        mln.strip_solutions(bad)


def test_learner_version_clears_outputs_and_tags_stub_cells():
    nb = new_notebook(cells=[new_markdown_cell("# Challenge"), new_code_cell(SOLUTION), new_code_cell("print(1)")])
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="2\n")]
    nb.cells[1].execution_count = 3
    nb.metadata["widgets"] = {"state": {}}
    learner = mln.learner_version(nb)
    assert "BEGIN SOLUTION" not in learner.cells[1].source and learner.cells[1].outputs == []
    assert learner.cells[1].execution_count is None and "widgets" not in learner.metadata
    assert learner.cells[1].metadata["tags"] == ["raises-exception"] and "tags" not in learner.cells[2].metadata
    assert nb.cells[1].outputs, "the solution notebook itself is left untouched"
    with pytest.raises(mln.MarkerError, match="no solution block"):
        mln.learner_version(new_notebook(cells=[new_code_cell("x = 1")]))


@pytest.mark.parametrize("solution", sorted((ROOT / "notebooks" / "solutions").glob("*_solution.ipynb")),
                         ids=lambda p: p.name)
def test_committed_learner_notebooks_are_up_to_date(solution):
    expected = nbformat.writes(mln.learner_version(nbformat.read(solution, as_version=4), solution.name)) + "\n"
    target = mln.learner_path(solution)
    assert target.exists() and target.read_text(encoding="utf-8") == expected, \
        f"{target.name} is out of date: run python scripts/make_learner_notebooks.py"


def test_learner_notebooks_show_no_solution_line():
    """Hints nudge; they never give the code: no line of a solution block (≥ 20 characters, whitespace-normalised)
    may appear anywhere in a learner notebook — stub, hint cell or any other cell."""
    sols = sorted((ROOT / "notebooks" / "solutions").glob("*_solution.ipynb"))
    assert sols
    for sol in sols:
        solution = nbformat.read(sol, as_version=4)
        assert len(mln.solution_lines(solution)) >= 10
        learner = nbformat.read(mln.learner_path(sol), as_version=4)
        assert mln.leaked_lines(solution, learner) == [], sol.name


def test_a_hint_that_gives_the_code_is_caught():
    code = ("def f(x):\n    # BEGIN SOLUTION hint: total = x.sum() * 2 + x.numel() - 1\n"
            "    total = x.sum() * 2 + x.numel() - 1\n    return total\n    # END SOLUTION\n")
    solution = new_notebook(cells=[new_code_cell(code)])
    assert mln.leaked_lines(solution, mln.learner_version(solution)) == ["total = x.sum() * 2 + x.numel() - 1"]
    fixed = new_notebook(cells=[new_code_cell(code.replace("hint: total = x.sum() * 2 + x.numel() - 1",
                                                           "hint: twice the sum, plus the count less one"))])
    assert mln.leaked_lines(fixed, mln.learner_version(fixed)) == []
    leaky_cell = new_notebook(cells=[fixed.cells[0], new_markdown_cell("try `total = x.sum()  * 2 + x.numel() - 1`")])
    assert mln.leaked_lines(leaky_cell, mln.learner_version(leaky_cell)) == ["total = x.sum() * 2 + x.numel() - 1"]
