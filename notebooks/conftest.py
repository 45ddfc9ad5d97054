"""nbval runs the solution notebooks of the code challenges, not their learner versions.

A learner notebook (notebooks/NN_name.ipynb, made from notebooks/solutions/NN_name_solution.ipynb by
scripts/make_learner_notebooks.py) must run from top to bottom with every stub unsolved — Colab's "Run all"
ignores nbval's raises-exception tag, and the learner notebooks carry none. They are executed by
tests/test_learner_notebooks.py::test_learner_notebook_runs_all_with_every_stub_unsolved, which fails on any error
and also checks that each checker says "not attempted yet" and each later use falls back to the reference and says
so; collecting them here as well would only run them twice.
"""
from pathlib import Path

HERE = Path(__file__).parent
collect_ignore = [str(HERE / (p.stem.removesuffix("_solution") + ".ipynb"))
                  for p in sorted((HERE / "solutions").glob("*_solution.ipynb"))]
