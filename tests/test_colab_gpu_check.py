"""The maintainers' Colab GPU check: maintainers/colab_gpu_check.ipynb and scripts/colab_gpu_check.py.

The notebook is executed here in fast mode on the CPU (no GPU: memory "n/a") on notebook 02 and on a tiny
notebook that raises; nvidia-smi is faked to test the memory sampler.
"""
import ast
import configparser
import importlib.util
import json
import os
import stat
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from test_repo import ALL_NOTEBOOKS, code_cells, requirement_sections, setup_constants

ROOT = Path(__file__).resolve().parent.parent
MAINTAINER_NB = ROOT / "maintainers" / "colab_gpu_check.ipynb"
spec = importlib.util.spec_from_file_location("colab_gpu_check", ROOT / "scripts" / "colab_gpu_check.py")
cgc = sys.modules["colab_gpu_check"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cgc)


# --- the notebook agrees with the course ----------------------------------------------------------------

def test_maintainer_notebook_uses_the_course_repo_url_and_pins():
    ours, course = setup_constants(MAINTAINER_NB), setup_constants(ALL_NOTEBOOKS[0])
    assert ours["REPO_URL"] == course["REPO_URL"], "REPO_URL differs from the course notebooks'"
    libraries = requirement_sections()["course libraries (installed in Colab by the setup cell)"]
    assert {p.split("==")[0]: p.split("==")[1] for p in ours["COLAB_PINS"]} == libraries   # every notebook's, at once
    tree = ast.parse(code_cells(MAINTAINER_NB)[0])
    check_pins = next(ast.literal_eval(n.value) for n in tree.body
                      if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "CHECK_PINS")
    tools = requirement_sections()["running and testing notebooks locally (not installed in Colab)"]
    assert {p.split("==")[0]: p.split("==")[1] for p in check_pins} == {k: tools[k] for k in ("nbval", "pytest")}
    assert not any(p.lower().startswith("torch") for p in check_pins)


def test_maintainer_notebook_has_its_badge_here_and_in_the_readme():
    slug = setup_constants(MAINTAINER_NB)["REPO_URL"].removeprefix("https://github.com/")
    badge = f"https://colab.research.google.com/github/{slug}/blob/main/maintainers/colab_gpu_check.ipynb"
    first_md = nbformat.read(MAINTAINER_NB, as_version=4).cells[0]
    assert first_md.cell_type == "markdown" and badge in first_md.source
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "## Maintainers" in readme and badge in readme.split("## Maintainers", 1)[1]


