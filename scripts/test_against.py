"""Run the course's tests against library versions other than its pins, in a separate virtual environment.

    python scripts/test_against.py latest     # make test-latest: newest transformers, trl, peft, datasets,
                                              # accelerate, bitsandbytes (torch kept at the pin); unit tests + notebooks
    python scripts/test_against.py oldest     # make test-oldest: the oldest torch the pins allow (Colab may lag
                                              # behind our pin); unit tests + notebook 04
    python scripts/test_against.py latest --only tests/test_loss.py   # a subset (any pytest arguments)

Each builds its venv once (``.venv-latest`` / ``.venv-oldest``; delete it to rebuild), runs pytest in fast mode
offline, and prints a short report — the versions installed, what passed, each failure with its first error
line — which it also writes to ``build/test-<which>.md``. The exit status is pytest's. Not part of ``make test``:
the pinned suite is what CI holds the course to; these are early warnings (weekly in the published repository's
GitHub Actions, non-blocking).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COURSE_LIBRARIES = ["transformers", "trl", "peft", "datasets", "accelerate", "bitsandbytes"]
#: The oldest torch the pins allow: transformers 5.22 switches PyTorch off below 2.6 ("PyTorch >= 2.6 is required",
#: transformers/utils/import_utils.py); the other pins accept 2.6 (bitsandbytes needs ≥ 2.4, accelerate ≥ 2.0,
#: peft ≥ 1.13).
OLDEST_TORCH = "2.6.0"
OLDEST_NOTEBOOK = "notebooks/04_instruction_tuning_gpt2.ipynb"
ANSI = re.compile(r"(?:\x1b|#x1B)\[[0-9;]*m")
ERROR_LINE = re.compile(r"^(?:E\s+)?[A-Za-z_.]*(?:Error|Exception|Warning)\b:?")


def pins() -> list[str]:
    return [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def run(cmd: list[str], **kw) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def build(which: str) -> Path:
    venv = ROOT / f".venv-{which}"
    py = venv / "bin" / "python"
    stamp = venv / ".installed"
    if stamp.exists():
        return py
    run([sys.executable, "-m", "venv", str(venv)])
    pinned = pins()
    torch_pin = next(p for p in pinned if p.startswith("torch=="))
    if which == "latest":
        run([str(py), "-m", "pip", "install", "-q", torch_pin])
        rest = [p for p in pinned if p.split("==")[0] not in COURSE_LIBRARIES + ["torch"]]
        run([str(py), "-m", "pip", "install", "-q", *rest])
        run([str(py), "-m", "pip", "install", "-q", "--upgrade", *COURSE_LIBRARIES])
    else:
        run([str(py), "-m", "pip", "install", "-q", f"torch=={OLDEST_TORCH}"])
        run([str(py), "-m", "pip", "install", "-q", *[p for p in pinned if not p.startswith("torch==")]])
    run([str(py), "-m", "pip", "install", "-q", "--no-deps", "-r", str(ROOT / "requirements-nodeps.txt")])
    stamp.touch()
    return py


def installed(py: Path) -> dict[str, str]:
    names = ["torch", *COURSE_LIBRARIES]
    code = ("import importlib.metadata as m\n"
            f"for n in {names!r}:\n"
            "    try: print(n, m.version(n))\n"
            "    except m.PackageNotFoundError: print(n, 'missing')")
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def failures(junit: Path) -> tuple[dict[str, int], list[str]]:
    root = ET.parse(junit).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    out = []
    for case in root.iter("testcase"):
        for bad in list(case.findall("failure")) + list(case.findall("error")):
            text = ANSI.sub("", f"{bad.get('message') or ''}\n{bad.text or ''}")
            lines = [l.strip() for l in text.splitlines() if l.strip()]
            # the exception line ("ValueError: ...", "AssertionError") beats nbval's "Notebook cell execution failed"
            errors = [l for l in lines if ERROR_LINE.match(l)]
            first = errors[-1] if errors else (lines[0] if lines else "(no message)")
            out.append(f"{case.get('classname')}::{case.get('name')} — {first[:200]}")
    return counts, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", choices=["latest", "oldest"])
    parser.add_argument("--only", nargs="+", help="pytest arguments instead of the default selection")
    args = parser.parse_args(argv)
    py = build(args.which)
    versions = installed(py)
    selection = args.only or (["tests", "notebooks"] if args.which == "latest" else
                              ["tests", "--ignore=tests/real_model", OLDEST_NOTEBOOK])
    junit = ROOT / "build" / f"test-{args.which}.xml"
    junit.parent.mkdir(exist_ok=True)
    env = {**os.environ, "COURSE_FAST": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    start = time.time()
    rc = subprocess.run([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *selection],
                        cwd=ROOT, env=env).returncode
    minutes = (time.time() - start) / 60
    counts, failed = failures(junit) if junit.exists() else ({}, ["pytest wrote no report"])
    report = [f"# test-{args.which}", "",
              "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), "",
              f"selection: `{' '.join(selection)}` — {counts.get('tests', 0)} tests, {counts.get('failures', 0)} failed, "
              f"{counts.get('errors', 0)} errors, {counts.get('skipped', 0)} skipped, {minutes:.1f} min (pytest exit {rc})", ""]
    report += ["failures (first error line):", *[f"- {f}" for f in failed]] if failed else ["no failures"]
    text = "\n".join(report) + "\n"
    (ROOT / "build" / f"test-{args.which}.md").write_text(text)
    print("\n" + text)
    return rc


if __name__ == "__main__":
    sys.exit(main())
