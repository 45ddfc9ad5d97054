"""Instruction and preference datasets in their real formats → one schema.

Every loader returns conversations in one shape::

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
"""
from __future__ import annotations

import hashlib
import json
import re
import warnings
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


ROLES = ("system", "user", "assistant")
FORMATS = ("alpaca", "dolly", "sharegpt", "openai", "self_instruct", "oasst", "oasst_flat",
           "hh_rlhf", "pref_pairs")
PREFERENCE_FORMATS = ("hh_rlhf", "pref_pairs")
NOOUTPUT = "<nooutput>"


class DataFormatError(Exception):
    """A record that does not fit its format.

    Attributes:
        index: 0-based record (JSON array) or line (JSONL) number; None for the whole file.
        reason: what is wrong, in words.
        path: the file, when known.
    """

    def __init__(self, reason: str, index: int | None = None, path: str | Path | None = None):
        self.reason, self.index, self.path = reason, index, (str(path) if path is not None else None)
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"{self.path}: " if self.path else ""
        what = "" if self.index is None else f"record {self.index}: "
        return f"{where}{what}{self.reason}"

    def locate(self, path: str | Path | None = None, index: int | None = None) -> "DataFormatError":
        """The same error with the file and record filled in (when they were unknown)."""
        return DataFormatError(self.reason, self.index if self.index is not None else index,
                               self.path if self.path is not None else path)


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


# --------------------------------------------------------------------------- validation
def _get(row: dict, key: str, typ: type | tuple = str, *, optional: bool = False, default: Any = None):
    if key not in row:
        if optional:
            return default
        raise DataFormatError(f"missing key '{key}'")
    value = row[key]
    if not isinstance(value, typ):
        names = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise DataFormatError(f"'{key}' should be {names}, got {type(value).__name__}")
    return value


def validate_messages(messages: Any, *, complete: bool = True) -> None:
    """Check one conversation; raise DataFormatError saying what is wrong.

    Valid: an optional first ``system`` message, then ``user`` and ``assistant`` strictly
    alternating, starting with ``user`` and ending with ``assistant``; no empty user or
    assistant content. (OpenAI's data-validation cookbook likewise counts a conversation
    without a user message as an error.)

    ``complete=False`` checks a prompt instead (what :func:`utils.chat.render` accepts): the
    same roles and order, but it may end with a user turn and contents may be empty.
    The course's one role validator: loaders, checkers and templates all call it.
    """
    if not isinstance(messages, list) or not messages:
        raise DataFormatError("a conversation needs a non-empty list of messages")
    for k, m in enumerate(messages):
        if not isinstance(m, dict):
            raise DataFormatError(f"message {k} should be an object, got {type(m).__name__}")
        if m.get("role") not in ROLES:
            raise DataFormatError(f"unknown role {m.get('role')!r} in message {k} (expected one of {', '.join(ROLES)})")
        if not isinstance(m.get("content"), str):
            raise DataFormatError(f"message {k} ({m['role']}): content should be str, "
                                  f"got {type(m.get('content')).__name__}")
    roles = [m["role"] for m in messages]
    if "system" in roles[1:]:
        raise DataFormatError(f"system message at position {roles.index('system', 1)}; only the first "
                              "message may be a system message")
    turns = roles[1:] if roles[0] == "system" else roles
    if complete and "assistant" not in turns:
        raise DataFormatError("no assistant turn: nothing to train on")
    if complete and "user" not in turns:
        raise DataFormatError("no user turn: the conversation has a system message and an assistant reply "
                              "but no request")
    offset = len(roles) - len(turns)
    for k, role in enumerate(turns):
        expected = "user" if k % 2 == 0 else "assistant"
        if role != expected:
            prev = f"after '{turns[k - 1]}'" if k else "first"
            raise DataFormatError(f"roles do not alternate: message {k + offset} is '{role}' {prev}, "
                                  f"expected '{expected}'")
    if not complete:
        return
    if turns[-1] != "assistant":
        raise DataFormatError("the conversation ends with a user turn: no reply to train on")
    for k, m in enumerate(messages):
        if m["role"] != "system" and not m["content"].strip():
            raise DataFormatError(f"empty {m['role']} turn (message {k})")


def _conv(rid: str, source: str, messages: list[dict], meta: dict) -> dict:
    validate_messages(messages)
    return {"id": rid, "source": source, "messages": messages, "meta": meta}


def _user_text(instruction: str, extra: str) -> str:
    return f"{instruction}\n\n{extra}" if extra else instruction


