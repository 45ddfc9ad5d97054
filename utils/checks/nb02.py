"""Notebook 02 — datasets: a converter from a new format to the course's schema, and "which filter removed it —
and was it right?" (the answer key computed with :mod:`utils.quality`'s own filters).

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
def _case(cid: str, prompt: str, reply: str, question: str) -> dict:
    # meta["question"] names what the record asks: two records with the same name are the same example (a copy),
    # different names are different examples, however similar their words. It is the exercise's ground truth for
    # "was the removal right?" — a judgement a person makes by reading, which no n-gram count can make.
    return {"id": cid, "source": "exercise", "messages": [{"role": "user", "content": prompt},
                                                          {"role": "assistant", "content": reply}],
            "meta": {"question": question}}


_PASSAGE = ("Answer the question from the passage.\n\nPassage: The Sydney Harbour Bridge is a steel arch bridge across "
            "Sydney Harbour that carries rail, road, bicycle and foot traffic between the city centre and the North "
            "Shore. It opened on 19 March 1932, and its arch spans 503 metres.\n\nQuestion: ")
_PRIME = "Is the following number prime? Answer yes or no. Number: "

#: Eight records, in corpus order, for notebook 02's diagnosis exercise: which of section 5's filters removes each?
FILTER_CASES = [
    _case("A", "Describe the photo below in one sentence.", "<nooutput>", "describe a photo"),
    _case("B", "describe the photo below in one sentence", "<nooutput>", "describe a photo"),
    _case("C", _PASSAGE + "When did the bridge open?", "It opened on 19 March 1932.", "bridge: opening date"),
    _case("D", _PASSAGE + "How long is the arch span?", "Its arch spans 503 metres.", "bridge: span"),
    _case("E", _PASSAGE.replace("Sydney", "sydney") + "when did the bridge open", "It opened on 19 March 1932",
          "bridge: opening date"),
    _case("F", _PRIME + "7919", "Yes.", "is 7919 prime"),
    _case("G", _PRIME + "7907", "Yes.", "is 7907 prime"),
    _case("H", _PRIME + "7917", "No.", "is 7917 prime"),
]

#: The answers a learner may give for each record.
FILTER_OUTCOMES = ("kept", "empty", "over_length", "exact_duplicate", "near_duplicate")

_DIAGNOSIS_HINT = ("set FILTER_PREDICTIONS[id] to one of " + ", ".join(map(repr, FILTER_OUTCOMES))
                   + " for every record, WRONG_REMOVAL to a record id and PROMPT_ONLY_EXTRA to a set of ids, "
                   "then run this cell again.")


def _prompt(r: dict) -> str:
    return "\n".join(m["content"] for m in r["messages"][:-1])


def _reply(r: dict) -> str:
    return r["messages"][-1]["content"]


def _similarity(a: str, b: str) -> float:
    from ..quality import jaccard, ngrams
    return jaccard(ngrams(a, 3), ngrams(b, 3))


def filter_case_removals(near_threshold: float = 0.7, reply_threshold: float = 0.4, *,
                         check_replies: bool = True) -> dict[str, tuple[str, str | None]]:
    """What section 5's filters do to :data:`FILTER_CASES`, computed with the course's own functions:
    ``{id: (outcome, twin)}``, outcome ``"kept" | "empty" | "exact_duplicate" | "near_duplicate"`` (none of the
    cases is over-length) and ``twin`` the id of the earlier record that made it a duplicate (else ``None``).
    ``check_replies=False`` is the prompt-only near-duplicate rule (no reply check)."""
    from ..data import NOOUTPUT
    from ..quality import exact_duplicates, near_duplicates
    out, alive = {}, []
    for r in FILTER_CASES:
        if not _reply(r).strip() or NOOUTPUT in _reply(r):
            out[r["id"]] = ("empty", None)
        else:
            alive.append(r)
    exact = exact_duplicates([_prompt(r) + "\n" + _reply(r) for r in alive])
    out.update({alive[j]["id"]: ("exact_duplicate", alive[i]["id"]) for i, j in exact})
    alive = [r for k, r in enumerate(alive) if k not in {j for _, j in exact}]
    for i, j, _ in near_duplicates([_prompt(r) for r in alive], n=3, threshold=near_threshold):
        if not check_replies or _similarity(_reply(alive[i]), _reply(alive[j])) >= reply_threshold:
            out.setdefault(alive[j]["id"], ("near_duplicate", alive[i]["id"]))
    return {r["id"]: out.get(r["id"], ("kept", None)) for r in FILTER_CASES}


def filter_case_outcomes(near_threshold: float = 0.7, reply_threshold: float = 0.4, *,
                         check_replies: bool = True) -> dict[str, str]:
    """``{id: outcome}`` of :func:`filter_case_removals` (the same arguments)."""
    return {cid: outcome for cid, (outcome, _) in
            filter_case_removals(near_threshold, reply_threshold, check_replies=check_replies).items()}


def filter_case_judgements(near_threshold: float = 0.7, reply_threshold: float = 0.4) -> tuple[set[str], set[str]]:
    """The two judgements of the exercise, from :func:`filter_case_removals` and each case's ``meta["question"]``:
    ``(wrong, prompt_only_extra)`` — the records the pipeline removes as duplicates although they ask a different
    question from their twin, and the records a prompt-only near-duplicate rule would remove in addition."""
    question = {r["id"]: r["meta"]["question"] for r in FILTER_CASES}
    removals = filter_case_removals(near_threshold, reply_threshold)
    wrong = {cid for cid, (outcome, twin) in removals.items() if twin is not None and question[cid] != question[twin]}
    prompt_only = filter_case_outcomes(near_threshold, reply_threshold, check_replies=False)
    extra = {cid for cid, (outcome, _) in removals.items() if outcome == "kept" and prompt_only[cid] != "kept"}
    return wrong, extra


def _first_similar(cid: str) -> dict:
    """The earlier record whose prompt is most similar to ``cid``'s."""
    r = {o["id"]: o for o in FILTER_CASES}[cid]
    return max((o for o in FILTER_CASES if o["id"] < cid), key=lambda o: _similarity(_prompt(o), _prompt(r)))


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
        if guess in ("exact_duplicate", "near_duplicate"):
            return (f"{cid}: its reply is {_reply(r)!r}, so filter 1 removes it before any duplicate filter runs — a "
                    "record removed by one filter never reaches the next, whatever it would have matched there")
        return (f"{cid}: its reply is {_reply(r)!r} — not empty, but Alpaca's marker for 'a text model cannot do "
                "this'. Filter 1 removes replies that are empty *or* <nooutput>")
    if truth == "exact_duplicate":
        first = next(o["id"] for o in FILTER_CASES if o["id"] < cid and _similarity(_prompt(o), _prompt(r)) == 1.0)
        if guess == "near_duplicate":
            return (f"{cid}: it differs from {first} only in capitals and punctuation. Normalisation (lower-case, no "
                    f"punctuation) makes the two identical, prompt and reply, so filter 3 (exact duplicates) removes "
                    f"{cid} before the near-duplicate filter ever sees it")
        return (f"{cid}: after normalisation (lower-case, no punctuation) it is {first} again, prompt and reply — "
                f"filter 3 removes the later copy, {cid}")
    if truth == "near_duplicate":
        first = _first_similar(cid)
        pj, rj = _similarity(_prompt(first), _prompt(r)), _similarity(_reply(first), _reply(r))
        if guess == "exact_duplicate":
            return (f"{cid}: the exact filter compares prompt *and* reply after normalisation, and {cid}'s prompt is not "
                    f"{first['id']}'s. Only the near-duplicate filter catches it: prompt J = {pj:.2f}, "
                    f"reply J = {rj:.2f}")
        return (f"{cid}: its prompt shares {pj:.0%} of the 3-grams with {first['id']}'s (J = {pj:.2f} ≥ 0.7) and the "
                f"replies {_reply(first)!r} / {_reply(r)!r} have J = {rj:.2f} ≥ 0.4 — a reply shorter than three words "
                f"is one 'gram' of all its words, so two equal one-word answers are identical to the filter. "
                f"Filter 4 removes the later one, {cid}")
    # truth == "kept"
    twin = [o for o in FILTER_CASES if o["id"] != cid and _similarity(_prompt(o), _prompt(r)) >= 0.7]
    if twin and twin[0]["id"] < cid:
        pj, rj = _similarity(_prompt(twin[0]), _prompt(r)), _similarity(_reply(twin[0]), _reply(r))
        return (f"{cid}: its prompt shares {pj:.0%} of its 3-grams with {twin[0]['id']}'s (J = {pj:.2f} ≥ 0.7), but the "
                f"replies {_reply(twin[0])!r} / {_reply(r)!r} share {rj:.0%} (J = {rj:.2f} < 0.4): the reply check "
                "keeps it — a different answer, so a different example")
    if twin:
        return (f"{cid}: it comes first: a duplicate filter keeps the first of each pair and removes the later "
                f"copy ({twin[0]['id']}), never both")
    return f"{cid}: no filter removes it (it is not empty, not over-long, and has no twin)"


