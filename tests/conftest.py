"""Shared test set-up: fast mode, offline, the repo on sys.path."""
import os
import sys
from pathlib import Path

os.environ.setdefault("COURSE_FAST", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402

#: The real-format samples the course ships (byte-identical copies of ../shared/realdata, checked by
#: tests/test_data_samples.py): data and chat tests read these, so they run on the repository alone.
REALDATA = ROOT / "data" / "realdata"
#: The originals, present only on the course's own machine.
SHARED_REALDATA = ROOT.parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def tok():
    from utils.models import load_gpt2_tokenizer
    return load_gpt2_tokenizer()


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The shipped real-format samples, ``data/realdata/`` (always present)."""
    return REALDATA


@pytest.fixture(scope="session")
def shared_realdata() -> Path:
    """``../shared/realdata``, the originals; tests that compare against them skip where it is absent."""
    if not SHARED_REALDATA.is_dir():
        pytest.skip(f"{SHARED_REALDATA} not present (only the course's own machine has the originals)")
    return SHARED_REALDATA


@pytest.fixture
def rehearsal_env(monkeypatch):
    monkeypatch.delenv("COURSE_FAST", raising=False)
    monkeypatch.setenv("COURSE_REHEARSAL", "1")
