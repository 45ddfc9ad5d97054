"""OpenAssistant message trees → conversations: one per root-to-leaf thread.

Introduced in notebook 02 (the ``oasst`` export and the Hub's ``OpenAssistant/oasst1`` rows, both loaded by
:mod:`utils.data`). A tree alternates prompter and assistant messages; every message that ends up in no
thread (deleted, unanswered, or not the top-ranked reply) is reported with its reason.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .schema import DataFormatError, conversation

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


def subtree_ids(node: dict) -> list[str]:
    """The ids of ``node`` and of every reply below it, depth first."""
    out = [node["message_id"]]
    for child in node.get("replies", []):
        out += subtree_ids(child)
    return out


def _rank(node: dict) -> int | None:
    """The reply's rank (0 = best), or None when unranked (missing, None or NaN in Hub exports)."""
    rank = node.get("rank")
    if isinstance(rank, float) and rank == rank and rank.is_integer():
        rank = int(rank)
    return rank if isinstance(rank, int) and not isinstance(rank, bool) else None


def rank_key(node: dict) -> tuple:
    """Sort key of replies: best rank first, unranked last."""
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
        for mid in subtree_ids(node):
            rejects.append({"index": index_of(mid), "message_id": mid, "reason": reason})

    def emit(path):
        msgs = [{"role": OASST_ROLES[n["role"]], "content": n["text"]} for n in path]
        meta = {"index": index, "tree_id": root.get("message_tree_id", root["message_id"]),
                "lang": root.get("lang"),
                "messages_meta": [{"message_id": n["message_id"], "rank": _rank(n),
                                   "synthetic": n.get("synthetic"), "lang": n.get("lang")} for n in path]}
        convs.append(conversation(path[-1]["message_id"], source, msgs, meta))

    def visit(node, path) -> bool:
        if node.get("deleted"):
            drop(node, "deleted message (or a reply below one)")
            return False
        path = path + [node]
        children = list(node.get("replies", []))
        if top_only and len(children) > 1:
            best = min(children, key=rank_key)
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
