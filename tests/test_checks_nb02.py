"""Tests of the checkers for notebook 02: the forum converter and the "which filter removed it?" diagnosis."""

from utils.checks import FORUM_ROWS, check_forum_converter, forum_converter_problems
from utils.schema import DataFormatError


def solution(row, index):
    if not row["answers"]:
        raise DataFormatError("question has no answers", index)
    q = row["question"]
    best = max(row["answers"], key=lambda a: a["votes"])
    user = f"{q['title']}\n\n{q['body']}" if q["body"] else q["title"]
    return {"id": f"forum-{index}", "source": "forum",
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": best["text"]}],
            "meta": {"index": index, "site": row["site"], "votes": best["votes"]}}


def test_forum_solution_passes(capsys):
    assert forum_converter_problems(solution) == []
    assert check_forum_converter(solution) is True
    assert "✅" in capsys.readouterr().out


def test_forum_stub_is_not_attempted(capsys):
    def stub(row, index):
        raise NotImplementedError
    assert check_forum_converter(stub) is False
    assert "Not attempted" in capsys.readouterr().out


def test_forum_first_answer_instead_of_most_voted():
    def first_answer(row, index):
        rec = solution(row, index)
        rec["messages"][1]["content"] = row["answers"][0]["text"]
        return rec
    problems = forum_converter_problems(first_answer)
    assert len(problems) == 1
    assert "row 0: the assistant reply should be the most-voted answer 'Use my_list[::-1].' (30 votes" in problems[0]
    assert "(it has 12 votes)" in problems[0]


def test_forum_last_of_tied_answers():
    def last_max(row, index):
        rec = solution(row, index)
        top = max(a["votes"] for a in row["answers"])
        rec["messages"][1]["content"] = [a for a in row["answers"] if a["votes"] == top][-1]["text"]
        return rec
    problems = forum_converter_problems(last_max)
    assert len(problems) == 1 and problems[0].startswith("row 2:") and "on a tie the first listed" in problems[0]


def test_forum_empty_body_and_missing_raise():
    def always_body(row, index):
        rec = solution(row, index)
        q = row["question"]
        rec["messages"][0]["content"] = f"{q['title']}\n\n{q['body']}"
        return rec
    assert any("row 1: user content should be" in p for p in forum_converter_problems(always_body))

    def keeps_unanswered(row, index):
        if not row["answers"]:
            return {"id": f"forum-{index}", "source": "forum", "messages": [], "meta": {"index": index}}
        return solution(row, index)
    assert any("row 3 has no answers, but your converter returned a record" in p
               for p in forum_converter_problems(keeps_unanswered))

    def key_error(row, index):
        return solution(row, index) if row["answers"] else row["answers"][0]
    assert any("raise DataFormatError (from utils.schema), not IndexError" in p for p in forum_converter_problems(key_error))


def test_forum_meta_and_id():
    def wrong_meta(row, index):
        rec = solution(row, index)
        rec["meta"].pop("votes")
        rec["id"] = str(index)
        return rec
    problems = forum_converter_problems(wrong_meta)
    assert any("id should be 'forum-0'" in p for p in problems)
    assert any("meta['votes'] should be 30" in p for p in problems)
    assert len(FORUM_ROWS) == 4


# ------------------------------------------------------------------ which filter removed it? (diagnosis)
import pytest  # noqa: E402

from utils.checks import (FILTER_CASES, check_filter_diagnosis, filter_case_judgements,  # noqa: E402
                          filter_case_outcomes, filter_case_removals, filter_diagnosis_problems)

RIGHT = {"A": "empty", "B": "empty", "C": "kept", "D": "kept", "E": "exact_duplicate", "F": "kept",
         "G": "near_duplicate", "H": "kept"}
WRONG_REMOVAL = "G"
PROMPT_ONLY_EXTRA = {"D", "H"}


def test_answer_key_is_what_the_filters_do():
    """The key is computed by the course's own functions; pin it so a change of rule is noticed here."""
    assert filter_case_outcomes() == RIGHT
    assert filter_case_removals()["E"] == ("exact_duplicate", "C") and filter_case_removals()["G"] == ("near_duplicate", "F")
    prompt_only = filter_case_outcomes(check_replies=False)
    assert prompt_only == {**RIGHT, "D": "near_duplicate", "H": "near_duplicate"}   # the reply check saves D and H
    assert filter_case_judgements() == ({WRONG_REMOVAL}, PROMPT_ONLY_EXTRA)
    assert [r["id"] for r in FILTER_CASES] == list("ABCDEFGH")


def test_cases_differ_in_kind_from_the_notebooks_walkthrough():
    """Section 5's walkthrough shows a reply check that keeps a one-word-different short prompt and removes a
    same-reply pair. The exercise must ask more: a filter-order trap, a long shared passage, and a pair the reply
    check removes wrongly because the answers are equal one-word labels."""
    by_id = {r["id"]: r for r in FILTER_CASES}
    assert by_id["A"]["messages"][1]["content"] == by_id["B"]["messages"][1]["content"] == "<nooutput>"
    assert len(by_id["D"]["messages"][0]["content"].split()) > 40                    # the passage dominates J
    assert by_id["F"]["messages"][1]["content"] == by_id["G"]["messages"][1]["content"]
    assert by_id["F"]["meta"]["question"] != by_id["G"]["meta"]["question"]
    assert not any("verbs that mean" in r["messages"][0]["content"] for r in FILTER_CASES)


