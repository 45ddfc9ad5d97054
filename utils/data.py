"""Instruction and preference datasets in their real formats → one schema (introduced in notebook 02).

Every loader returns conversations in the shape of :mod:`utils.schema`::

    {"id": str, "source": str,
     "messages": [{"role": "system" | "user" | "assistant", "content": str}, ...],
     "meta": dict}                       # format-specific extras; always meta["index"]

and preference loaders return ``{"id", "source", "prompt": [...], "chosen": [...], "rejected": [...]}``.

Nothing is dropped silently. With ``errors="raise"`` (default) the first bad record raises a
:class:`DataFormatError` naming the file, the record and the problem. With ``errors="collect"``
loaders return ``(records, rejects)``: every input record is either loaded or in ``rejects``
with its ``index`` and ``reason``. (OpenAssistant trees are accounted per message: each
non-deleted message is in some emitted conversation or in ``rejects``.)

Formats (``format=`` or detected from the first record's keys):

============  ==========================================================  =====================
format        record                                                      example
============  ==========================================================  =====================
alpaca        ``{instruction, input, output}``                            Stanford Alpaca, LLMs-from-scratch
dolly         ``{instruction, context, response, category}``              databricks-dolly-15k
sharegpt      ``{id, conversations: [{from: human|gpt|system, value}]}``  ShareGPT / FastChat
openai        ``{messages: [{role, content}]}``                           OpenAI chat fine-tuning
self_instruct ``{id, instruction, instances: [{input, output}]}``          Self-Instruct
oasst         ``{message_tree_id, prompt: Message-with-replies}``         Open-Assistant tree export
oasst_flat    one message per row with ``message_id, parent_id, role``    HF ``OpenAssistant/oasst1``
hh_rlhf       ``{chosen, rejected}`` full "\\n\\nHuman: … Assistant: …"    Anthropic HH-RLHF
pref_pairs    ``{instruction, input, output, chosen, rejected}``          LLMs-from-scratch DPO data
============  ==========================================================  =====================

Neighbours: :mod:`utils.schema` (the record, its validator, :class:`DataFormatError`), :mod:`utils.oasst`
(message trees → threads), :mod:`utils.sources` (URLs and the Hub), :mod:`utils.quality` (duplicates, splits),
:mod:`utils.chat` (records → template text).
"""
from __future__ import annotations

import json
import re
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .oasst import oasst_threads, rank_key, subtree_ids
from .schema import DataFormatError, conversation, field, validate_messages


FORMATS = ("alpaca", "dolly", "sharegpt", "openai", "self_instruct", "oasst", "oasst_flat",
           "hh_rlhf", "pref_pairs")
PREFERENCE_FORMATS = ("hh_rlhf", "pref_pairs")
NOOUTPUT = "<nooutput>"


# --------------------------------------------------------------------------- reading files
class _InvalidJSON:
    """A JSONL line that did not parse: kept as a row so it can be rejected with its line."""

    def __init__(self, reason: str):
        self.reason = reason


