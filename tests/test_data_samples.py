"""Shipped data samples are verbatim copies of the real files in ../shared/realdata."""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_instruction_sample_schema():
    records = json.loads((ROOT / "data" / "realdata" / "llms_from_scratch_instruction_data.first200.json")
                         .read_text(encoding="utf-8"))
    assert len(records) == 200
    for i, r in enumerate(records):
        assert set(r) == {"instruction", "input", "output"}, i
        assert all(isinstance(v, str) for v in r.values()) and r["instruction"] and r["output"], i


def test_realdata_copies_are_verbatim(shared_realdata):
    shipped = sorted((ROOT / "data" / "realdata").iterdir())
    assert [p.name for p in shipped] == sorted(p.name for p in shared_realdata.glob("*.json*"))
    for path in shipped:
        assert path.read_bytes() == (shared_realdata / path.name).read_bytes(), path.name


def test_every_realdata_file_is_listed_with_a_licence():
    readme = (ROOT / "data" / "README.md").read_text(encoding="utf-8")
    for path in (ROOT / "data" / "realdata").iterdir():
        line = next((l for l in readme.splitlines() if f"`realdata/{path.name}`" in l), None)
        assert line is not None, f"{path.name} is not in data/README.md"
        assert any(lic in line for lic in ("CC BY", "MIT", "Apache-2.0")), f"{path.name}: no licence named"


def test_realdata_more_is_a_verbatim_prefix_extension():
    """The 900-record files start with exactly the 200 shipped records (same source, longer prefix) and match
    ../shared/realdata_more byte for byte when it is present."""
    for name in ("llms_from_scratch_instruction_data", "llms_from_scratch_instruction_data_with_preference"):
        more = json.loads((ROOT / "data" / "realdata_more" / f"{name}.first900.json").read_text(encoding="utf-8"))
        first = json.loads((ROOT / "data" / "realdata" / f"{name}.first200.json").read_text(encoding="utf-8"))
        assert len(more) == 900 and more[:200] == first, name
        shared = ROOT.parent / "shared" / "realdata_more" / f"{name}.first900.json"
        if shared.is_file():
            assert shared.read_bytes() == (ROOT / "data" / "realdata_more" / f"{name}.first900.json").read_bytes()
