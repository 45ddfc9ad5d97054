"""utils.rehearsal_data: Hub-shaped dataset fixtures and the URL stand-in of ``make rehearse``."""
import json
import time

import pytest

from utils import rehearsal_data as rd


EXPECTED = {
    "tatsu-lab/alpaca": ["instruction", "input", "output", "text"],
    "databricks/databricks-dolly-15k": ["instruction", "context", "response", "category"],
    "Anthropic/hh-rlhf": ["chosen", "rejected"],
    "OpenAssistant/oasst1": ["message_id", "parent_id", "user_id", "created_date", "text", "role", "lang",
                             "review_count", "review_result", "deleted", "rank", "synthetic", "model_name",
                             "detoxify", "message_tree_id", "tree_state", "emojis", "labels"],
}


def test_hub_row_counts():
    assert rd.hub_row_count("tatsu-lab/alpaca", "train") == 52_002
    assert rd.hub_row_count("databricks/databricks-dolly-15k", "train") == 15_011
    assert rd.hub_row_count("OpenAssistant/oasst1", "train") == 84_437
    assert (rd.hub_row_count("Anthropic/hh-rlhf", "train"), rd.hub_row_count("Anthropic/hh-rlhf", "test")) == (160_800, 8_552)
    assert rd.hub_row_count("Anthropic/hh-rlhf", "train", "helpful-base") == 43_835
    assert rd.hub_row_count("Anthropic/hh-rlhf", "test", "helpful-base") == 2_354
    with pytest.raises(ValueError, match="no fixture"):
        rd.hub_row_count("someone/else", "train")


@pytest.mark.parametrize("path", list(EXPECTED))
def test_fixture_columns_types_and_cycling(path):
    from datasets import Value
    ds = rd.build_fixture(path, "train", limit=1200)
    assert list(ds.features) == EXPECTED[path] and len(ds) == 1200
    assert ds.features == rd.hub_features(path)
    assert all(v == Value("string") for k, v in ds.features.items() if k in ("instruction", "chosen", "text", "message_id"))
    base = rd.base_rows(path)
    if path != "OpenAssistant/oasst1":
        assert ds[len(base)] == ds[0]                                 # cycled verbatim


def test_oasst_fixture_ids_unique_parents_present_and_threads_convert():
    from utils.data import convert_records
    ds = rd.build_fixture("OpenAssistant/oasst1", "train", limit=1300)        # 549 per copy: cut inside copy 3
    ids = ds["message_id"]
    known = set(ids)
    assert len(known) == len(ids)
    assert all(p is None or p in known for p in ds["parent_id"])
    assert ds[549]["message_id"] == ds[0]["message_id"] + "-r1" and ds[549]["parent_id"] is None
    assert ds.features["review_count"] == rd.hub_features("OpenAssistant/oasst1")["review_count"]
    rows = ds.to_list()
    one, _ = convert_records(rows[:549], "oasst_flat", errors="collect", source="oasst")
    two, _ = convert_records(rows[:1098], "oasst_flat", errors="collect", source="oasst")
    assert len(two) == 2 * len(one) > 0                 # each copy is a whole, consistent set of trees


def test_load_hub_dataset_rehearsal_split_slicing(rehearsal_env, tmp_path, monkeypatch):
    from utils.sources import load_hub_dataset
    monkeypatch.setattr(rd, "CACHE_DIR", tmp_path)
    ds = load_hub_dataset("databricks/databricks-dolly-15k", "train[:100]")
    assert len(ds) == 100 and list(ds.features) == EXPECTED["databricks/databricks-dolly-15k"]
    assert len(load_hub_dataset("databricks/databricks-dolly-15k", "train")) == 15_011    # from the cache now
    assert (tmp_path / "databricks--databricks-dolly-15k" / "train" / "dataset_info.json").is_file()


def test_load_hub_dataset_full_mode_offline_fails_fast(monkeypatch):
    from utils.sources import load_hub_dataset
    from utils.models import HubUnavailableError
    monkeypatch.delenv("COURSE_REHEARSAL", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")        # nothing listens: refused at once
    start = time.perf_counter()
    with pytest.raises(HubUnavailableError, match=r"Connect to the internet, or set COURSE_FAST=1"):
        load_hub_dataset("tatsu-lab/alpaca", "train")
    assert time.perf_counter() - start < 10


# --------------------------------------------------------------------------- URLs
def test_url_stand_in(rehearsal_env, tmp_path):
    from utils.sources import download, load_json
    url = next(iter(rd.URLS))
    target = tmp_path / "instruction-data.json"
    rows = load_json(url, target)
    sample = json.loads((rd.REALDATA / "llms_from_scratch_instruction_data.first200.json").read_text())
    assert len(rows) == 1100 and rows[:200] == sample and rows[200] == sample[0]
    assert not target.exists()                               # never where a real download would go
    with pytest.raises(ValueError, match="no local stand-in"):
        download("https://example.com/other.json", tmp_path / "x.json")
