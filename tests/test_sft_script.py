"""scripts/sft.py: the course's SFT recipe as a script — one process, and 2 CPU processes under accelerate (gloo).

Two processes with 4 examples each must train exactly like one process with the global batch of 8: same examples,
loss per supervised token of the whole global step, gradients averaged by DDP and scaled back.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "sft.py"
COMMON = ["--fast", "--n-train", "48", "--max-steps", "6", "--lr", "3e-3", "--warmup-steps", "2", "--max-length", "96",
          "--dropout", "0"]         # dropout masks are drawn per process: only without dropout can the runs agree exactly


def run(cmd: list[str], tmp_path: Path, name: str, **env_extra) -> list[dict]:
    log = tmp_path / f"{name}.jsonl"
    env = {**os.environ, "COURSE_FAST": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           **env_extra}
    out = subprocess.run(cmd + ["--log-file", str(log)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path):
    one = run([sys.executable, str(SCRIPT), *COMMON, "--batch-size", "8"], tmp_path, "one")
    two = run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
               str(SCRIPT), *COMMON, "--batch-size", "4"], tmp_path, "two",
              ACCELERATE_USE_CPU="1")       # torchrun's 2 processes on the CPU: accelerate picks MULTI_CPU with gloo
    assert [r["step"] for r in one] == [r["step"] for r in two] == list(range(1, 7))
    assert [r["tokens"] for r in one] == [r["tokens"] for r in two]          # the same examples every step
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4), (a, b)
    assert one[-1]["loss"] < one[0]["loss"]                                 # and it trains


def test_yaml_config_and_flags(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    from sft import parse_args
    cfg = tmp_path / "run.yaml"
    cfg.write_text("max_steps: 7\nlr: 1.0e-4\nfast: true\nbatch_size: 2\n")
    args = parse_args(["--config", str(cfg), "--batch-size", "3"])
    assert (args.max_steps, args.lr, args.fast, args.batch_size) == (7, 1e-4, True, 3)   # the flag wins
    cfg.write_text("max_step: 7\n")
    with pytest.raises(SystemExit):
        parse_args(["--config", str(cfg)])                                   # a typo is an error, not ignored
