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


def test_learner_version_clears_outputs_and_tags_nothing():
    nb = new_notebook(cells=[new_markdown_cell("# Challenge"), new_code_cell(SOLUTION), new_code_cell("print(1)")])
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="2\n")]
    nb.cells[1].execution_count = 3
    nb.metadata["widgets"] = {"state": {}}
    learner = mln.learner_version(nb)
    assert "BEGIN SOLUTION" not in learner.cells[1].source and learner.cells[1].outputs == []
    assert learner.cells[1].execution_count is None and "widgets" not in learner.metadata
    # no raises-exception tag: Colab ignores it, so a learner notebook must run without an error instead
    assert all("tags" not in c.metadata for c in learner.cells)
    assert nb.cells[1].outputs, "the solution notebook itself is left untouched"
    with pytest.raises(mln.MarkerError, match="no solution block"):
        mln.learner_version(new_notebook(cells=[new_code_cell("x = 1")]))


def test_checker_asserts_become_plain_calls_in_the_learner_notebook():
    """`assert check_x(fn)` stops "Run all" at the first unsolved exercise; the learner gets `check_x(fn);`, which
    prints its verdict. Other asserts stay, and the solution notebook keeps its assert (the tests prove it passes)."""
    src = ("def f():\n    # BEGIN SOLUTION hint: one\n    return 1\n    # END SOLUTION\n\n"
           "assert check_f(f)\n"
           "if True:\n    assert check_f(f, measured={'a': 1})\n"
           "assert f() == 1\n"
           "assert check_g(f,\n               2)")
    out, n = mln.soften_checker_asserts(src)
    assert n == 3
    assert "\ncheck_f(f);\n" in out and "\n    check_f(f, measured={'a': 1});\n" in out
    assert "assert f() == 1" in out and "\ncheck_g(f,\n               2)" in out and "assert check_" not in out
    compile(out, "<learner>", "exec")
    nb = new_notebook(cells=[new_code_cell(src), new_code_cell("assert check_f(f)\nprint(2)")])
    learner = mln.learner_version(nb)
    assert all("assert check_" not in c.source for c in learner.cells)
    assert "assert check_f(f)" in nb.cells[1].source


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


@pytest.mark.parametrize("solution", sorted((ROOT / "notebooks" / "solutions").glob("*_solution.ipynb")),
                         ids=lambda p: p.name)
def test_committed_learner_notebooks_have_no_checker_assert_and_no_tolerated_error(solution):
    learner = nbformat.read(mln.learner_path(solution), as_version=4)
    for i, cell in enumerate(learner.cells):
        assert "raises-exception" not in cell.metadata.get("tags", []), f"cell {i}: an error must not be tolerated"
        if cell.cell_type == "code":
            assert not mln.CHECKER_ASSERT.search(cell.source), f"cell {i}: a checker assert stops Run all"


def _stub_names(nb: nbformat.NotebookNode) -> list[str]:
    """The functions whose body is a stub in the learner notebook."""
    import re
    names = []
    for cell in nb.cells:
        if cell.cell_type == "code" and "raise NotImplementedError(" in cell.source:
            names += re.findall(r"^def (\w+)\(", cell.source, flags=re.M)
    return names


@pytest.mark.parametrize("solution", sorted((ROOT / "notebooks" / "solutions").glob("*_solution.ipynb")),
                         ids=lambda p: p.name)
def test_learner_notebook_runs_all_with_every_stub_unsolved(solution, monkeypatch):
    """What a learner gets from Colab's "Run all" before solving anything: every cell runs (fast mode here), each
    checker says "not attempted yet", and every exercise that a later cell uses falls back to the course's reference
    and says so. No cell may raise — there is no raises-exception tag to hide behind."""
    from nbclient import NotebookClient
    monkeypatch.setenv("COURSE_FAST", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    learner = nbformat.read(mln.learner_path(solution), as_version=4)
    NotebookClient(learner, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()   # raises on any error
    out = "\n".join(o.get("text", "") for c in learner.cells if c.cell_type == "code" for o in c.outputs
                    if o.output_type == "stream")
    stubs = _stub_names(learner)
    assert len(stubs) >= 7
    assert out.count("⏳ Not attempted yet") >= len(stubs), "every checker must say 'not attempted yet'"
    later = [n for n in stubs if f"⏳ `{n}` is not written yet" in out]
    predictions = {"predict_memory", "predict_failures"}                  # compared with a measurement, not replaced
    assert sorted(later) == sorted(set(stubs) - predictions), \
        f"exercises no later cell uses (through yours_or_reference): {sorted(set(stubs) - predictions - set(later))}"