def _ids(answer) -> set[str]:
    """A learner's set of ids: a set, list or tuple of ids, or a single id as a string."""
    return {answer} if isinstance(answer, str) else set(answer)


def filter_diagnosis_problems(predictions: dict | None, wrong_removal: str | None,
                              prompt_only_extra=None) -> list[str]:
    """Problems with a learner's predictions of which filter removes each of :data:`FILTER_CASES`, with the record
    the pipeline removes wrongly (``wrong_removal``) and with the records a prompt-only near-duplicate rule would
    remove in addition (``prompt_only_extra``, a set of ids)."""
    if predictions is None or (all(v is None for v in predictions.values()) and wrong_removal is None
                               and prompt_only_extra is None):
        raise NotAttempted(_DIAGNOSIS_HINT)
    removals, problems = filter_case_removals(), []
    truth = {cid: outcome for cid, (outcome, _) in removals.items()}
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
    wrong, prompt_only = filter_case_judgements()

    m = wrong_removal
    if m is None:
        problems.append("WRONG_REMOVAL: which record does the pipeline remove although it is not a copy of its twin?")
    elif m not in wrong:
        if m not in truth:
            why = f"there is no record {m!r}: the ids are {', '.join(truth)}"
        elif truth[m] == "kept":
            why = f"the pipeline keeps {m}; the question is about a record it removes"
        elif truth[m] == "empty":
            why = f"{m}'s reply is <nooutput>, not an answer: removing it is right"
        else:
            twin = removals[m][1]
            why = (f"{m} is {twin} again, prompt and answer, up to capitals and punctuation — a copy: removing it "
                   "is right")
        problems.append(f"WRONG_REMOVAL = {m!r}: {why}")

    if prompt_only_extra is None:
        problems.append("PROMPT_ONLY_EXTRA: which records would a near-duplicate filter without the reply check "
                        "remove in addition? (a set of ids)")
    else:
        given = _ids(prompt_only_extra)
        for cid in sorted(prompt_only - given):
            first = _first_similar(cid)
            pj = _similarity(_prompt(first), _prompt(by_id[cid]))
            problems.append(f"PROMPT_ONLY_EXTRA misses {cid}: its prompt and {first['id']}'s have J = {pj:.2f} ≥ 0.7 "
                            + ("— the shared passage outweighs the different question" if _PASSAGE in _prompt(by_id[cid])
                               else "— only the number differs") + f"; only the reply check ({_reply(first)!r} vs "
                            f"{_reply(by_id[cid])!r}) keeps it")
        for cid in sorted(given - prompt_only):
            if cid not in truth:
                why = f"there is no record {cid!r}"
            elif truth[cid] in ("empty", "exact_duplicate"):
                why = (f"{cid} never reaches the near-duplicate filter: filter "
                       f"{'1' if truth[cid] == 'empty' else '3'} removes it first")
            elif truth[cid] == "near_duplicate":
                why = f"{cid} is removed with the reply check too — 'in addition' means beyond what the pipeline removes"
            elif any(o["id"] > cid and _similarity(_prompt(o), _prompt(by_id[cid])) >= 0.7 for o in FILTER_CASES):
                why = f"{cid} is the first of its pairs: a near-duplicate filter removes the later record, never the first"
            else:
                why = f"{cid}'s prompt is not similar to any other prompt: no near-duplicate rule touches it"
            problems.append(f"PROMPT_ONLY_EXTRA includes {cid!r}: {why}")
    return problems


def check_filter_diagnosis(predictions: dict | None, wrong_removal: str | None, prompt_only_extra=None) -> bool:
    """Print feedback on notebook 02's diagnosis exercise; True when every answer is right."""
    return verdict(filter_diagnosis_problems, predictions, wrong_removal, prompt_only_extra,
                   success="✅ Right: A and B empty (<nooutput> — filter 1 removes both before the exact filter runs), "
                           "C kept, D kept (same passage, different question), E exact copy of C, F kept, G near copy "
                           "of F (removed wrongly: another number, but the same one-word answer), H kept. Without the "
                           "reply check D and H would go too.")
