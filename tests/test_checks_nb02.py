"""Tests of the checkers for notebook 02: the forum converter checker."""

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
