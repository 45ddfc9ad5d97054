"""Rehearsal data: what ``make rehearse`` reads where a learner's run would download (see :mod:`utils.rehearsal`).

- :func:`hub_fixture` — what :func:`utils.sources.load_hub_dataset` returns in rehearsal: the Hub dataset's
  columns, feature types, splits and row counts, built from the real samples in ``data/realdata/`` cycled
  to size and cached under ``build/rehearsal_data/``.
- :func:`url_fixture` — what :func:`utils.sources.download` writes in rehearsal for the one URL the course uses.

Used by ``make rehearse`` through :mod:`utils.sources`, not by a lesson.
"""
from __future__ import annotations

import json
from pathlib import Path

from .env import REPO_ROOT

REALDATA = REPO_ROOT / "data" / "realdata"
CACHE_DIR = REPO_ROOT / "build" / "rehearsal_data"


# =========================================================================== Hub-shaped dataset fixtures
#: Row counts of the Hub datasets the notebooks use: tatsu-lab/alpaca, databricks/databricks-dolly-15k and
#: OpenAssistant/oasst1 from the ``dataset_info`` of their dataset cards (README.md YAML: 52,002; 15,011;
#: 84,437 train + 4,401 validation); Anthropic/hh-rlhf from the dataset viewer's split sizes (default config =
#: all data_dirs: 160,800 train / 8,552 test; ``helpful-base``: 43,835 / 2,354; ``harmless-base``: 42,537 / 2,312).
HUB_ROWS: dict[tuple[str, str | None], dict[str, int]] = {
    ("tatsu-lab/alpaca", None): {"train": 52_002},
    ("databricks/databricks-dolly-15k", None): {"train": 15_011},
    ("OpenAssistant/oasst1", None): {"train": 84_437, "validation": 4_401},
    ("Anthropic/hh-rlhf", None): {"train": 160_800, "test": 8_552},
    ("Anthropic/hh-rlhf", "helpful-base"): {"train": 43_835, "test": 2_354},
    ("Anthropic/hh-rlhf", "harmless-base"): {"train": 42_537, "test": 2_312},
}

_ALPACA_PROMPT = ("Below is an instruction that describes a task, paired with an input that provides further context. "
                  "Write a response that appropriately completes the request.\n\n"
                  "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n{output}")
_ALPACA_PROMPT_NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately "
                           "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n{output}")


def hub_features(path: str):
    """The Hub dataset's features (column names and types), as its dataset card declares them."""
    from datasets import Features, Sequence, Value
    s = Value("string")
    if path == "tatsu-lab/alpaca":
        return Features({"instruction": s, "input": s, "output": s, "text": s})
    if path == "databricks/databricks-dolly-15k":
        return Features({"instruction": s, "context": s, "response": s, "category": s})
    if path == "Anthropic/hh-rlhf":
        return Features({"chosen": s, "rejected": s})
    if path == "OpenAssistant/oasst1":
        f64 = Value("float64")
        return Features({
            "message_id": s, "parent_id": s, "user_id": s, "created_date": s, "text": s, "role": s, "lang": s,
            "review_count": Value("int32"), "review_result": Value("bool"), "deleted": Value("bool"),
            "rank": Value("int32"), "synthetic": Value("bool"), "model_name": s,
            "detoxify": {k: f64 for k in ("toxicity", "severe_toxicity", "obscene", "identity_attack", "insult",
                                          "threat", "sexual_explicit")},
            "message_tree_id": s, "tree_state": s,
            "emojis": Sequence({"name": s, "count": Value("int32")}),
            "labels": Sequence({"name": s, "value": f64, "count": Value("int32")}),
        })
    raise _unknown(path, None)


def _unknown(path: str, data_dir: str | None) -> ValueError:
    known = ", ".join(f"{p}" + (f" (data_dir={d!r})" if d else "") for p, d in HUB_ROWS)
    return ValueError(f"Rehearsal has no fixture for the Hub dataset {path!r}"
                      + (f" with data_dir={data_dir!r}" if data_dir else "")
                      + f". Known: {known}. Add one in utils/rehearsal_data.py (HUB_ROWS, hub_features, base_rows).")


def hub_row_count(path: str, split: str, data_dir: str | None = None) -> int:
    """Rows of ``split`` (a plain split name) of the Hub dataset, from :data:`HUB_ROWS`."""
    sizes = HUB_ROWS.get((path, data_dir))
    if sizes is None:
        raise _unknown(path, data_dir)
    if split not in sizes:
        raise ValueError(f"{path} has no split {split!r} (it has {', '.join(sizes)})")
    return sizes[split]


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _oasst_flat_rows() -> list[dict]:
    """The shipped OpenAssistant trees as Hub ``oasst1`` rows (parents before children); fields the tree
    export does not carry (user_id, created_date, detoxify, labels) are null/empty."""
    rows = []
    for tree in _read_jsonl(REALDATA / "oasst_message_trees.first50.jsonl"):
        def walk(node, parent):
            emojis = node.get("emojis") or {}
            rows.append({
                "message_id": node["message_id"], "parent_id": parent, "user_id": None, "created_date": None,
                "text": node["text"], "role": node["role"], "lang": node.get("lang"),
                "review_count": node.get("review_count"), "review_result": node.get("review_result"),
                "deleted": node.get("deleted"), "rank": node.get("rank"), "synthetic": node.get("synthetic"),
                "model_name": node.get("model_name"), "detoxify": None, "message_tree_id": tree["message_tree_id"],
                "tree_state": tree.get("tree_state"),
                "emojis": {"name": list(emojis), "count": list(emojis.values())},
                "labels": {"name": [], "value": [], "count": []},
            })
            for child in node.get("replies", []):
                walk(child, node["message_id"])
        walk(tree["prompt"], None)
    return rows


