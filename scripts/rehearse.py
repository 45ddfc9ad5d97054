"""Rehearse the course: every notebook with its FULL configuration, offline, at real size, loops capped.

Usage: python scripts/rehearse.py [NOTEBOOK ...] [--out build/rehearsal] [--report build/rehearsal.md]
       (NOTEBOOK: a path, or a number such as 05; default: all seven, solutions for the code challenges,
       chosen exactly as scripts/run_notebooks.py chooses them)

``make rehearse`` runs it with ``COURSE_REHEARSAL=1`` and the offline variables (this script sets them too).
Real architectures with random weights (``data/configs``), Hub-shaped datasets built from ``data/realdata``
(:func:`utils.sources.load_hub_dataset`), full sequence lengths and batch sizes; a cell
``CFG = cap_config(CFG)`` injected after each notebook's config cell caps step counts (:mod:`utils.rehearsal`).

Cell by cell: an ``AssertionError`` is a check whose meaning needs real weights — recorded as "reported" and
the notebook goes on; any other exception (out of memory, shapes, types, missing files, a timeout, a dead
kernel) is a FAILURE of that notebook, reported with its first error line, and the next notebook starts.
Exit status 1 if any notebook failed. Writes the executed notebooks to ``--out`` and the table to ``--report``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from run_notebooks import course_notebooks  # noqa: E402  (the same choice of notebooks as `make run`)

CAP_CELL = "# injected by scripts/rehearse.py (not part of the lesson)\nfrom utils.rehearsal import cap_config\nCFG = cap_config(CFG)"
_MARK = "@@REHEARSAL@@"
_CFG_RE = re.compile(r"^CFG\s*=", re.M)


def config_cell_index(nb) -> int | None:
    """The first code cell that assigns ``CFG`` at the start of a line (the notebook's config cell)."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and _CFG_RE.search(cell.source):
            return i
    return None


def inject_cap_cell(nb) -> int | None:
    """Insert the ``cap_config`` cell right after the config cell; returns its index (None: no config cell)."""
    i = config_cell_index(nb)
    if i is None:
        return None
    cell = nbformat.v4.new_code_cell(CAP_CELL)
    cell.metadata["tags"] = ["rehearsal-injected"]
    nb.cells.insert(i + 1, cell)
    return i + 1


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def classify(cell) -> tuple[str, str] | None:
    """``None`` if the executed cell raised nothing; else ``("check", message)`` for an AssertionError (a check
    that may need real weights) or ``("error", "Type: first line")`` for anything else. A cell tagged
    ``raises-exception`` (nbval: an intended error) raises nothing as far as the rehearsal is concerned."""
    if "raises-exception" in cell.get("metadata", {}).get("tags", []):
        return None
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            message = first_line(out.get("evalue", ""))
            if out.get("ename") == "AssertionError":
                return "check", message or "(assertion without a message)"
            return "error", f"{out.get('ename')}: {message}"
    return None


def _helper(client, code: str, index: int) -> dict:
    """Run a helper snippet in the kernel (not stored in the notebook) and parse the JSON it prints."""
    cell = nbformat.v4.new_code_cell(code)
    client.execute_cell(cell, index, store_history=False)
    text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
    for line in text.splitlines():
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK):])
    errors = [f"{o.get('ename')}: {first_line(o.get('evalue', ''))}" for o in cell.outputs if o.get("output_type") == "error"]
    raise RuntimeError(f"rehearsal helper failed: {errors or text[-500:]}")