# --------------------------------------------------------------------------- one row → records
def _alpaca(row, idx, source, **_):
    instruction, inp, output = _get(row, "instruction"), _get(row, "input", optional=True, default=""), _get(row, "output")
    if not isinstance(inp, str):
        raise DataFormatError(f"'input' should be str, got {type(inp).__name__}")
    meta = {"index": idx, "instruction": instruction, "input": inp, "nooutput": NOOUTPUT in output}
    msgs = [{"role": "user", "content": _user_text(instruction, inp)}, {"role": "assistant", "content": output}]
    return [_conv(f"{source}-{idx}", source, msgs, meta)], []


def _dolly(row, idx, source, **_):
    instruction, context, response = _get(row, "instruction"), _get(row, "context"), _get(row, "response")
    category = _get(row, "category", optional=True, default="")
    meta = {"index": idx, "instruction": instruction, "input": context, "category": category}
    msgs = [{"role": "user", "content": _user_text(instruction, context)}, {"role": "assistant", "content": response}]
    return [_conv(f"{source}-{idx}", source, msgs, meta)], []


SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant",
                  "assistant": "assistant", "bard": "assistant", "bing": "assistant", "system": "system"}


def _sharegpt(row, idx, source, **_):
    turns = _get(row, "conversations", list)
    rid = _get(row, "id", (str, int), optional=True, default=f"{source}-{idx}")
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
    return [_conv(str(rid), source, msgs, {"index": idx, "turns": len(turns)})], []


def _openai(row, idx, source, **_):
    raw = _get(row, "messages", list)
    msgs = []
    for k, m in enumerate(raw):
        if not isinstance(m, dict):
            raise DataFormatError(f"message {k} should be an object, got {type(m).__name__}")
        for key in ("role", "content"):
            if key not in m:
                raise DataFormatError(f"message {k}: missing key '{key}'")
        msgs.append({"role": m["role"], "content": m["content"]})
    return [_conv(f"{source}-{idx}", source, msgs, {"index": idx})], []


def _self_instruct(row, idx, source, **_):
    rid, instruction = _get(row, "id", (str, int), optional=True, default=f"{source}-{idx}"), _get(row, "instruction")
    instances = _get(row, "instances", list)
    if not instances:
        raise DataFormatError("'instances' is empty: no input/output example")
    out = []
    for k, inst in enumerate(instances):
        if not isinstance(inst, dict):
            raise DataFormatError(f"instance {k} should be an object")
        inp, output = _get(inst, "input"), _get(inst, "output")
        meta = {"index": idx, "instruction": instruction, "input": inp, "instance": k}
        for key in ("name", "motivation_app", "is_classification"):
            if key in row:
                meta[key] = row[key]
        msgs = [{"role": "user", "content": _user_text(instruction, inp)}, {"role": "assistant", "content": output}]
        out.append(_conv(str(rid) if len(instances) == 1 else f"{rid}#{k}", source, msgs, meta))
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


def _hh_rlhf(row, idx, source, **_):
    msgs = parse_hh_transcript(_get(row, "chosen"))
    _get(row, "rejected")
    return [_conv(f"{source}-{idx}", source, msgs, {"index": idx, "side": "chosen"})], []


def _pref_pairs(row, idx, source, **_):
    instruction, inp = _get(row, "instruction"), _get(row, "input", optional=True, default="")
    chosen = _get(row, "chosen")
    _get(row, "rejected")
    meta = {"index": idx, "instruction": instruction, "input": inp, "side": "chosen"}
    msgs = [{"role": "user", "content": _user_text(instruction, inp)}, {"role": "assistant", "content": chosen}]
    return [_conv(f"{source}-{idx}", source, msgs, meta)], []


# --------------------------------------------------------------------------- OpenAssistant trees
OASST_ROLES = {"prompter": "user", "assistant": "assistant"}


def _check_tree(node: Any, depth: int = 0) -> None:
    if not isinstance(node, dict):
        raise DataFormatError(f"message at depth {depth} should be an object")
    mid = node.get("message_id", "?")
    for key, typ in (("message_id", str), ("text", str), ("role", str)):
        if not isinstance(node.get(key), typ):
            raise DataFormatError(f"message {mid}: '{key}' missing or not {typ.__name__}")
    expected = "prompter" if depth % 2 == 0 else "assistant"
    if node["role"] not in OASST_ROLES:
        raise DataFormatError(f"message {mid}: unknown role {node['role']!r} (expected prompter or assistant)")
    if node["role"] != expected:
        raise DataFormatError(f"message {mid}: roles do not alternate: '{node['role']}' at depth {depth}, "
                              f"expected '{expected}'")
    if not isinstance(node.get("replies", []), list):
        raise DataFormatError(f"message {mid}: 'replies' should be a list")
    for child in node.get("replies", []):
        _check_tree(child, depth + 1)


