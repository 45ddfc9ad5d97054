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


# =========================================================================== "which filter removed it?"
def _case(cid: str, prompt: str, reply: str) -> dict:
    return {"id": cid, "source": "exercise", "messages": [{"role": "user", "content": prompt},
                                                          {"role": "assistant", "content": reply}], "meta": {}}


#: Seven records, in corpus order, for notebook 02's diagnosis exercise: which of section 5's filters removes each?
FILTER_CASES = [
    _case("A", "Name the three primary colours.", "Red, yellow and blue."),
    _case("B", "Draw a picture of a cat.", "<nooutput>"),
    _case("C", "name the three primary colours!", "Red, yellow and blue."),
    _case("D", "Give three verbs that mean the same as 'to run'.", "Sprint, dash and jog."),
    _case("E", "Give three verbs that mean the same as 'to eat'.", "Consume, devour and dine."),
    _case("F", "What is the boiling point of water at sea level in Celsius?",
          "Water boils at 100 degrees Celsius at sea level."),
    _case("G", "What is the boiling point of water at sea level?", "Water boils at 100 degrees Celsius at sea level."),
]

#: The answers a learner may give for each record.
FILTER_OUTCOMES = ("kept", "empty", "over_length", "exact_duplicate", "near_duplicate")

_DIAGNOSIS_HINT = ("set FILTER_PREDICTIONS[id] to one of " + ", ".join(map(repr, FILTER_OUTCOMES))
                   + " for every record, and PROMPT_ONLY_MISTAKE to a record id, then run this cell again.")


def _prompt(r: dict) -> str:
    return "\n".join(m["content"] for m in r["messages"][:-1])


def _reply(r: dict) -> str:
    return r["messages"][-1]["content"]


def _similarity(a: str, b: str) -> float:
    from ..quality import jaccard, ngrams
    return jaccard(ngrams(a, 3), ngrams(b, 3))


def filter_case_outcomes(near_threshold: float = 0.7, reply_threshold: float = 0.4, *,
                         check_replies: bool = True) -> dict[str, str]:
    """What section 5's filters do to :data:`FILTER_CASES`, computed with the course's own functions:
    ``{id: "kept" | "empty" | "exact_duplicate" | "near_duplicate"}`` (none of the cases is over-length).
    ``check_replies=False`` is the prompt-only near-duplicate rule (no reply check)."""
    from ..data import NOOUTPUT
    from ..quality import exact_duplicates, near_duplicates
    out, alive = {}, []
    for r in FILTER_CASES:
        if not _reply(r).strip() or NOOUTPUT in _reply(r):
            out[r["id"]] = "empty"
        else:
            alive.append(r)
    later = {j for _, j in exact_duplicates([_prompt(r) + "\n" + _reply(r) for r in alive])}
    out.update({alive[j]["id"]: "exact_duplicate" for j in later})
    alive = [r for k, r in enumerate(alive) if k not in later]
    for i, j, _ in near_duplicates([_prompt(r) for r in alive], n=3, threshold=near_threshold):
        if not check_replies or _similarity(_reply(alive[i]), _reply(alive[j])) >= reply_threshold:
            out[alive[j]["id"]] = "near_duplicate"
    return {r["id"]: out.get(r["id"], "kept") for r in FILTER_CASES}


