"""scripts/test_against.py: its report names each failure by its exception line, not by nbval's banner."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import test_against  # noqa: E402

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="2" skipped="1" tests="5">
<testcase classname="tests.test_loss" name="test_a"/>
<testcase classname="tests.test_loss" name="test_b"><failure message="assert 1 == 2">def test_b():
&gt;       assert 1 == 2
E       assert 1 == 2</failure></testcase>
<testcase classname="notebooks.x.ipynb" name="Cell 3"><failure message="#x1B[91mNotebook cell execution failed#x1B[0m">Traceback:
ValueError: the loss is nan
</failure></testcase>
<testcase classname="tests.test_c" name="test_skip"><skipped message="no GPU"/></testcase>
<testcase classname="tests.test_c" name="test_ok"/>
</testsuite></testsuites>"""


def test_failures_are_named_by_their_error_line(tmp_path):
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    counts, failed = test_against.failures(path)
    assert counts == {"tests": 5, "failures": 2, "errors": 0, "skipped": 1}
    assert failed == ["tests.test_loss::test_b — assert 1 == 2",
                      "notebooks.x.ipynb::Cell 3 — ValueError: the loss is nan"]


def test_oldest_torch_is_the_floor_transformers_accepts():
    """make test-oldest must test the torch that transformers' own floor names: read it from its source."""
    import inspect
    import re

    from transformers.utils import import_utils
    floors = set(re.findall(r'PyTorch >= ([0-9.]+) is required', inspect.getsource(import_utils)))
    assert floors, "transformers no longer states a torch floor where it used to: look again"
    assert {f.rstrip(".0") or f for f in floors} == {test_against.OLDEST_TORCH.rstrip(".0")}