def _subtree_ids(node: dict) -> list[str]:
    out = [node["message_id"]]
    for child in node.get("replies", []):
        out += _subtree_ids(child)
    return out


def _rank(node: dict) -> int | None:
    """The reply's rank (0 = best), or None when unranked (missing, None or NaN in Hub exports)."""
    rank = node.get("rank")
    if isinstance(rank, float) and rank == rank and rank.is_integer():
        rank = int(rank)
    return rank if isinstance(rank, int) and not isinstance(rank, bool) else None


def _rank_key(node: dict) -> tuple:
    rank = _rank(node)
    return (rank is None, rank if rank is not None else 0)


def oasst_threads(root: dict, *, source: str, index: int, top_only: bool = False,
                  index_of: Callable[[str], int] | None = None) -> tuple[list[dict], list[dict]]:
    """Turn one OpenAssistant message tree into conversations.

    One conversation per root-to-leaf thread, cut after its last assistant message: a
    thread must end with an assistant turn, so prompter messages that never got an
    assistant reply are left out and reported ("no assistant reply"). Deleted messages
    and everything below them are left out and reported too. With ``top_only`` only the
    best-ranked reply (rank 0; unranked replies count as worst, ties keep file order) is
    followed at each level; the other replies are reported as "not the top-ranked reply".

    Returns ``(conversations, rejects)``; rejects carry ``index``, ``reason`` and ``message_id``.
    ``meta["messages_meta"]`` keeps ``message_id``, ``rank``, ``synthetic`` and ``lang`` of each message.
    """
    _check_tree(root)
    index_of = index_of or (lambda _mid: index)
    convs, rejects = [], []

    def drop(node, reason):
        for mid in _subtree_ids(node):
            rejects.append({"index": index_of(mid), "message_id": mid, "reason": reason})

    def emit(path):
        msgs = [{"role": OASST_ROLES[n["role"]], "content": n["text"]} for n in path]
        meta = {"index": index, "tree_id": root.get("message_tree_id", root["message_id"]),
                "lang": root.get("lang"),
                "messages_meta": [{"message_id": n["message_id"], "rank": _rank(n),
                                   "synthetic": n.get("synthetic"), "lang": n.get("lang")} for n in path]}
        convs.append(_conv(path[-1]["message_id"], source, msgs, meta))

    def visit(node, path) -> bool:
        if node.get("deleted"):
            drop(node, "deleted message (or a reply below one)")
            return False
        path = path + [node]
        children = list(node.get("replies", []))
        if top_only and len(children) > 1:
            best = min(children, key=_rank_key)
            for c in children:
                if c is not best:
                    drop(c, f"not the top-ranked reply (rank {_rank(c)})")
            children = [best]
        emitted = False
        for child in children:
            emitted |= visit(child, path)
        if emitted:
            return True
        if node["role"] == "assistant":
            emit(path)
            return True
        rejects.append({"index": index_of(node["message_id"]), "message_id": node["message_id"],
                        "reason": "prompter message with no assistant reply (a thread must end with an "
                                  "assistant turn)"})
        return False

    visit(root, [])
    return convs, rejects


def _oasst(row, idx, source, top_only=False, **_):
    root = _get(row, "prompt", dict)
    return oasst_threads(dict(root, message_tree_id=row.get("message_tree_id")) if "message_tree_id" in row else root,
                         source=source, index=idx, top_only=top_only)


def _oasst_flat(rows: Sequence[Any], indices: Sequence[int], source: str, top_only: bool,
                errors: str, path) -> tuple[list[dict], list[dict]]:
    """Hub ``OpenAssistant/oasst1`` rows (one message each) → trees → threads."""
    nodes, where = {}, {}

    def collect(row, idx):
        mid = _get(row, "message_id")
        _get(row, "parent_id", (str, type(None)), optional=True)
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
            rejects.extend({"index": where[m], "message_id": m, "reason": reason} for m in _subtree_ids(node))
    for node in nodes.values():
        node["replies"].sort(key=_rank_key)
    convs = []
    for root in roots:
        try:
            c, r = oasst_threads(root, source=source, index=where[root["message_id"]], top_only=top_only,
                                 index_of=where.__getitem__)
        except DataFormatError as err:
            if errors == "raise":
                raise err.locate(path, where[root["message_id"]])
            rejects.extend({"index": where[m], "message_id": m, "reason": err.reason}
                           for m in _subtree_ids(root) if m in where)
            continue
        convs += c
        rejects += r
    return convs, rejects


