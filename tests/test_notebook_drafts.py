"""Notebook 04 grows the collate function in drafts; its last draft must equal utils.masking.pad_collate."""
import json
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.masking import build_labels, pad_collate

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "04_instruction_tuning_gpt2.ipynb"


@pytest.fixture(scope="module")
def drafts():
    """Execute only the notebook cells that define collate_draft_* (and nothing after them in a cell)."""
    cells = ["".join(c["source"]) for c in json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
             if c["cell_type"] == "code"]
    namespace = {"torch": torch, "warnings": warnings}
    for src in cells:
        if "def collate_draft_" not in src:
            continue
        # keep the function definitions; the cells also demonstrate them on toy data
        kept, inside = [], False
        for line in src.splitlines():
            if line.startswith("def collate_draft_"):
                inside = True
            elif line and not line.startswith((" ", "\t", "#")):
                inside = False
            if inside:
                kept.append(line)
        exec("\n".join(kept), namespace)  # noqa: S102 - the course's own notebook
    assert {"collate_draft_1", "collate_draft_2", "collate_draft_3", "collate_draft_4"} <= set(namespace)
    return namespace


pairs = st.lists(st.tuples(st.lists(st.integers(0, 50255), max_size=6), st.lists(st.integers(0, 50255), max_size=6)),
                 min_size=1, max_size=4)


@settings(max_examples=100, deadline=None)
@given(pairs=pairs, max_length=st.one_of(st.none(), st.integers(1, 12)), with_labels=st.booleans())
def test_last_draft_equals_pad_collate(drafts, pairs, max_length, with_labels):
    examples = [dict(zip(("input_ids", "labels"), build_labels(p, r, 50256))) for p, r in pairs]
    if not with_labels:
        examples = [{"input_ids": e["input_ids"]} for e in examples]
    with warnings.catch_warnings(record=True) as w_draft:
        warnings.simplefilter("always")
        got = drafts["collate_draft_4"](examples, max_length=max_length)
    with warnings.catch_warnings(record=True) as w_utils:
        warnings.simplefilter("always")
        want = pad_collate(examples, max_length=max_length)
    for key in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(got[key], want[key]), key
    assert [str(w.message) for w in w_draft] == [str(w.message) for w in w_utils]


def test_draft_2_keeps_first_eos(drafts):
    batch = drafts["collate_draft_2"]([{"input_ids": [1, 50256]}, {"input_ids": [2, 3, 4, 50256]}])
    assert batch["labels"].tolist() == [[1, 50256, -100, -100], [2, 3, 4, 50256]]