def rehearse(path: Path, out_dir: Path, timeout: int, nb=None) -> dict:
    """Execute one notebook cell by cell; returns its record for the report."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    nb = nbformat.read(path, as_version=4) if nb is None else nb     # tests pass a synthetic notebook
    injected = inject_cap_cell(nb)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    rec = {"notebook": path.name, "status": "ok", "error": "", "checks": [], "cells": [], "injected": injected,
           "peak_bytes": None, "peak_kind": "", "changes": []}
    start = time.perf_counter()
    try:
        with client.setup_kernel():
            _helper(client, f"import sys; sys.path.insert(0, {str(ROOT)!r})\nimport utils.rehearsal as _rh\n"
                            f"_rh.COUNTER.install(); print({_MARK!r} + '{{}}')", -1)
            for i, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                _helper(client, f"_rh.kernel_begin(); print({_MARK!r} + '{{}}')", -1)
                t0 = time.perf_counter()
                client.execute_cell(cell, i)
                wall = time.perf_counter() - t0
                counts = _helper(client, f"print({_MARK!r} + _rh.kernel_end())", -1)
                counts.update(index=i, wall=wall)
                rec["cells"].append(counts)
                outcome = classify(cell)
                if outcome is None:
                    continue
                kind, message = outcome
                if kind == "check":
                    rec["checks"].append({"cell": i, "message": message})
                    continue
                rec["status"], rec["error"] = "FAILED", f"cell {i}: {message}"
                break
            summary = _helper(client, f"print({_MARK!r} + _rh.kernel_summary())", -1)
            rec.update(peak_bytes=summary["peak_bytes"], peak_kind=summary["peak_kind"], changes=summary["changes"])
    except CellTimeoutError as err:
        rec["status"], rec["error"] = "FAILED", f"cell {len(rec['cells'])}: timeout ({timeout} s per cell): {first_line(str(err))}"
    except DeadKernelError as err:
        rec["status"], rec["error"] = "FAILED", f"kernel died (out of memory?): {first_line(str(err))}"
    except Exception as err:  # noqa: BLE001 — anything else stops this notebook, not the rehearsal
        rec["status"], rec["error"] = "FAILED", f"{type(err).__name__}: {first_line(str(err))}"
    rec["wall"] = time.perf_counter() - start
    rec["flops"] = sum(c["flops"] for c in rec["cells"])
    rec["flops_uncapped"] = sum(c["flops_uncapped"] for c in rec["cells"])
    rec["projected_s"] = sum(c["seconds_t4"] if c["flops"] > 0 else c["wall"] for c in rec["cells"])
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_dir / path.name)
    return rec


# --------------------------------------------------------------------------- report
def _gib(n):
    return "-" if n is None else f"{n / 2**30:.2f} GiB"


def _flops(x):
    return f"{x / 1e15:.2f} PFLOP" if x >= 1e14 else f"{x / 1e12:.2f} TFLOP"


def report(records: list[dict], command: str, total_wall: float) -> str:
    from utils.rehearsal import projection_assumptions, rehearsal_eval_size, rehearsal_steps
    lines = ["# Rehearsal of the full configuration (random weights, capped loops)", "",
             f"Command: `{command}` — {total_wall / 60:.1f} min here in all. "
             f"Loops capped to {rehearsal_steps()} steps, evaluation sets to {rehearsal_eval_size()} "
             "(`REHEARSAL_STEPS`, `REHEARSAL_EVAL`). Every T4 figure is a **projection**, not a measurement.", "",
             "| notebook | status | wall time here | peak memory | FLOPs counted (capped run) | FLOPs projected (uncapped) "
             "| projected T4 time, uncapped | checks reported (need real weights) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        partial = " (partial: stopped early)" if r["status"] != "ok" else ""
        lines.append(f"| {r['notebook']} | {r['status']} | {r['wall'] / 60:.1f} min | {_gib(r['peak_bytes'])} "
                     f"({r['peak_kind'] or 'not read'}) | {_flops(r['flops'])} | {_flops(r['flops_uncapped'])} | "
                     f"{r['projected_s'] / 60:.1f} min{partial} | {len(r['checks'])} |")
    ok = all(r["status"] == "ok" for r in records)
    lines.append(f"| **course** | {'ok' if ok else 'FAILED'} | {sum(r['wall'] for r in records) / 60:.1f} min | "
                 f"max {_gib(max((r['peak_bytes'] or 0) for r in records) if records else None)} | "
                 f"{_flops(sum(r['flops'] for r in records))} | {_flops(sum(r['flops_uncapped'] for r in records))} | "
                 f"{sum(r['projected_s'] for r in records) / 60:.1f} min | {sum(len(r['checks']) for r in records)} |")
    lines += ["", "## Failures and reported checks", ""]
    for r in records:
        lines.append(f"- **{r['notebook']}**: {r['status']}" + (f" — {r['error']}" if r["error"] else ""))
        for c in r["checks"]:
            lines.append(f"  - reported, needs real weights: cell {c['cell']}: {c['message']}")
        if r["injected"] is None:
            lines.append("  - no config cell (`CFG = ...`) found: nothing was capped")
        if r["changes"]:
            lines.append("  - capped: " + ", ".join(f"`{c['key']}` {c['original']} → {c['capped']}" for c in r["changes"]))
        top = sorted(r["cells"], key=lambda c: -(c["seconds_t4"] if c["flops"] > 0 else c["wall"]))[:4]
        if top:
            lines.append("  - largest projected cells: " + "; ".join(
                f"cell {c['index']}: {(c['seconds_t4'] if c['flops'] > 0 else c['wall']) / 60:.1f} min"
                + (f" ({_flops(c['flops'])} counted, ×{c['flops_uncapped'] / c['flops']:.0f})" if c["flops"] > 0 else " (wall time)")
                + f", {c['wall']:.0f} s here" for c in top))
    lines += ["", "## Assumptions of the projection", ""] + [f"- {a}" for a in projection_assumptions()]
    lines += ["", "## What a rehearsal proves, and what it does not", "",
              "- Proves: every cell of the full configuration runs end to end with the real architectures, the Hub "
              "datasets' columns, types and row counts, full sequence lengths and batch sizes (no shape, type, dtype or "
              "missing-file error), and how much memory it needed here (CPU, fp32: an upper bound for the T4's fp16 "
              "activations, not for CUDA allocator overheads).",
              "- Does not prove: anything about what the models learn or say (random weights: checks that need real "
              "weights are reported, not failed), that it fits a T4's 15 GiB (CPU RSS is not CUDA memory; run the same "
              "command on a GPU for `max_memory_allocated`), real T4 times (projections from counted FLOPs with an assumed "
              "MFU), data-dependent behaviour of the full datasets (fixtures are the shipped samples cycled, so "
              "deduplication and length statistics see copies), or downloads and installation."]
    return "\n".join(lines) + "\n"


def resolve(args: list[str]) -> list[Path]:
    all_nbs = course_notebooks()
    out = []
    for a in args:
        p = Path(a)
        if p.exists():
            out.append(p.resolve())
            continue
        match = [n for n in all_nbs if n.name.startswith(a.zfill(2) + "_")]
        if not match:
            raise SystemExit(f"no notebook {a!r} (give a path or a number 01–07)")
        out += match
    return out or all_nbs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "rehearsal")
    parser.add_argument("--report", type=Path, default=ROOT / "build" / "rehearsal.md")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    args = parser.parse_args()
    os.environ.pop("COURSE_FAST", None)
    os.environ.update(COURSE_REHEARSAL="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    paths = resolve(args.notebooks)
    records, start = [], time.perf_counter()
    for path in paths:
        rec = rehearse(path, args.out, args.timeout)
        records.append(rec)
        print(f"{path.name:55s} {rec['status']:6s} {rec['wall'] / 60:6.1f} min here, projected T4 "
              f"{rec['projected_s'] / 60:6.1f} min, {len(rec['checks'])} check(s) reported  {rec['error']}".rstrip(), flush=True)
        args.report.parent.mkdir(parents=True, exist_ok=True)       # rewritten after each notebook
        args.report.write_text(report(records, "python scripts/rehearse.py " + " ".join(sys.argv[1:]),
                                      time.perf_counter() - start), encoding="utf-8")
        (args.report.with_suffix(".json")).write_text(json.dumps(records, indent=1), encoding="utf-8")
    failed = sum(r["status"] != "ok" for r in records)
    print(f"{len(records) - failed} rehearsed, {failed} failed; report in {args.report}, notebooks in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