def test_maintainer_notebook_is_clean_and_outside_what_make_test_collects():
    ini = configparser.ConfigParser()
    ini.read(ROOT / "pytest.ini")
    testpaths = ini["pytest"]["testpaths"].split()
    assert not any(MAINTAINER_NB.is_relative_to(ROOT / p) for p in testpaths), "nbval would run it in make test"
    nb = nbformat.read(MAINTAINER_NB, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
            ast.parse(cell.source)          # plain Python: no shell magics, runs outside IPython too


# --- the runner's pieces ------------------------------------------------------------------------------------

def test_select_maps_numbers_to_course_notebooks_with_solutions_for_the_challenges():
    assert cgc.select([]) == cgc.course_notebooks()
    assert len(cgc.select([])) == 7
    five = cgc.select(["5"])
    assert [p.relative_to(ROOT).as_posix() for p in five] == [
        "notebooks/solutions/05_codechallenge_gpt2_large_part1_solution.ipynb"]
    assert cgc.notebook_id(five[0]) == "05"
    with pytest.raises(SystemExit, match="no course notebook numbered 99"):
        cgc.select(["99"])
    with pytest.raises(SystemExit, match="neither"):
        cgc.select(["gpt2"])


@pytest.mark.parametrize("seconds, text", [(0.4, "0 s"), (59.6, "1 min 00 s"), (192, "3 min 12 s"),
                                           (3725, "1 h 02 min")])
def test_format_seconds(seconds, text):
    assert cgc.format_seconds(seconds) == text


def test_child_environment_full_vs_fast(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    monkeypatch.setenv("COURSE_REHEARSAL", "1")
    full, fast = cgc.child_env(fast=False), cgc.child_env(fast=True)
    assert "COURSE_FAST" not in full and "COURSE_REHEARSAL" not in full
    assert fast["COURSE_FAST"] == "1" and fast["HF_HUB_OFFLINE"] == "1" and "COURSE_REHEARSAL" not in fast


def test_markdown_fills_the_t4_column_only_from_a_full_mode_t4_run():
    row = {"id": "01", "notebook": "notebooks/01_x.ipynb", "status": "pass", "time": "3 min 12 s",
           "peak_gpu_mib": 2150, "summary": "20 passed", "failures": [], "errors": [], "log": "logs/01_x.log"}
    bad = {**row, "id": "02", "status": "fail", "failures": ["FAILED x::Cell 3"], "errors": ["ValueError: no"]}
    env = {"mode": "full", "gpu": "Tesla T4", "gpu_memory_mib": 15360, "driver": "550", "python": "3.12",
           "started": "now", "versions": {"torch": "2.11"}}
    report = {"environment": env, "notebooks": [row, bad], "passed": 1, "failed": 1, "seconds": 300}
    text = cgc.markdown(report)
    assert "| 01 | `notebooks/01_x.ipynb` | ✅ pass | 3 min 12 s | 2.1 GiB (2150 MiB) |" in text
    assert "- 01: 3 min 12 s" in text and "- 02: not usable (failed)" in text
    assert "`ValueError: no`" in text
    fast = cgc.markdown({**report, "environment": {**env, "mode": "fast"}})
    assert "- 01: not usable (fast mode, GPU Tesla T4)" in fast


FAKE_SMI = """#!/bin/sh
case "$*" in
  *loop-ms*) {loop} ;;
  *name,memory.total*) echo "Tesla T4, 15360, 550.54.15" ;;
  *memory.used*) echo 777 ;;
esac
"""


@pytest.mark.parametrize("loop, peak", [
    ("for v in 100 2500 300; do echo $v; sleep 0.05; done; exec sleep 30", 2500),   # streaming mode
    ("exit 1", 777),                                                                 # no loop mode: polling
], ids=["streaming", "polling"])
def test_memory_sampler_takes_the_peak_from_nvidia_smi(tmp_path, monkeypatch, loop, peak):
    smi = tmp_path / "nvidia-smi"
    smi.write_text(FAKE_SMI.replace("{loop}", loop))
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    start = time.perf_counter()
    with cgc.GpuMemorySampler(interval_ms=100) as sampler:
        time.sleep(0.6)
    assert sampler.result == peak
    assert time.perf_counter() - start < 5, "the sampler must stop with the block"
    assert cgc.nvidia_smi("name", "memory.total", "driver_version") == ["Tesla T4", "15360", "550.54.15"]


def test_memory_is_na_without_nvidia_smi(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with cgc.GpuMemorySampler() as sampler:
        pass
    assert sampler.result == "n/a" and cgc.nvidia_smi("memory.used") is None


# --- end to end: the maintainer notebook drives the runner ------------------------------------------------

def test_maintainer_notebook_runs_nbval_and_reports_pass_and_fail(tmp_path):
    """Notebook 02 in fast mode passes; a notebook whose cell raises is reported failed, with its error."""
    bad = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                          nbformat.v4.new_code_cell("raise ValueError('boom from a test')")])
    bad_path = tmp_path / "raises.ipynb"
    nbformat.write(bad, bad_path)
    out = tmp_path / "out"
    nb = nbformat.read(MAINTAINER_NB, as_version=4)
    config = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("NOTEBOOKS =")]
    assert len(config) == 1, "the notebook's configuration cell starts with NOTEBOOKS ="
    config[0].source = f"NOTEBOOKS = ['02', {str(bad_path)!r}]\nFAST = True\nOUT = Path({str(out)!r})"
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(MAINTAINER_NB.parent)}})
    client.execute()

    report = json.loads((out / "colab_gpu_check.json").read_text(encoding="utf-8"))
    assert report["environment"]["mode"] == "fast"
    good, failed = report["notebooks"]
    assert good["notebook"] == "notebooks/02_datasets_for_instruction_tuning.ipynb"
    assert good["status"] == "pass" and good["seconds"] > 0 and good["peak_gpu_mib"] == "n/a"
    assert failed["status"] == "fail" and failed["pytest_exit_code"] == 1
    assert "ValueError: boom from a test" in failed["errors"]
    assert (report["passed"], report["failed"]) == (1, 1)
    assert "boom from a test" in (out / failed["log"]).read_text(encoding="utf-8")
    # the last cell displays the Markdown report, the run cell printed the runner's exit code
    shown = [o for o in nb.cells[-1].outputs if "text/markdown" in o.get("data", {})]
    assert shown and "| 02 |" in shown[0]["data"]["text/markdown"] and "❌ FAIL" in shown[0]["data"]["text/markdown"]
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "exit code: 1" in printed
