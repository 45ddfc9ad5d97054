"""The code challenges: every exercise's checker passes on the solution and fails on the learner's stub.
(That the learner notebooks run top to bottom with every stub unsolved is tested in tests/test_learner_notebooks.py.)"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("*_solution.ipynb"))
spec = importlib.util.spec_from_file_location("make_learner_notebooks", ROOT / "scripts" / "make_learner_notebooks.py")
mln = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mln)


def exercise_cells(solution: Path) -> list[tuple[str, str, str]]:
    """(checker name, solution source, learner source) for every cell with a solution block."""
    nb = nbformat.read(solution, as_version=4)
    out = []
    for cell in nb.cells:
        if cell.cell_type == "code" and "# BEGIN SOLUTION" in cell.source:
            checker = re.search(r"assert (check_\w+)\(", cell.source)
            assert checker, f"an exercise cell without `assert check_...(...)`:\n{cell.source[:300]}"
            out.append((checker.group(1), cell.source, mln.strip_solutions(cell.source)[0]))
    return out


CASES = [pytest.param(sol, checker, s, l, id=f"{sol.name[:2]}-{checker}")
         for sol in SOLUTIONS for checker, s, l in exercise_cells(sol)]


def run_cell(source: str, tmp_path: Path) -> tuple[BaseException | None, str]:
    out = io.StringIO()
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        with contextlib.redirect_stdout(out):
            exec(compile(source, "<exercise>", "exec"), {"__name__": "__exercise__"})
    except BaseException as e:  # noqa: BLE001
        return e, out.getvalue()
    finally:
        os.chdir(cwd)
    return None, out.getvalue()


@pytest.mark.parametrize("solution,checker,solution_src,learner_src", CASES)
def test_checker_passes_on_the_solution_and_fails_on_the_stub(solution, checker, solution_src, learner_src, tmp_path):
    error, printed = run_cell(solution_src, tmp_path)
    assert error is None, f"{checker} failed on the solution: {error!r}\n{printed}"
    assert "✅" in printed
    error, printed = run_cell(learner_src, tmp_path)
    assert isinstance(error, AssertionError), f"{checker} did not fail on the stub: {error!r}\n{printed}"
    hint = re.search(r'raise NotImplementedError\("(.*)"\)', learner_src).group(1)
    assert "not implemented yet" in printed and hint.replace('\\"', '"')[:40] in printed


def test_every_challenge_has_at_least_six_exercises():
    assert SOLUTIONS, "no solution notebook found"
    for sol in SOLUTIONS:
        assert len(exercise_cells(sol)) >= 6, sol.name
