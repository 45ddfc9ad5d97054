import random

import numpy as np
import pytest
import torch

from utils import env


@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("YES", True), (" on ", True),
                                            ("0", False), ("", False), ("false", False), ("no", False)])
def test_fast_mode_reads_COURSE_FAST(monkeypatch, value, expected):
    monkeypatch.setenv("COURSE_FAST", value)
    assert env.fast_mode() is expected


def test_fast_mode_off_when_unset(monkeypatch):
    monkeypatch.delenv("COURSE_FAST", raising=False)
    assert env.fast_mode() is False


def test_cpu_is_fp32():
    dp = env.pick_device_and_precision("cpu")
    assert (dp.device.type, dp.precision, dp.amp_dtype, dp.use_grad_scaler) == ("cpu", "fp32", None, False)
    with dp.autocast():  # a no-op context on CPU
        assert (torch.ones(2) @ torch.ones(2)).dtype == torch.float32


@pytest.mark.parametrize("capability,precision,dtype,scaler", [
    ((7, 5), "fp16", torch.float16, True),     # T4: bf16 only emulated, use fp16 + loss scaling
    ((7, 0), "fp16", torch.float16, True),     # V100
    ((8, 0), "bf16", torch.bfloat16, False),   # A100
    ((9, 0), "bf16", torch.bfloat16, False),   # H100
])
def test_cuda_precision_by_compute_capability(monkeypatch, capability, precision, dtype, scaler):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    # a T4 claims bf16 support; the choice must not rely on that
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    dp = env.pick_device_and_precision("cuda")
    assert (dp.precision, dp.amp_dtype, dp.use_grad_scaler) == (precision, dtype, scaler)


def test_seed_everything_repeats_every_rng():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3).tolist()
    env.seed_everything(7)
    a = draw()
    env.seed_everything(7)
    assert draw() == a
    env.seed_everything(8)
    assert draw() != a


def test_print_versions(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    env.print_versions()
    out = capsys.readouterr().out
    assert f"torch {torch.__version__}" in out and "transformers" in out
    assert "device: cpu" in out and "precision: fp32" in out and "FAST" in out


def test_precision_for_compute_capabilities():
    from utils.env import precision_for
    assert [precision_for(c) for c in (None, (6, 0), (7, 5), (8, 0), (9, 0))] == ["fp32", "fp16", "fp16", "bf16", "bf16"]


@pytest.mark.parametrize("value,expected", [("1", True), ("TRUE", True), (" yes ", True), ("on", True),
                                            ("0", False), ("", False), ("off", False), ("2", False)])
def test_env_flag_is_the_one_parser(monkeypatch, value, expected):
    monkeypatch.setenv("SOME_COURSE_FLAG", value)
    assert env.env_flag("SOME_COURSE_FLAG") is expected
    monkeypatch.delenv("SOME_COURSE_FLAG")
    assert env.env_flag("SOME_COURSE_FLAG") is False


def test_rehearsal_flag_and_fast_mode_wins(monkeypatch):
    monkeypatch.delenv("COURSE_FAST", raising=False)
    monkeypatch.setenv("COURSE_REHEARSAL", "Yes")
    assert env.rehearsal() is True
    monkeypatch.setenv("COURSE_FAST", "1")
    assert env.rehearsal() is False            # fast mode changes the configuration itself
    monkeypatch.setenv("COURSE_FAST", "0")
    monkeypatch.setenv("COURSE_REHEARSAL", "off")
    assert env.rehearsal() is False


def test_hub_reachable_reads_HF_HUB_OFFLINE_with_env_flag(monkeypatch):
    from utils import models
    monkeypatch.setenv("HF_HUB_OFFLINE", " ON ")     # case and spaces read as in COURSE_FAST
    assert models.hub_reachable(timeout=1) is False


def test_bitsandbytes_cpu_kernel_warning_is_quiet():
    """Importing utils.env quiets bitsandbytes' 'Failed to load CPU gemm_4bit_forward' warning (notebook 07 showed it
    under TRL's import on this machine); errors from that logger still show."""
    import logging
    import subprocess
    import sys
    from pathlib import Path

    import utils.env  # noqa: F401

    assert logging.getLogger("bitsandbytes.backends.cpu.ops").getEffectiveLevel() == logging.ERROR
    out = subprocess.run([sys.executable, "-c", "import utils.env, bitsandbytes"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr
    assert "gemm_4bit_forward" not in out.stderr
