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

REALDATA = ROOT.parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def tok():
    from utils.models import load_gpt2_tokenizer
    return load_gpt2_tokenizer()


@pytest.fixture(scope="session")
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip(f"{REALDATA} not present")
    return REALDATA
