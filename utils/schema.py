"""The one schema every loader returns, its validator and its error.

A conversation record is ``{"id": str, "source": str, "messages": [{"role", "content"}, ...], "meta": dict}``
(the formats that become it are listed in :mod:`utils.data`). Introduced in notebook 02; :func:`validate_messages`
is the course's one role validator — loaders, checkers and :func:`utils.chat.render` all call it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

ROLES = ("system", "user", "assistant")


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


def field(row: dict, key: str, typ: type | tuple = str, *, optional: bool = False, default: Any = None):
    """``row[key]``, checked to be a ``typ``; a missing or mistyped key raises DataFormatError naming it
    (``optional=True``: a missing key gives ``default``)."""
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


def conversation(rid: str, source: str, messages: list[dict], meta: dict) -> dict:
    """A record of the schema, its messages validated first."""
    validate_messages(messages)
    return {"id": rid, "source": source, "messages": messages, "meta": meta}
