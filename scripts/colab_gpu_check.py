"""Run every course notebook under nbval on this machine's GPU and report pass/fail, time and peak memory.

Usage: python scripts/colab_gpu_check.py [NOTEBOOK ...] [--fast] [--out build/colab_gpu_check]

NOTEBOOK is a number ("01", "5") or a path to an .ipynb; none means all seven, in order, with the
solution notebooks for the code challenges 05 and 06 (the learner notebooks leave every exercise unsolved).
Each notebook runs in its own ``python -m pytest --nbval-lax --nbval-current-env`` process, in full mode
(``COURSE_FAST`` unset: the real models from the Hub) unless ``--fast`` (tiny model, shipped data, offline).

Peak GPU memory is the largest ``memory.used`` that ``nvidia-smi`` reports while that notebook runs (sampled
every 200 ms by one ``nvidia-smi -lms`` process): it counts everything a learner's runtime holds on the card —
the CUDA context, PyTorch's cached blocks, bitsandbytes' buffers — which is what decides whether a notebook
fits a 15 GiB T4. This script never touches CUDA itself, so the numbers are the notebook's alone. A spike
shorter than the sampling interval can be missed. Without ``nvidia-smi`` the memory is "n/a".

Writes ``colab_gpu_check.json`` and ``colab_gpu_check.md`` (a table the README's "T4 time" column is filled
from) and one pytest log per notebook under ``--out``. Exits 1 if any notebook failed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from run_notebooks import course_notebooks  # noqa: E402  (the one definition of "the course's notebooks")

OFFLINE = {"COURSE_FAST": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
NA = "n/a"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b(: .*)?$")


def select(tokens: list[str]) -> list[Path]:
    """Notebook paths for numbers ("02", "5") and paths; all course notebooks when ``tokens`` is empty."""
    course = course_notebooks()
    if not tokens:
        return course
    chosen = []
    for token in tokens:
        if token.endswith(".ipynb"):
            path = Path(token).resolve()
            if not path.is_file():
                raise SystemExit(f"no notebook {token}")
            chosen.append(path)
            continue
        if not token.isdigit():
            raise SystemExit(f"{token!r} is neither a notebook number nor an .ipynb path")
        match = [p for p in course if p.name.startswith(f"{int(token):02d}_")]
        if not match:
            raise SystemExit(f"no course notebook numbered {token}")
        chosen += match
    return chosen


def notebook_id(path: Path) -> str:
    return path.name[:2] if path.name[:2].isdigit() else path.stem


def display_path(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def nvidia_smi(*query: str) -> list[str] | None:
    """First GPU's answer to ``nvidia-smi --query-gpu=<query>``, split on commas; None without a GPU."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(query)}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    return [f.strip() for f in lines[0].split(",")] if out.returncode == 0 and lines else None