# --------------------------------------------------------------------------- preference rows
def _hh_pair(row, idx, source, **_):
    chosen, rejected = parse_hh_transcript(_get(row, "chosen")), parse_hh_transcript(_get(row, "rejected"))
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


def _pref_pair(row, idx, source, **_):
    instruction, inp = _get(row, "instruction"), _get(row, "input", optional=True, default="")
    chosen, rejected = _get(row, "chosen"), _get(row, "rejected")
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
                      "self_instruct": _self_instruct, "oasst": _oasst, "hh_rlhf": _hh_rlhf,
                      "pref_pairs": _pref_pairs}
_PREFERENCE_CONVERTERS = {"hh_rlhf": _hh_pair, "pref_pairs": _pref_pair}


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


# --------------------------------------------------------------------------- quality tools
def normalise(text: str) -> str:
    """Lower-case, drop punctuation, collapse whitespace: the key for exact-duplicate checks."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def exact_duplicates(texts: Sequence[str]) -> list[tuple[int, int]]:
    """Pairs ``(first, later)`` whose normalised texts are equal (each later copy once)."""
    seen, pairs = {}, []
    for i, t in enumerate(texts):
        key = normalise(t)
        if key in seen:
            pairs.append((seen[key], i))
        else:
            seen[key] = i
    return pairs


def ngrams(text: str, n: int = 3) -> set[tuple[str, ...]]:
    words = normalise(text).split()
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _gram_hashes(text: str, n: int) -> np.ndarray:
    """The text's word n-grams as sorted, unique 32-bit hashes, stable across runs and machines.

    CRC-32 of similar strings is itself similar (it is linear over bits), so it is scrambled with
    splitmix64's finaliser before MinHash uses it.
    """
    x = np.fromiter((zlib.crc32(" ".join(g).encode()) for g in ngrams(text, n)), dtype=np.uint64)
    with np.errstate(over="ignore"):                 # multiplication modulo 2⁶⁴ is the point
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return np.unique(x >> np.uint64(32))


def minhash_signatures(hashes: Sequence[np.ndarray], num_perm: int = 128, seed: int = 0) -> np.ndarray:
    """MinHash signatures, shape ``(len(hashes), num_perm)``: row i, column k = min over text i's n-gram
    hashes x of h_k(x) = (a_k·x + b_k) mod (2³¹ − 1).

    For two texts, the chance that one column agrees equals their Jaccard similarity (Broder, 1997),
    so a signature is a 128-number sketch of a set of any size. An empty set gets a row of −1.
    """
    prime = np.uint64(2**31 - 1)
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**31 - 1, num_perm, dtype=np.uint64)
    b = rng.integers(0, 2**31 - 1, num_perm, dtype=np.uint64)
    out = np.full((len(hashes), num_perm), -1, dtype=np.int64)
    for i, x in enumerate(hashes):
        if len(x):      # a·x < 2³¹·2³² fits in uint64
            out[i] = ((x[:, None] * a[None, :] + b[None, :]) % prime).min(axis=0)
    return out


def near_duplicates(texts: Sequence[str], n: int = 3, threshold: float = 0.7, *, bands: int = 32, rows: int = 4,
                    max_bucket: int = 1000, seed: int = 0) -> list[tuple[int, int, float]]:
    """Pairs of texts whose word n-gram sets have Jaccard similarity ≥ ``threshold``.

    Comparing all n²/2 pairs is out of reach for a corpus of 100 000 prompts, so candidates come from
    **MinHash + locality-sensitive hashing** (Leskovec, Rajaraman & Ullman, *Mining of Massive
    Datasets*, ch. 3): each signature (:func:`minhash_signatures`, ``bands × rows`` numbers) is cut into
    ``bands`` bands; two texts become a candidate pair if any band is identical. A pair with
    similarity J is found with probability 1 − (1 − J^rows)^bands: with 32 bands of 4 rows,
    0.9998 at J = 0.7, 0.87 at J = 0.5, 0.23 at J = 0.3. Every candidate is then checked with the
    exact Jaccard similarity, so no pair below ``threshold`` is returned (a pair above it is missed
    with the small probability above). Buckets larger than ``max_bucket`` (texts that share a band
    with hundreds of others: boilerplate) do not create candidates. Texts without words are skipped.

    Returns ``(i, j, similarity)`` with ``i < j``, most similar first.
    """
    hashes = [_gram_hashes(t, n) for t in texts]
    signatures = minhash_signatures(hashes, bands * rows, seed)
    candidates: set[tuple[int, int]] = set()
    for band in range(bands):
        buckets = defaultdict(list)
        for i, row in enumerate(signatures[:, band * rows:(band + 1) * rows]):
            if len(hashes[i]):
                buckets[row.tobytes()].append(i)
        for ids in buckets.values():
            if 1 < len(ids) <= max_bucket:
                candidates.update((a, b) for k, a in enumerate(ids) for b in ids[k + 1:])
    pairs = []
    for i, j in candidates:
        common = len(np.intersect1d(hashes[i], hashes[j], assume_unique=True))
        similarity = common / (len(hashes[i]) + len(hashes[j]) - common)
        if similarity >= threshold:
            pairs.append((i, j, similarity))
    return sorted(pairs, key=lambda p: (-p[2], p[0], p[1]))


def split_records(records: Sequence[dict], fractions: Sequence[float] = (0.85, 0.05, 0.10),
                  seed: int = 0) -> tuple[list[dict], ...]:
    """Deterministic split by a hash of ``(seed, id)``: the same record always lands in the same
    split, whatever the order or the other records (so adding data never reshuffles old data).
    """
    if abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must sum to 1, got {sum(fractions)}")
    bounds, acc = [], 0.0
    for f in fractions:
        acc += f
        bounds.append(acc)
    out = tuple([] for _ in fractions)
    for rec in records:
        h = int.from_bytes(hashlib.sha256(f"{seed}:{rec['id']}".encode()).digest()[:8], "big") / 2**64
        k = next(i for i, b in enumerate(bounds) if h < b or i == len(bounds) - 1)
        out[k].append(rec)
    return out


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


def download(url: str, target: str | Path, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``target`` once (an existing file is reused) and return the path.

    Fails with a clear message after ``timeout`` seconds without an answer, instead of hanging;
    a partial file is never left behind. Rehearsal (``COURSE_REHEARSAL=1``): the course's one URL maps
    to its shipped sample cycled to the real record count (:func:`utils.rehearsal.url_fixture`; returned
    from ``build/rehearsal_data/urls/``, ``target`` is left alone); any other URL is an error.
    """
    import urllib.request

    from .env import rehearsal
    if rehearsal():
        from .rehearsal import url_fixture
        return url_fixture(url)
    target = Path(target)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, partial.open("wb") as f:
            while chunk := response.read(1 << 20):
                f.write(chunk)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"Could not download {url} ({type(err).__name__}: {err}). Full mode needs internet "
                           "access: connect, or set COURSE_FAST=1 to use the shipped samples.") from err
    partial.replace(target)
    return target


