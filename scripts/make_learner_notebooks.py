"""Make the learner notebooks of the code challenges from their solution notebooks.

    python scripts/make_learner_notebooks.py            write notebooks/NN_*.ipynb from notebooks/solutions/
    python scripts/make_learner_notebooks.py --check    exit 1 if a committed learner notebook is out of date

In a solution notebook, each solution block in a code cell is fenced like this::

    # BEGIN SOLUTION hint: sum the per-token losses, then divide by the token count
    loss = token_losses.sum() / n_tokens
    # END SOLUTION

In the learner notebook the block becomes a stub at the same indentation::

    # TODO: sum the per-token losses, then divide by the token count
    raise NotImplementedError("sum the per-token losses, then divide by the token count")

A checker call that the solution notebook asserts (``assert check_x(fn)``: the tests prove the reference passes)
becomes a plain call in the learner notebook (``check_x(fn);``): it prints its verdict — ⏳ not attempted, ❌ what is
wrong, ✅ — and never stops "Run all" (Colab ignores nbval's ``raises-exception`` tag, so the learner notebook must run
from top to bottom with every stub unsolved; the cells after an exercise fall back to the course's reference through
``utils.checks.yours_or_reference`` and say so). Everything else is copied unchanged (outputs are never committed).
``NN_name_solution.ipynb`` becomes ``notebooks/NN_name.ipynb``.

The hint is a nudge that names the idea, never the code: :func:`leaked_lines` lists every line of a solution
block (at least 20 characters, whitespace-normalised) that appears anywhere in the learner notebook — in a stub,
a hint cell or any other cell — and ``--check`` (run by the tests) fails on any. Graded hints go in collapsed
markdown cells after the exercise (a nudge, then the method); the full answer lives only in the solution notebook.
"""
from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION(?:\s+hint:\s*(?P<hint>.*?))?\s*$")
END = re.compile(r"^[ \t]*# END SOLUTION\s*$")


class MarkerError(ValueError):
    """A BEGIN without END, an END without BEGIN, or nested blocks."""


def strip_solutions(source: str, where: str = "cell") -> tuple[str, int]:
    """Replace every solution block in ``source``; returns ``(new_source, number_of_blocks)``."""
    out, inside, blocks, hint, indent = [], False, 0, "", ""
    for number, line in enumerate(source.splitlines(), start=1):
        begin, end = BEGIN.match(line), END.match(line)
        if begin:
            if inside:
                raise MarkerError(f"{where}, line {number}: BEGIN SOLUTION inside another solution block")
            inside, indent = True, begin.group("indent")
            hint = (begin.group("hint") or "write this part").strip()
        elif end:
            if not inside:
                raise MarkerError(f"{where}, line {number}: END SOLUTION without BEGIN SOLUTION")
            safe = hint.replace("\\", "\\\\").replace('"', '\\"')
            out += [f"{indent}# TODO: {hint}", f'{indent}raise NotImplementedError("{safe}")']
            inside, blocks = False, blocks + 1
        elif not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: BEGIN SOLUTION without END SOLUTION")
    return "\n".join(out), blocks


CHECKER_ASSERT = re.compile(r"^(?P<indent>[ \t]*)assert (?P<call>check_\w+\()")


def soften_checker_asserts(source: str) -> tuple[str, int]:
    """``assert check_x(...)`` → ``check_x(...)`` at the start of any line; returns ``(new_source, count)``.

    The checker prints its own verdict, so the learner notebook loses nothing but the exception that would stop
    "Run all" at the first unsolved exercise."""
    out, n = [], 0
    for line in source.splitlines():
        m = CHECKER_ASSERT.match(line)
        if m:
            line, n = m.group("indent") + line[m.end("indent") + len("assert "):], n + 1
            if line.rstrip().endswith(")") and line.count("(") == line.count(")"):
                line = line.rstrip() + ";"       # a one-line call: print the verdict, not also its True/False
        out.append(line)
    return "\n".join(out), n


MIN_LEAK = 20


def _normalise(text: str) -> str:
    return " ".join(text.split())


def solution_lines(solution: nbformat.NotebookNode) -> list[str]:
    """Every line inside a solution block, whitespace-normalised, of at least MIN_LEAK characters."""
    lines = []
    for cell in solution.cells:
        if cell.cell_type != "code":
            continue
        inside = False
        for line in cell.source.splitlines():
            if BEGIN.match(line):
                inside = True
            elif END.match(line):
                inside = False
            elif inside and len(_normalise(line)) >= MIN_LEAK:
                lines.append(_normalise(line))
    return lines


def leaked_lines(solution: nbformat.NotebookNode, learner: nbformat.NotebookNode) -> list[str]:
    """The solution lines that can be read in the learner notebook (any cell, code or markdown)."""
    text = _normalise("\n".join(cell.source for cell in learner.cells))
    return [line for line in solution_lines(solution) if line in text]


def learner_version(solution: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The learner notebook: solution blocks stubbed, checker asserts made plain calls, outputs cleared, widget
    state dropped. No cell is tagged ``raises-exception``: with every stub unsolved it must run without an error."""
    nb = copy.deepcopy(solution)
    nb.metadata.pop("widgets", None)
    total = 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        cell.source, n = strip_solutions(cell.source, f"{name} cell {i}")
        cell.source, _ = soften_checker_asserts(cell.source)
        cell.outputs, cell.execution_count = [], None
        total += n
    if total == 0:
        raise MarkerError(f"{name}: no solution block found")
    return nb


def learner_path(solution_path: Path) -> Path:
    return ROOT / "notebooks" / (solution_path.stem.removesuffix("_solution") + ".ipynb")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the learner notebooks are up to date")
    args = parser.parse_args()
    stale = 0
    for sol in sorted((ROOT / "notebooks" / "solutions").glob("*_solution.ipynb")):
        solution = nbformat.read(sol, as_version=4)
        learner = learner_version(solution, sol.name)
        for line in leaked_lines(solution, learner):
            print(f"{sol.name}: the learner notebook shows a solution line: {line!r}")
            stale += 1
        expected = nbformat.writes(learner) + "\n"
        target = learner_path(sol)
        if args.check:
            if not target.exists() or target.read_text(encoding="utf-8") != expected:
                print(f"{target.relative_to(ROOT)} is out of date: run python scripts/make_learner_notebooks.py")
                stale += 1
        else:
            target.write_text(expected, encoding="utf-8")
            print(f"wrote {target.relative_to(ROOT)}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