def test_diagnosis_right_answer_passes(capsys):
    assert filter_diagnosis_problems(RIGHT, WRONG_REMOVAL, PROMPT_ONLY_EXTRA) == []
    assert filter_diagnosis_problems(RIGHT, WRONG_REMOVAL, ["H", "D"]) == []         # any collection of ids
    assert check_filter_diagnosis(RIGHT, WRONG_REMOVAL, PROMPT_ONLY_EXTRA) is True
    assert "✅" in capsys.readouterr().out


def test_diagnosis_placeholder_is_not_attempted(capsys):
    assert check_filter_diagnosis({k: None for k in RIGHT}, None, None) is False
    assert "Not attempted" in capsys.readouterr().out


#: The likely wrong answers: (record, wrong guess, words the feedback must contain to name the mistake).
WRONG_PREDICTIONS = [
    ("A", "kept", "<nooutput>"),                                             # <nooutput> is not an answer
    ("A", "over_length", "no record here is over-long"),
    ("B", "exact_duplicate", "filter 1 removes it before any duplicate filter"),  # filter order
    ("C", "exact_duplicate", "keeps the first of each pair"),                # both copies thought removed
    ("C", "near_duplicate", "keeps the first of each pair"),
    ("D", "near_duplicate", "the reply check keeps it"),                     # same passage, different question
    ("E", "near_duplicate", "removes E before the near-duplicate filter"),   # normalisation makes it exact
    ("E", "kept", "filter 3 removes the later copy"),
    ("F", "near_duplicate", "keeps the first of each pair"),
    ("G", "kept", "two equal one-word answers are identical"),              # the reply check is blind here
    ("G", "exact_duplicate", "compares prompt *and* reply"),                # prompts differ
    ("H", "near_duplicate", "the reply check keeps it"),                     # 'No.' vs 'Yes.'
    ("D", "dup", "is not one of"),                                           # a label that does not exist
]


@pytest.mark.parametrize("cid, guess, named", WRONG_PREDICTIONS, ids=[f"{c}-{g}" for c, g, _ in WRONG_PREDICTIONS])
def test_diagnosis_wrong_prediction_names_the_mistake(cid, guess, named):
    problems = filter_diagnosis_problems({**RIGHT, cid: guess}, WRONG_REMOVAL, PROMPT_ONLY_EXTRA)
    assert len(problems) == 1 and problems[0].startswith(f"{cid}:") and named in problems[0], problems


WRONG_REMOVALS = [
    ("E", "removing it is right"),          # a true copy of C
    ("B", "removing it is right"),          # <nooutput>
    ("D", "the pipeline keeps D"),          # kept by the reply check
    ("H", "the pipeline keeps H"),
    ("Q", "there is no record 'Q'"),
]


@pytest.mark.parametrize("removal, named", WRONG_REMOVALS, ids=[m for m, _ in WRONG_REMOVALS])
def test_diagnosis_wrong_removal_names_the_mistake(removal, named):
    problems = filter_diagnosis_problems(RIGHT, removal, PROMPT_ONLY_EXTRA)
    assert len(problems) == 1 and problems[0].startswith("WRONG_REMOVAL") and named in problems[0], problems


WRONG_EXTRAS = [
    ({"H"}, "misses D", "shared passage outweighs"),        # thought a different question keeps J low
    ({"D"}, "misses H", "only the number differs"),
    ({"D", "H", "G"}, "includes 'G'", "removed with the reply check too"),
    ({"D", "H", "E"}, "includes 'E'", "filter 3 removes it first"),
    ({"D", "H", "C"}, "includes 'C'", "first of its pairs"),
]


@pytest.mark.parametrize("extra, which, named", WRONG_EXTRAS, ids=[w for _, w, _ in WRONG_EXTRAS])
def test_diagnosis_wrong_prompt_only_extra_names_the_mistake(extra, which, named):
    problems = filter_diagnosis_problems(RIGHT, WRONG_REMOVAL, extra)
    assert len(problems) == 1 and problems[0].startswith("PROMPT_ONLY_EXTRA") and which in problems[0] \
        and named in problems[0], problems


def test_diagnosis_missing_and_unknown_answers():
    partial = {k: v for k, v in RIGHT.items() if k != "D"}
    problems = filter_diagnosis_problems({**partial, "Z": "kept"}, None, None)
    assert any(p.startswith("D: no prediction yet") for p in problems)
    assert any("no record is called 'Z'" in p for p in problems)
    assert any(p.startswith("WRONG_REMOVAL: which record") for p in problems)
    assert any(p.startswith("PROMPT_ONLY_EXTRA: which records") for p in problems)