class GpuMemorySampler:
    """Largest ``memory.used`` (MiB, any GPU) over the ``with`` block.

    One ``nvidia-smi --loop-ms`` process streams the samples; should it stop early (an nvidia-smi without
    loop mode), the thread polls ``nvidia-smi --query-gpu=memory.used`` at the same interval instead."""

    def __init__(self, interval_ms: int = 200):
        self.interval_ms = interval_ms
        self.peak: int | None = None
        self.proc: subprocess.Popen | None = None
        self.thread: threading.Thread | None = None
        self.stop = threading.Event()

    def __enter__(self) -> GpuMemorySampler:
        if shutil.which("nvidia-smi") is not None:
            try:
                self.proc = subprocess.Popen(
                    ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                     f"--loop-ms={self.interval_ms}"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            except OSError:
                self.proc = None
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _add(self, value: str) -> None:
        if value.strip().isdigit():
            self.peak = max(self.peak or 0, int(value))

    def _sample(self) -> None:
        if self.proc is not None:
            for line in self.proc.stdout:
                self._add(line)
        while not self.stop.wait(self.interval_ms / 1000):     # the loop process ended: poll instead
            for value in nvidia_smi("memory.used") or []:
                self._add(value)

    def __exit__(self, *exc) -> None:
        if self.thread is None:
            return
        time.sleep(self.interval_ms / 1000)     # one more sample after the notebook's last cell
        self.stop.set()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.thread.join(timeout=10)

    @property
    def result(self) -> int | str:
        return NA if self.peak is None else self.peak


def child_env(fast: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("COURSE_REHEARSAL", None)
    if fast:
        env.update(OFFLINE)
    else:
        env.pop("COURSE_FAST", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def pytest_command(path: Path, cell_timeout: int) -> list[str]:
    return [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
            f"--nbval-cell-timeout={cell_timeout}", "-v", "-rf", str(path)]


def run_one(path: Path, out_dir: Path, fast: bool, cell_timeout: int, timeout: float, echo=print) -> dict:
    """nbval on one notebook in its own process; its output goes to ``out_dir/logs/<name>.log``."""
    log_path = out_dir / "logs" / f"{path.stem}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    baseline = nvidia_smi("memory.used")
    lines: list[str] = []
    start = time.perf_counter()
    with GpuMemorySampler() as sampler, log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(pytest_command(path, cell_timeout), cwd=ROOT, env=child_env(fast),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        for line in proc.stdout:
            log.write(line)
            lines.append(ANSI.sub("", line.rstrip("\n")))
            echo(f"  {line.rstrip()}")
        rc = proc.wait()
        timed_out = not timer.is_alive() and rc != 0
        timer.cancel()
    seconds = time.perf_counter() - start
    summary = next((re.sub(r"^=+\s*|\s*=+$", "", ln) for ln in reversed(lines) if ln.startswith("=")), "")
    if timed_out:
        summary = f"killed after {timeout:g} s; {summary}"
    elif rc == 5:
        summary = f"no cells collected; {summary}"
    return {"id": notebook_id(path), "notebook": display_path(path), "status": "pass" if rc == 0 else "fail",
            "seconds": round(seconds, 1), "time": format_seconds(seconds), "peak_gpu_mib": sampler.result,
            "baseline_gpu_mib": int(baseline[0]) if baseline and baseline[0].isdigit() else NA,
            "pytest_exit_code": rc, "summary": summary,
            "failures": [ln for ln in lines if ln.startswith("FAILED ")][:20],
            "errors": list(dict.fromkeys(ln.strip() for ln in lines if ERROR_LINE.match(ln.strip())))[:10],
            "log": log_path.relative_to(out_dir).as_posix()}


def format_seconds(seconds: float) -> str:
    """'45 s', '3 min 12 s', '1 h 02 min' — how the README's time columns read."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def format_mib(mib: int | str) -> str:
    return NA if mib == NA else f"{mib / 1024:.1f} GiB ({mib} MiB)"


def environment(fast: bool) -> dict:
    gpu = nvidia_smi("name", "memory.total", "driver_version")

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return NA

    return {"mode": "fast" if fast else "full", "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "gpu": gpu[0] if gpu else NA, "gpu_memory_mib": int(gpu[1]) if gpu and gpu[1].isdigit() else NA,
            "driver": gpu[2] if gpu else NA, "python": platform.python_version(),
            "colab": "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ,
            "versions": {n: version(n) for n in ("torch", "transformers", "trl", "peft", "bitsandbytes",
                                                 "datasets", "accelerate", "nbval", "pytest")}}


def markdown(report: dict) -> str:
    env, rows = report["environment"], report["notebooks"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    gpu = f"**{env['gpu']}** ({env['gpu_memory_mib']} MiB, driver {env['driver']})" if env["gpu"] != NA \
        else "none (no nvidia-smi)"
    lines = [f"# Colab GPU check — {env['mode']} mode",
             "",
             f"GPU: {gpu} · Python {env['python']} · {versions} · started {env['started']}",
             "",
             f"**{report['passed']} passed, {report['failed']} failed** in {format_seconds(report['seconds'])}.",
             "",
             "| # | notebook | result | wall time | peak GPU memory | pytest |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['id']} | `{r['notebook']}` | {'✅ pass' if r['status'] == 'pass' else '❌ FAIL'} | "
                     f"{r['time']} | {format_mib(r['peak_gpu_mib'])} | {r['summary']} |")
    failed = [r for r in rows if r["status"] != "pass"]
    if failed:
        lines += ["", "Failures (full pytest output in `logs/`):", ""]
        for r in failed:
            lines.append(f"- {r['id']} (`{r['log']}`): " + "; ".join(
                [f"`{f.removeprefix('FAILED ')}`" for f in r["failures"]] + [f"`{e}`" for e in r["errors"]]))
    lines += ["", "README course map, column *T4 time (full mode)* — fill only from a **full-mode** run on a "
              "**Tesla T4** where the notebook passed:", ""]
    usable = env["mode"] == "full" and "T4" in str(env["gpu"])
    for r in rows:
        value = r["time"] if usable and r["status"] == "pass" else \
            f"not usable ({'failed' if r['status'] != 'pass' else env['mode'] + ' mode, GPU ' + str(env['gpu'])})"
        lines.append(f"- {r['id']}: {value}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help='numbers ("02") or .ipynb paths; default: all seven')
    parser.add_argument("--fast", action="store_true", help="fast mode: COURSE_FAST=1, offline, tiny model")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "colab_gpu_check")
    parser.add_argument("--cell-timeout", type=int, default=3600, help="seconds per cell (nbval)")
    parser.add_argument("--timeout", type=float, default=3 * 3600, help="seconds per notebook")
    args = parser.parse_args(argv)
    paths = select(args.notebooks)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    report = {"environment": environment(args.fast), "notebooks": []}
    start = time.perf_counter()
    for path in paths:
        print(f"== {display_path(path)} ({report['environment']['mode']} mode)", flush=True)
        row = run_one(path, out, args.fast, args.cell_timeout, args.timeout)
        report["notebooks"].append(row)
        print(f"== {row['id']}: {row['status']} in {row['time']}, peak GPU memory {format_mib(row['peak_gpu_mib'])}",
              flush=True)
        report["passed"] = sum(r["status"] == "pass" for r in report["notebooks"])
        report["failed"] = len(report["notebooks"]) - report["passed"]
        report["seconds"] = round(time.perf_counter() - start, 1)
        # written after every notebook: a runtime that disconnects mid-way still leaves a report
        (out / "colab_gpu_check.json").write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
        (out / "colab_gpu_check.md").write_text(markdown(report), encoding="utf-8")
    print(f"{report['passed']} passed, {report['failed']} failed; report: {out / 'colab_gpu_check.md'}")
    return 0 if report["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