def load_json(source: str | Path, download_to: str | Path) -> Any:
    """Parse a JSON file given as a local path, or as an ``https://`` URL fetched once into
    ``download_to`` (:func:`download`: a clear error with a timeout when offline; in rehearsal the
    shipped stand-in)."""
    if str(source).startswith(("https://", "http://")):
        source = download(str(source), download_to)
    return json.loads(Path(source).read_text(encoding="utf-8"))


def load_hub_dataset(path: str, split: str, *, data_dir: str | None = None):
    """A split of a Hugging Face Hub dataset as a ``datasets.Dataset`` (``split`` may slice: ``"train[:4600]"``).

    Full mode: asks whether the Hub is reachable first and fails within seconds with a plain message
    (instead of the datasets client's retries), then ``datasets.load_dataset(path, data_dir=data_dir, split=split)``.
    Rehearsal (``COURSE_REHEARSAL=1``): a local fixture with exactly the Hub dataset's columns, feature types
    and row counts, built from the real samples in ``data/realdata/`` (:func:`utils.rehearsal.hub_fixture`).

    Raises:
        utils.models.HubUnavailableError: full mode and the Hub cannot be reached (or offline mode is on).
    """
    from .env import env_flag, rehearsal
    if rehearsal():
        from .rehearsal import hub_fixture
        return hub_fixture(path, split, data_dir)
    from .models import HubUnavailableError, hub_reachable
    if env_flag("HF_DATASETS_OFFLINE") or not hub_reachable():
        raise HubUnavailableError(
            f"The dataset {path!r} comes from the Hugging Face Hub, which cannot be reached from here "
            "(or HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set). Connect to the internet, or set COURSE_FAST=1 "
            "to run the course offline on the shipped samples.")
    from datasets import load_dataset
    return load_dataset(path, data_dir=data_dir, split=split)