def base_rows(path: str) -> list[dict]:
    """One copy of the real shipped rows, in the Hub dataset's columns."""
    if path == "tatsu-lab/alpaca":
        rows = json.loads((REALDATA / "alpaca_data.first200.json").read_text(encoding="utf-8"))
        return [{"instruction": r["instruction"], "input": r["input"], "output": r["output"],
                 "text": (_ALPACA_PROMPT if r["input"] else _ALPACA_PROMPT_NO_INPUT).format(**r)} for r in rows]
    if path == "databricks/databricks-dolly-15k":
        return [{k: r[k] for k in ("instruction", "context", "response", "category")}
                for r in _read_jsonl(REALDATA / "dolly15k.first34.jsonl")]
    if path == "Anthropic/hh-rlhf":
        return [{"chosen": r["chosen"], "rejected": r["rejected"]}
                for r in _read_jsonl(REALDATA / "hh_rlhf_harmless_base_test.first200.jsonl")]
    if path == "OpenAssistant/oasst1":
        return _oasst_flat_rows()
    raise _unknown(path, None)


def build_fixture(path: str, split: str, data_dir: str | None = None, *, limit: int | None = None):
    """The rehearsal stand-in for a whole Hub split: the shipped rows cycled to the Hub's row count
    (or ``limit`` rows), with the Hub's features. OpenAssistant ids (message, parent, tree) get a
    ``-r<k>`` suffix from the second copy on, so ids stay unique and every parent is in the data
    (rows are in tree order, parents first, so a cut never orphans a child)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from datasets import Dataset
    from datasets.table import InMemoryTable
    n = hub_row_count(path, split, data_dir)
    n = n if limit is None else min(n, limit)
    base = Dataset.from_list(base_rows(path), features=hub_features(path))
    size = len(base)
    table = base.data.table.take(pa.array([i % size for i in range(n)], pa.int64()))
    if path == "OpenAssistant/oasst1" and n > size:
        tags = pa.array(["" if i < size else f"-r{i // size}" for i in range(n)], pa.string())
        for col in ("message_id", "parent_id", "message_tree_id"):   # a null parent (a root) stays null
            table = table.set_column(table.schema.get_field_index(col), col,
                                     pc.binary_join_element_wise(table[col], tags, ""))
    return Dataset(InMemoryTable(table), info=base.info.copy())


def hub_fixture(path: str, split: str, data_dir: str | None = None):
    """What ``datasets.load_dataset(path, data_dir=data_dir, split=split)`` returns, built locally for a
    rehearsal (:func:`build_fixture`, cached under ``build/rehearsal_data/``). ``split`` may slice
    (``"train[:4600]"``, ``"train[10%:20%]"``, ``"train+test"``)."""
    from datasets import Dataset, ReadInstruction, concatenate_datasets, load_from_disk
    sizes = HUB_ROWS.get((path, data_dir))
    if sizes is None:
        raise _unknown(path, data_dir)
    parts = []
    for instr in ReadInstruction.from_spec(split).to_absolute(sizes):
        where = CACHE_DIR / (path.replace("/", "--") + (f"--{data_dir}" if data_dir else "")) / instr.splitname
        if (where / "dataset_info.json").is_file():
            full = load_from_disk(str(where))
        else:
            full = build_fixture(path, instr.splitname, data_dir)
            where.parent.mkdir(parents=True, exist_ok=True)
            full.save_to_disk(str(where))
            full = load_from_disk(str(where))
        parts.append(full.select(range(instr.from_, instr.to)) if (instr.from_, instr.to) != (0, len(full)) else full)
    ds = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    assert isinstance(ds, Dataset)
    return ds


# =========================================================================== URL fixtures
#: The one URL the course downloads, and the shipped sample that stands in for it, cycled to its size
#: (rasbt/LLMs-from-scratch ch07 instruction-data.json: 1,100 records).
URLS = {
    "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/01_main-chapter-code/instruction-data.json":
        ("llms_from_scratch_instruction_data.first200.json", 1100),
}


def url_fixture(url: str) -> Path:
    """Rehearsal for :func:`utils.sources.download`: the shipped sample for ``url``, cycled to the real file's
    record count, written under ``build/rehearsal_data/urls/`` (never where a real download would go, so a
    later full-mode run cannot mistake it for the real file); returns its path."""
    if url not in URLS:
        raise ValueError(f"Rehearsal has no local stand-in for {url}: add it to utils.rehearsal_data.URLS "
                         f"(known: {', '.join(URLS)}).")
    name, n = URLS[url]
    records = json.loads((REALDATA / name).read_text(encoding="utf-8"))
    text = json.dumps([records[i % len(records)] for i in range(n)], ensure_ascii=False, indent=1)
    target = CACHE_DIR / "urls" / url.rsplit("/", 1)[-1]
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")
    return target
