"""Execute the course notebooks in order and report one line per notebook.

Usage: python scripts/run_notebooks.py [NOTEBOOK ...] [--out build]

Without arguments runs every lesson ``notebooks/NN_*.ipynb`` in order; for a code challenge it
runs the solution notebook (``notebooks/solutions/NN_*_solution.ipynb``) in place of the learner
notebook, whose exercises are unsolved (it runs too, printing "not attempted" and using the course's references). Executed copies (with outputs) go to
``build/``; the committed notebooks are never modified. Exits non-zero if any notebook fails.
The caller sets the mode (``make run`` exports COURSE_FAST=1 and the offline variables).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent


def course_notebooks() -> list[Path]:
    nb_dir = ROOT / "notebooks"
    solutions = {p.stem.removesuffix("_solution") + ".ipynb": p for p in (nb_dir / "solutions").glob("*_solution.ipynb")}
    return [solutions.get(p.name, p) for p in sorted(nb_dir.glob("[0-9][0-9]_*.ipynb"))]


def run(path: Path, out_dir: Path, timeout: int) -> tuple[str, float, str]:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    status, detail = "ok", ""
    try:
        client.execute()
    except CellExecutionError as err:
        status = "FAILED"
        detail = str(err).strip().splitlines()[-1] if str(err).strip() else repr(err)
    except Exception as err:  # kernel died, timeout, ...
        status, detail = "FAILED", f"{type(err).__name__}: {err}"
    seconds = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_dir / path.name)
    return status, seconds, detail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "build")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args()
    paths = [p.resolve() for p in args.notebooks] or course_notebooks()
    if not paths:
        print("no notebooks found", file=sys.stderr)
        return 1
    failed = 0
    for path in paths:
        status, seconds, detail = run(path, args.out, args.timeout)
        failed += status != "ok"
        print(f"{path.name:55s} {status:6s} {seconds:7.1f} s  {detail}".rstrip(), flush=True)
    print(f"{len(paths) - failed} passed, {failed} failed; executed copies in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
