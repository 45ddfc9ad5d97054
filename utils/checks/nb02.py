"""Notebook 02 — datasets: a converter from a new format to the course's schema.

Each ``check_*`` prints the verdict for the learner (see :mod:`utils.checks.feedback`); each ``*_problems``
returns what is wrong, for the tests.
"""
from __future__ import annotations

from ..schema import DataFormatError, validate_messages
from .feedback import NotAttempted, verdict


#: A small "Q&A forum" format for the converter exercise of notebook 02.
FORUM_ROWS = [
    {"question": {"title": "How do I reverse a list in Python?", "body": "I have [1, 2, 3]."},
     "answers": [{"text": "Call reversed(my_list).", "votes": 12}, {"text": "Use my_list[::-1].", "votes": 30}],
     "site": "stackoverflow"},
    {"question": {"title": "What is the boiling point of water at sea level?", "body": ""},
     "answers": [{"text": "100 °C (212 °F).", "votes": 7}], "site": "physics"},
    {"question": {"title": "Best first programming language?", "body": "For a child of ten."},
     "answers": [{"text": "Scratch, then Python.", "votes": 5}, {"text": "Python.", "votes": 5}],
     "site": "softwareengineering"},
    {"question": {"title": "Why is the sky blue?", "body": ""}, "answers": [], "site": "physics"},
]


_FORUM_HINT = "write convert_forum(row, index) and run this cell again."


def _forum_expected(row: dict, index: int) -> dict:
    q = row["question"]
    best = max(row["answers"], key=lambda a: a["votes"])        # max() keeps the first of equal votes
    user = f"{q['title']}\n\n{q['body']}" if q["body"] else q["title"]
    return {"id": f"forum-{index}", "source": "forum",
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": best["text"]}],
            "meta": {"index": index, "site": row["site"], "votes": best["votes"]}}


def forum_converter_problems(convert) -> list[str]:
    """Problems with a learner's ``convert(row, index) -> record`` for :data:`FORUM_ROWS`."""
    problems = []
    for index, row in enumerate(FORUM_ROWS):
        if not row["answers"]:
            try:
                got = convert(row, index)
            except NotImplementedError:
                raise NotAttempted(_FORUM_HINT) from None
            except DataFormatError as err:
                if err.index not in (None, index):
                    problems.append(f"row {index}: the DataFormatError names record {err.index}, not {index}")
                continue
            except Exception as err:  # noqa: BLE001 - we report what the learner raised
                problems.append(f"row {index} has no answers: raise DataFormatError (from utils.schema), "
                                f"not {type(err).__name__}")
                continue
            problems.append(f"row {index} has no answers, but your converter returned a record; raise "
                            "DataFormatError so the row is rejected with a reason instead of silently kept")
            continue
        expected = _forum_expected(row, index)
        try:
            got = convert(row, index)
        except NotImplementedError:
            raise NotAttempted(_FORUM_HINT) from None
        except Exception as err:  # noqa: BLE001
            problems.append(f"row {index}: your converter raised {type(err).__name__}: {err}")
            continue
        if not isinstance(got, dict) or "messages" not in got:
            problems.append(f"row {index}: return a dict with id, source, messages and meta, got {type(got).__name__}")
            continue
        try:
            validate_messages(got["messages"])
        except DataFormatError as err:
            problems.append(f"row {index}: the messages are not a valid conversation: {err.reason}")
            continue
        user, reply = got["messages"][0]["content"], got["messages"][-1]["content"]
        if user != expected["messages"][0]["content"]:
            problems.append(f"row {index}: user content should be {expected['messages'][0]['content']!r}, got "
                            f"{user!r} (title, a blank line, then the body — just the title when the body is empty)")
        if reply != expected["messages"][1]["content"]:
            votes = {a["text"]: a["votes"] for a in row["answers"]}
            picked = f" (it has {votes[reply]} votes)" if reply in votes else ""
            problems.append(f"row {index}: the assistant reply should be the most-voted answer "
                            f"{expected['messages'][1]['content']!r} ({expected['meta']['votes']} votes; on a tie the "
                            f"first listed), got {reply!r}{picked}")
        for key in ("id", "source"):
            if got.get(key) != expected[key]:
                problems.append(f"row {index}: {key} should be {expected[key]!r}, got {got.get(key)!r}")
        meta = got.get("meta", {})
        for key, value in expected["meta"].items():
            if meta.get(key) != value:
                problems.append(f"row {index}: meta[{key!r}] should be {value!r}, got {meta.get(key)!r}")
    return problems


def check_forum_converter(convert) -> bool:
    """Print feedback on notebook 02's converter exercise (:data:`FORUM_ROWS` → records); True when right."""
    return verdict(forum_converter_problems, convert,
                   success=f"✅ Correct: {len(FORUM_ROWS) - 1} rows converted, the row without answers rejected with a reason.")
