"""Shipped data samples are verbatim copies of the real files in ../shared/realdata."""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_instruction_sample_is_verbatim(realdata):
    shipped = ROOT / "data" / "llms_from_scratch_instruction_data.first200.json"
    assert shipped.read_bytes() == (realdata / shipped.name).read_bytes()


def test_instruction_sample_schema():
    records = json.loads((ROOT / "data" / "llms_from_scratch_instruction_data.first200.json").read_text(encoding="utf-8"))
    assert len(records) == 200
    for i, r in enumerate(records):
        assert set(r) == {"instruction", "input", "output"}, i
        assert all(isinstance(v, str) for v in r.values()) and r["instruction"] and r["output"], i
