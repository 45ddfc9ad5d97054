"""nbval runs the solution notebooks of the code challenges, not their learner versions.

A learner notebook (notebooks/NN_name.ipynb made from notebooks/solutions/NN_name_solution.ipynb)
stops at its first exercise by design; tests/test_challenges.py checks it structurally instead.
"""
from pathlib import Path

HERE = Path(__file__).parent
collect_ignore = [str(HERE / (p.stem.removesuffix("_solution") + ".ipynb"))
                  for p in sorted((HERE / "solutions").glob("*_solution.ipynb"))]
