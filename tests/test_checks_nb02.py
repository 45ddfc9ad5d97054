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

from utils.checks import (FILTER_CASES, check_filter_diagnosis, filter_case_outcomes,  # noqa: E402
                          filter_diagnosis_problems)

RIGHT = {"A": "kept", "B": "empty", "C": "exact_duplicate", "D": "kept", "E": "kept", "F": "kept", "G": "near_duplicate"}


def test_answer_key_is_what_the_filters_do():
    """The key is computed by the course's own functions; pin it so a change of rule is noticed here."""
    assert filter_case_outcomes() == RIGHT
    prompt_only = filter_case_outcomes(check_replies=False)
    assert prompt_only == {**RIGHT, "E": "near_duplicate"}          # the reply check is what saves E
    assert [r["id"] for r in FILTER_CASES] == list("ABCDEFG")


def test_diagnosis_right_answer_passes(capsys):
    assert filter_diagnosis_problems(RIGHT, "E") == []
    assert check_filter_diagnosis(RIGHT, "E") is True
    assert "✅" in capsys.readouterr().out


def test_diagnosis_placeholder_is_not_attempted(capsys):
    assert check_filter_diagnosis({k: None for k in RIGHT}, None) is False
    assert "Not attempted" in capsys.readouterr().out


#: The likely wrong answers: (record, wrong guess, words the feedback must contain to name the mistake).
WRONG_PREDICTIONS = [
    ("A", "exact_duplicate", "keeps the first of each pair"),                 # both copies thought removed
    ("F", "near_duplicate", "keeps the first of each pair"),
    ("B", "kept", "<nooutput>"),                                            # <nooutput> is not an answer
    ("B", "over_length", "no record here is over-long"),
    ("C", "near_duplicate", "removes C before the near-duplicate filter"),  # normalisation makes it exact
    ("C", "kept", "filter 3 removes the later copy"),
    ("E", "near_duplicate", "the reply check keeps it"),                    # same template, different task
    ("G", "exact_duplicate", "compares prompt *and* reply"),                # prompts differ
    ("G", "kept", "filter 4 removes the later one"),
    ("D", "dup", "is not one of"),                                          # a label that does not exist
]


@pytest.mark.parametrize("cid, guess, named", WRONG_PREDICTIONS, ids=[f"{c}-{g}" for c, g, _ in WRONG_PREDICTIONS])
def test_diagnosis_wrong_prediction_names_the_mistake(cid, guess, named):
    problems = filter_diagnosis_problems({**RIGHT, cid: guess}, "E")
    assert len(problems) == 1 and problems[0].startswith(f"{cid}:") and named in problems[0], problems


WRONG_MISTAKES = [
    ("G", "removing it is right"),          # a true near-duplicate
    ("D", "first of its pair"),             # the filter removes the later record
    ("C", "filter 3 removes it first"),     # never reaches the near-duplicate filter
    ("B", "filter 1 removes it first"),
    ("Q", "there is no record 'Q'"),
]


@pytest.mark.parametrize("mistake, named", WRONG_MISTAKES, ids=[m for m, _ in WRONG_MISTAKES])
def test_diagnosis_wrong_prompt_only_mistake_names_the_mistake(mistake, named):
    problems = filter_diagnosis_problems(RIGHT, mistake)
    assert len(problems) == 1 and problems[0].startswith("PROMPT_ONLY_MISTAKE") and named in problems[0], problems


def test_diagnosis_missing_and_unknown_answers():
    partial = {k: v for k, v in RIGHT.items() if k != "D"}
    problems = filter_diagnosis_problems({**partial, "Z": "kept"}, None)
    assert any(p.startswith("D: no prediction yet") for p in problems)
    assert any("no record is called 'Z'" in p for p in problems)
    assert any(p.startswith("PROMPT_ONLY_MISTAKE: which record") for p in problems)