def _wrong_prediction(cid: str, guess: str, truth: str) -> str:
    """Feedback naming the mistake behind a wrong guess for record ``cid``."""
    by_id = {r["id"]: r for r in FILTER_CASES}
    r = by_id[cid]
    if guess not in FILTER_OUTCOMES:
        return f"{cid}: {guess!r} is not one of {', '.join(map(repr, FILTER_OUTCOMES))}"
    if guess == "over_length":
        return (f"{cid}: the whole conversation is {len((_prompt(r) + ' ' + _reply(r)).split())} words — far below "
                "the 1,024-token window; no record here is over-long")
    if truth == "empty":
        return (f"{cid}: its reply is {_reply(r)!r} — not empty, but Alpaca's marker for 'a text model cannot do "
                "this'. Filter 1 removes replies that are empty *or* <nooutput>")
    if truth == "exact_duplicate":
        first = next(o["id"] for o in FILTER_CASES if o["id"] < cid and _similarity(_prompt(o), _prompt(r)) == 1.0)
        if guess == "near_duplicate":
            return (f"{cid}: it differs from {first} only in capitals and punctuation. Normalisation (lower-case, no "
                    f"punctuation) makes the two identical, so filter 3 (exact duplicates) removes {cid} before the "
                    "near-duplicate filter ever sees it")
        return (f"{cid}: after normalisation (lower-case, no punctuation) it is {first} again, prompt and reply — "
                f"filter 3 removes the later copy, {cid}")
    if truth == "near_duplicate":
        first = max((o for o in FILTER_CASES if o["id"] < cid), key=lambda o: _similarity(_prompt(o), _prompt(r)))
        pj, rj = _similarity(_prompt(first), _prompt(r)), _similarity(_reply(first), _reply(r))
        if guess == "exact_duplicate":
            return (f"{cid}: the exact filter compares prompt *and* reply after normalisation, and {cid}'s prompt is not "
                    f"{first['id']}'s (it lacks words). Only the near-duplicate filter catches it: prompt J = {pj:.2f}, "
                    f"reply J = {rj:.2f}")
        return (f"{cid}: it asks what {first['id']} asks (prompt 3-gram J = {pj:.2f} ≥ 0.7) and gets the same answer "
                f"(reply J = {rj:.2f} ≥ 0.4): filter 4 removes the later one, {cid}")
    # truth == "kept"
    twin = [o for o in FILTER_CASES if o["id"] != cid and _similarity(_prompt(o), _prompt(r)) >= 0.7]
    if twin and twin[0]["id"] < cid:
        pj, rj = _similarity(_prompt(twin[0]), _prompt(r)), _similarity(_reply(twin[0]), _reply(r))
        return (f"{cid}: its prompt shares {pj:.0%} of its 3-grams with {twin[0]['id']}'s (J = {pj:.2f} ≥ 0.7), but the "
                f"replies share {rj:.0%} (J = {rj:.2f} < 0.4): the reply check keeps it — a one-word change in the "
                "prompt made it a different task")
    if twin:
        return (f"{cid}: it comes first: a duplicate filter keeps the first of each pair and removes the later "
                f"copy ({twin[0]['id']}), never both")
    return f"{cid}: no filter removes it (it is not empty, not over-long, and has no twin)"


def filter_diagnosis_problems(predictions: dict | None, prompt_only_mistake: str | None) -> list[str]:
    """Problems with a learner's predictions of which filter removes each of :data:`FILTER_CASES`, and with the
    record a prompt-only near-duplicate rule would remove wrongly."""
    if predictions is None or (all(v is None for v in predictions.values()) and prompt_only_mistake is None):
        raise NotAttempted(_DIAGNOSIS_HINT)
    truth, problems = filter_case_outcomes(), []
    by_id = {r["id"]: r for r in FILTER_CASES}
    for r in FILTER_CASES:
        guess = predictions.get(r["id"])
        if guess is None:
            problems.append(f"{r['id']}: no prediction yet — one of {', '.join(map(repr, FILTER_OUTCOMES))}")
        elif guess != truth[r["id"]]:
            problems.append(_wrong_prediction(r["id"], guess, truth[r["id"]]))
    extra = sorted(set(predictions) - set(truth))
    if extra:
        problems.append(f"no record is called {', '.join(map(repr, extra))}: the ids are {', '.join(truth)}")
    prompt_only = filter_case_outcomes(check_replies=False)
    wrong = [cid for cid in truth if prompt_only[cid] == "near_duplicate" and truth[cid] == "kept"]
    if prompt_only_mistake is None:
        problems.append("PROMPT_ONLY_MISTAKE: which record would a prompt-only near-duplicate filter remove wrongly?")
    elif prompt_only_mistake not in wrong:
        m = prompt_only_mistake
        if truth.get(m) == "near_duplicate":
            why = (f"{m} asks the same question as an earlier record and gets the same answer: removing it is right, "
                   "with or without the reply check")
        elif truth.get(m) in ("exact_duplicate", "empty"):
            why = f"{m} never reaches the near-duplicate filter: filter {'3' if truth[m] == 'exact_duplicate' else '1'} removes it first"
        elif m in truth and any(o["id"] > m and _similarity(_prompt(o), _prompt(by_id[m])) >= 0.7 for o in FILTER_CASES):
            why = f"{m} is the first of its pair: a near-duplicate filter removes the later record, never the first"
        elif m in truth:
            why = f"{m}'s prompt is not similar to any other prompt: no near-duplicate rule touches it"
        else:
            why = f"there is no record {m!r}: the ids are {', '.join(truth)}"
        problems.append(f"PROMPT_ONLY_MISTAKE = {m!r}: {why}")
    return problems


def check_filter_diagnosis(predictions: dict | None, prompt_only_mistake: str | None) -> bool:
    """Print feedback on notebook 02's diagnosis exercise; True when every prediction is right."""
    return verdict(filter_diagnosis_problems, predictions, prompt_only_mistake,
                   success="✅ Right: A kept, B empty (<nooutput>), C exact copy of A, D kept, E kept (a different task: "
                           "the reply check saves it — a prompt-only rule would have removed it), F kept, G near "
                           "copy of F.")