def read_rows(path: str | Path) -> tuple[list[Any], list[int]]:
    """Parse a JSON array or a JSONL file. Returns ``(rows, indices)``.

    For a JSON array ``indices`` are element numbers; for JSONL they are 0-based line
    numbers (blank lines are skipped; a line that is not valid JSON becomes a row that
    will be rejected as "invalid JSON on line N").
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataFormatError(f"invalid JSON on line {err.lineno}, column {err.colno}: {err.msg}",
                                  None, path) from None
        return rows, list(range(len(rows)))
    rows, indices = [], []
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            rows.append(_InvalidJSON(f"invalid JSON on line {i + 1}: {err.msg} (column {err.colno})"))
        indices.append(i)
    if not rows:
        raise DataFormatError("the file holds no records", None, path)
    return rows, indices


def detect_format(row: Any) -> str:
    """Name the format of one record from its keys; DataFormatError when nothing fits."""
    if not isinstance(row, dict):
        raise DataFormatError(f"expected a JSON object, got {type(row).__name__}")
    keys = set(row)
    if "conversations" in keys:
        return "sharegpt"
    if "messages" in keys:
        return "openai"
    if "message_tree_id" in keys and isinstance(row.get("prompt"), dict):
        return "oasst"
    if {"message_id", "role", "text"} <= keys:
        return "oasst_flat"
    if {"chosen", "rejected"} <= keys:
        return "pref_pairs" if "instruction" in keys else "hh_rlhf"
    if "instances" in keys:
        return "self_instruct"
    if {"instruction", "context", "response"} <= keys:
        return "dolly"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    raise DataFormatError(f"cannot detect the format from the keys {sorted(keys)}; "
                          f"pass format= one of {', '.join(FORMATS)}")


def _user_text(instruction: str, extra: str) -> str:
    return f"{instruction}\n\n{extra}" if extra else instruction


# --------------------------------------------------------------------------- one row → records
def _alpaca(row, idx, source, **_):
    instruction, inp, output = field(row, "instruction"), field(row, "input", optional=True, default=""), field(row, "output")
    if not isinstance(inp, str):
        raise DataFormatError(f"'input' should be str, got {type(inp).__name__}")
    meta = {"index": idx, "instruction": instruction, "input": inp, "nooutput": NOOUTPUT in output}
    msgs = [{"role": "user", "content": _user_text(instruction, inp)}, {"role": "assistant", "content": output}]
    return [conversation(f"{source}-{idx}", source, msgs, meta)], []


def _dolly(row, idx, source, **_):
    instruction, context, response = field(row, "instruction"), field(row, "context"), field(row, "response")
    category = field(row, "category", optional=True, default="")
    meta = {"index": idx, "instruction": instruction, "input": context, "category": category}
    msgs = [{"role": "user", "content": _user_text(instruction, context)}, {"role": "assistant", "content": response}]
    return [conversation(f"{source}-{idx}", source, msgs, meta)], []


SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant",
                  "assistant": "assistant", "bard": "assistant", "bing": "assistant", "system": "system"}


def _sharegpt(row, idx, source, **_):
    turns = field(row, "conversations", list)
    rid = field(row, "id", (str, int), optional=True, default=f"{source}-{idx}")
    msgs = []
    for k, t in enumerate(turns):
        if not isinstance(t, dict) or "from" not in t or "value" not in t:
            raise DataFormatError(f"turn {k} should be an object with 'from' and 'value'")
        if t["from"] not in SHAREGPT_ROLES:
            raise DataFormatError(f"unknown speaker {t['from']!r} in turn {k} "
                                  f"(expected one of {', '.join(SHAREGPT_ROLES)})")
        if not isinstance(t["value"], str):
            raise DataFormatError(f"turn {k}: 'value' should be str, got {type(t['value']).__name__}")
        msgs.append({"role": SHAREGPT_ROLES[t["from"]], "content": t["value"]})
    if isinstance(row.get("system"), str) and row["system"]:
        msgs.insert(0, {"role": "system", "content": row["system"]})
    return [conversation(str(rid), source, msgs, {"index": idx, "turns": len(turns)})], []


def _openai(row, idx, source, **_):
    raw = field(row, "messages", list)
    msgs = []
    for k, m in enumerate(raw):
        if not isinstance(m, dict):
            raise DataFormatError(f"message {k} should be an object, got {type(m).__name__}")
        for key in ("role", "content"):
            if key not in m:
                raise DataFormatError(f"message {k}: missing key '{key}'")
        msgs.append({"role": m["role"], "content": m["content"]})
    return [conversation(f"{source}-{idx}", source, msgs, {"index": idx})], []


def _self_instruct(row, idx, source, **_):
    rid, instruction = field(row, "id", (str, int), optional=True, default=f"{source}-{idx}"), field(row, "instruction")
    instances = field(row, "instances", list)
    if not instances:
        raise DataFormatError("'instances' is empty: no input/output example")
    out = []
    for k, inst in enumerate(instances):
        if not isinstance(inst, dict):
            raise DataFormatError(f"instance {k} should be an object")
        inp, output = field(inst, "input"), field(inst, "output")
        meta = {"index": idx, "instruction": instruction, "input": inp, "instance": k}
        for key in ("name", "motivation_app", "is_classification"):
            if key in row:
                meta[key] = row[key]
        msgs = [{"role": "user", "content": _user_text(instruction, inp)}, {"role": "assistant", "content": output}]
        out.append(conversation(str(rid) if len(instances) == 1 else f"{rid}#{k}", source, msgs, meta))
    return out, []


_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


def parse_hh_transcript(text: str) -> list[dict]:
    """Split an HH-RLHF transcript ``"\\n\\nHuman: …\\n\\nAssistant: …"`` into messages.

    Contents are stripped of surrounding whitespace. Raises DataFormatError when the text does
    not start with a Human turn. Alternation is checked by :func:`validate_messages`.
    """
    if not isinstance(text, str):
        raise DataFormatError(f"transcript should be str, got {type(text).__name__}")
    if not text.startswith("\n\nHuman:"):
        raise DataFormatError(f"transcript does not start with '\\n\\nHuman:' (starts {text[:20]!r})")
    parts = _HH_TURN.split(text)[1:]          # [speaker, text, speaker, text, ...]
    return [{"role": "user" if who == "Human" else "assistant", "content": body.strip()}
            for who, body in zip(parts[::2], parts[1::2])]


def _hh_rlhf_chosen(row, idx, source, **_):
    msgs = parse_hh_transcript(field(row, "chosen"))
    field(row, "rejected")
    return [conversation(f"{source}-{idx}", source, msgs, {"index": idx, "side": "chosen"})], []


def _pref_pairs_chosen(row, idx, source, **_):
    instruction, inp = field(row, "instruction"), field(row, "input", optional=True, default="")
    chosen = field(row, "chosen")
    field(row, "rejected")
    meta = {"index": idx, "instruction": instruction, "input": inp, "side": "chosen"}
    msgs = [{"role": "user", "content": _user_text(instruction, inp)}, {"role": "assistant", "content": chosen}]
    return [conversation(f"{source}-{idx}", source, msgs, meta)], []


# --------------------------------------------------------------------------- OpenAssistant
def _oasst(row, idx, source, top_only=False, **_):
    root = field(row, "prompt", dict)
    return oasst_threads(dict(root, message_tree_id=row.get("message_tree_id")) if "message_tree_id" in row else root,
                         source=source, index=idx, top_only=top_only)


def _oasst_flat(rows: Sequence[Any], indices: Sequence[int], source: str, top_only: bool,
                errors: str, path) -> tuple[list[dict], list[dict]]:
    """Hub ``OpenAssistant/oasst1`` rows (one message each) → trees → threads."""
    nodes, where = {}, {}

    def collect(row, idx):
        mid = field(row, "message_id")
        field(row, "parent_id", (str, type(None)), optional=True)
        nodes[mid] = dict(row, replies=[])
        where[mid] = idx
        return [], []

    _, rejects = _convert_each(rows, indices, collect, errors, path)
    roots = []
    for mid, node in nodes.items():
        parent = node.get("parent_id")
        if parent is None:
            roots.append(node)
        elif parent in nodes:
            nodes[parent]["replies"].append(node)
        else:
            reason = f"parent message {parent} is not in the data"
            if errors == "raise":
                raise DataFormatError(reason, where[mid], path)
            rejects.extend({"index": where[m], "message_id": m, "reason": reason} for m in subtree_ids(node))
    for node in nodes.values():
        node["replies"].sort(key=rank_key)
    convs = []
    for root in roots:
        try:
            c, r = oasst_threads(root, source=source, index=where[root["message_id"]], top_only=top_only,
                                 index_of=where.__getitem__)
        except DataFormatError as err:
            if errors == "raise":
                raise err.locate(path, where[root["message_id"]])
            rejects.extend({"index": where[m], "message_id": m, "reason": err.reason}
                           for m in subtree_ids(root) if m in where)
            continue
        convs += c
        rejects += r
    return convs, rejects


# --------------------------------------------------------------------------- preference rows
def _hh_rlhf_pair(row, idx, source, **_):
    chosen, rejected = parse_hh_transcript(field(row, "chosen")), parse_hh_transcript(field(row, "rejected"))
    if chosen == rejected:
        raise DataFormatError("chosen and rejected are the same transcript")
    k = 0
    while k < min(len(chosen), len(rejected)) and chosen[k] == rejected[k]:
        k += 1
    # the shared prefix must end on the user's turn; an equal assistant message prefix is shared context
    while k > 0 and chosen[k - 1]["role"] != "user":
        k -= 1
    prompt, c_tail, r_tail = chosen[:k], chosen[k:], rejected[k:]
    if not prompt:
        raise DataFormatError("chosen and rejected differ in the first human turn: no shared prompt")
    validate_messages(prompt + c_tail)
    validate_messages(prompt + r_tail)
    return {"id": f"{source}-{idx}", "source": source, "prompt": prompt, "chosen": c_tail, "rejected": r_tail,
            "meta": {"index": idx}}


def _pref_pairs_pair(row, idx, source, **_):
    instruction, inp = field(row, "instruction"), field(row, "input", optional=True, default="")
    chosen, rejected = field(row, "chosen"), field(row, "rejected")
    prompt = [{"role": "user", "content": _user_text(instruction, inp)}]
    for side, text in (("chosen", chosen), ("rejected", rejected)):
        if not text.strip():
            raise DataFormatError(f"empty {side} response")
    if chosen == rejected:
        raise DataFormatError("chosen and rejected are the same response")
    return {"id": f"{source}-{idx}", "source": source, "prompt": prompt,
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "meta": {"index": idx, "instruction": instruction, "input": inp}}


_RECORD_CONVERTERS = {"alpaca": _alpaca, "dolly": _dolly, "sharegpt": _sharegpt, "openai": _openai,
                      "self_instruct": _self_instruct, "oasst": _oasst, "hh_rlhf": _hh_rlhf_chosen,
                      "pref_pairs": _pref_pairs_chosen}
_PREFERENCE_CONVERTERS = {"hh_rlhf": _hh_rlhf_pair, "pref_pairs": _pref_pairs_pair}


# --------------------------------------------------------------------------- public loaders
def _check_errors_arg(errors: str) -> None:
    if errors not in ("raise", "collect"):
        raise ValueError(f"errors must be 'raise' or 'collect', not {errors!r}")


def _resolve_format(rows, indices, fmt, path) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
        return fmt
    first = next((r for r in rows if not isinstance(r, _InvalidJSON)), None)
    if first is None:
        raise DataFormatError("no record parses as JSON, so the format cannot be detected", None, path)
    try:
        return detect_format(first)
    except DataFormatError as err:
        raise err.locate(path, indices[rows.index(first)]) from None


def _convert_each(rows: Sequence[Any], indices: Sequence[int], convert: Callable, errors: str,
                  path) -> tuple[list, list]:
    """Run ``convert(row, index) -> (items, dropped)`` over every row.

    A DataFormatError raises (``errors="raise"``, with file and record filled in) or becomes a
    reject ``{"index", "reason"}`` (``errors="collect"``); ``dropped`` are rejects a converter
    reports for parts of a row (OpenAssistant messages).
    """
    items, rejects = [], []
    for idx, row in zip(indices, rows):
        try:
            if isinstance(row, _InvalidJSON):
                raise DataFormatError(row.reason)
            if not isinstance(row, dict):
                raise DataFormatError(f"expected a JSON object, got {type(row).__name__}")
            got, dropped = convert(row, idx)
        except DataFormatError as err:
            if errors == "raise":
                raise err.locate(path, idx) from None
            rejects.append({"index": idx, "reason": err.reason})
            continue
        items += got
        rejects += dropped
    return items, rejects


def convert_records(rows: Iterable[Any], format: str, *, source: str | None = None, errors: str = "raise",
                    top_only: bool = False, indices: Sequence[int] | None = None, path=None):
    """Convert already-parsed rows (e.g. from ``datasets.load_dataset``) to conversations.

    Same contract as :func:`load_records`; ``indices`` label the rows (default 0, 1, …).
    """
    _check_errors_arg(errors)
    rows = list(rows)
    indices = list(range(len(rows))) if indices is None else list(indices)
    format = _resolve_format(rows, indices, format, path)
    source = source or format
    if format == "oasst_flat":
        records, rejects = _oasst_flat(rows, indices, source, top_only, errors, path)
    else:
        convert = _RECORD_CONVERTERS[format]
        records, rejects = _convert_each(rows, indices, lambda row, idx: convert(row, idx, source, top_only=top_only),
                                         errors, path)
    if errors == "collect":
        return records, rejects
    if rejects:  # only structural leftovers (e.g. OpenAssistant prompts nobody answered) get here
        reasons = defaultdict(int)
        for r in rejects:
            reasons[r["reason"]] += 1
        summary = "; ".join(f"{n} × {reason}" for reason, n in reasons.items())
        warnings.warn(f"{path or source}: {len(rejects)} message(s) left out: {summary}. "
                      "Use errors='collect' to list them.", stacklevel=3)
    return records


def load_records(path: str | Path, format: str | None = None, errors: str = "raise", *,
                 source: str | None = None, top_only: bool = False):
    """Load an instruction/chat dataset file into conversations (see the module docstring).

    Args:
        format: one of :data:`FORMATS`; ``None`` detects it from the first record.
        errors: ``"raise"`` → list of conversations, or DataFormatError at the first bad record;
            ``"collect"`` → ``(records, rejects)``, every bad record in ``rejects``.
        source: the ``source`` field of every record (default: the format name).
        top_only: OpenAssistant only — follow just the top-ranked reply at each level.

    Preference files load their *chosen* side (what SFT on preference data trains on).
    """
    _check_errors_arg(errors)
    rows, indices = read_rows(path)
    return convert_records(rows, format, source=source, errors=errors, top_only=top_only,
                           indices=indices, path=path)


def convert_preferences(rows: Iterable[Any], format: str, *, source: str | None = None,
                        errors: str = "raise", indices: Sequence[int] | None = None, path=None):
    """Already-parsed preference rows → ``{"id", "source", "prompt", "chosen", "rejected", "meta"}``."""
    _check_errors_arg(errors)
    rows = list(rows)
    indices = list(range(len(rows))) if indices is None else list(indices)
    format = _resolve_format(rows, indices, format, path)
    if format not in _PREFERENCE_CONVERTERS:
        raise DataFormatError(f"format '{format}' has no preference pairs (expected one of "
                              f"{', '.join(PREFERENCE_FORMATS)})", None, path)
    source, convert = source or format, _PREFERENCE_CONVERTERS[format]
    pairs, rejects = _convert_each(rows, indices, lambda row, idx: ([convert(row, idx, source)], []), errors, path)
    return (pairs, rejects) if errors == "collect" else pairs


def load_preferences(path: str | Path, format: str | None = None, errors: str = "raise", *,
                     source: str | None = None):
    """Load preference pairs. HH-RLHF transcripts are split at their shared prefix (the prompt
    is every message up to the last shared user turn); for the preference-pair JSON the prompt
    is the instruction plus input. Same ``errors`` contract as :func:`load_records`."""
    _check_errors_arg(errors)
    rows, indices = read_rows(path)
    return convert_preferences(rows, format, source=source, errors=errors, indices=indices, path=path)


def save_jsonl(records: Iterable[dict], path: str | Path) -> int:
    """Write one JSON object per line (UTF-8, non-ASCII kept); returns the number written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n
