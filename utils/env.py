"""Where are we running, and how should we run here?

Fast mode (``COURSE_FAST=1``) swaps the real models and datasets for a tiny randomly
initialised GPT-2 and shipped samples, so every notebook runs offline on 2 CPU cores in
under two minutes. It is decided in exactly one place: :func:`fast_mode`.

Rehearsal (``COURSE_REHEARSAL=1``, ``COURSE_FAST`` unset) runs the *full* configuration offline:
the real architectures with random weights and Hub-shaped fixtures built from the shipped samples,
with training loops capped to a few steps (``make rehearse``, :mod:`utils.rehearsal`). It proves
shapes, memory and time, not what a model learns. Every on/off environment variable is read by
:func:`env_flag`.

Introduced in notebook 01 (every notebook's first cell: mode, device, precision, versions).
"""
from __future__ import annotations

import logging
import os
import platform
import random
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

#: The repository's root: shipped data (``data/``), checkpoints and build outputs are found from here.
REPO_ROOT = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}

# bitsandbytes ≥ 0.50 on a CPU with AVX512-BF16 logs a warning, whenever something imports it (TRL, PEFT), that an
# optional 4-bit CPU kernel could not be downloaded. Nothing in the course runs 4-bit kernels on a CPU, and the
# message reads like a failure to a learner; errors still show.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def env_flag(name: str) -> bool:
    """True when the environment variable ``name`` is 1/true/yes/on (any case, spaces ignored);
    unset, empty and anything else (0/false/no/off) is False."""
    return os.environ.get(name, "").strip().lower() in _TRUE


def fast_mode() -> bool:
    """True when the environment variable ``COURSE_FAST`` is set to 1/true/yes/on."""
    return env_flag("COURSE_FAST")


#: Experiment trackers the course can log to (``COURSE_REPORT_TO``); both are off unless asked for.
TRACKERS = ("tensorboard", "trackio")


def report_to() -> list[str]:
    """Where training runs log their metrics: ``COURSE_REPORT_TO=tensorboard`` (or ``trackio``, or both, comma
    separated) → that list; unset or empty → ``[]``, nothing logged. The same value goes to the course's loop
    (:func:`utils.training.train`) and to TRL's configs (their ``report_to=``), so one switch covers every run."""
    value = os.environ.get("COURSE_REPORT_TO", "").strip().lower()
    kinds = [k.strip() for k in value.split(",") if k.strip() and k.strip() != "none"]
    unknown = [k for k in kinds if k not in TRACKERS]
    if unknown:
        raise ValueError(f"COURSE_REPORT_TO={value!r}: unknown tracker(s) {unknown}; use one of {TRACKERS} or leave it unset")
    return kinds


def rehearsal() -> bool:
    """True when ``COURSE_REHEARSAL`` is on and fast mode is not: the full configuration runs
    offline on random weights of the real architectures (see :mod:`utils.rehearsal`).
    Fast mode wins when both are set, because it changes the configuration itself."""
    return env_flag("COURSE_REHEARSAL") and not fast_mode()


@dataclass(frozen=True)
class DevicePrecision:
    """The device to train on and how to do the arithmetic there.

    ``precision`` is ``"bf16"`` (autocast to bfloat16, no loss scaler), ``"fp16"``
    (autocast to float16 with a gradient scaler: mixed precision, fp32 master weights)
    or ``"fp32"`` (no autocast).
    """

    device: torch.device
    precision: str
    amp_dtype: torch.dtype | None
    use_grad_scaler: bool

    def autocast(self):
        """A context manager for the forward pass: autocast on GPU, a no-op otherwise."""
        if self.amp_dtype is None:
            return torch.autocast(device_type=self.device.type, enabled=False)
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)


def pick_device_and_precision(device: str | torch.device | None = None) -> DevicePrecision:
    """Choose device and precision for training.

    - CUDA with compute capability >= 8 (A100, L4, H100): bf16 autocast.
    - CUDA below 8 (the free Colab T4 is 7.5): fp16 mixed precision with a loss scaler.
      ``torch.cuda.is_bf16_supported()`` answers True on a T4 because bf16 is *emulated*
      there (slowly), so we ask for the compute capability instead.
    - CPU (and anything else): fp32.
    """
    dev = torch.device(device) if device is not None else (
        torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    capability = torch.cuda.get_device_capability(dev) if dev.type == "cuda" else None
    precision = precision_for(capability)
    if precision == "bf16":
        return DevicePrecision(dev, "bf16", torch.bfloat16, use_grad_scaler=False)
    if precision == "fp16":
        return DevicePrecision(dev, "fp16", torch.float16, use_grad_scaler=True)
    return DevicePrecision(dev, "fp32", None, use_grad_scaler=False)


def precision_for(capability: tuple[int, int] | None) -> str:
    """``"bf16"`` for a CUDA compute capability ≥ 8.0, ``"fp16"`` below, ``"fp32"`` without a GPU (None)."""
    if capability is None:
        return "fp32"
    return "bf16" if capability[0] >= 8 else "fp16"


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (CPU and every GPU) so a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


_PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "bitsandbytes")


def versions() -> dict[str, str]:
    """Installed versions of Python and the course's main packages ("-" if missing)."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    # torch's own version string carries the build ("+cu124", "+cpu"); pip metadata may not (PyPI's CUDA wheels)
    out["torch"] = torch.__version__
    return out


def print_versions() -> None:
    """Print package versions, the device, the precision and the mode on one or two lines."""
    dp = pick_device_and_precision()
    where = dp.device.type
    if dp.device.type == "cuda":
        where = f"cuda ({torch.cuda.get_device_name(dp.device)})"
    print(" | ".join(f"{k} {v}" for k, v in versions().items()))
    print(f"device: {where} | precision: {dp.precision} | "
          f"mode: {_mode_name()}")


def _mode_name() -> str:
    if fast_mode():
        return "FAST (tiny model, shipped data)"
    if rehearsal():
        return "REHEARSAL (full configuration, random weights, Hub-shaped local data, capped loops)"
    return "FULL (real models from the Hub)"
