"""Tests of the checkers for notebook 04: TRL's schedule made to match the course loop's (9.1), and the prediction of
what truncation removes from a batch (9.2). Each likely wrong answer must fail with a message naming the mistake."""

import pytest

from utils.checks import (check_schedule_match, check_truncation_prediction, schedule_match_problems,
                          truncation_prediction_problems)
from utils.checks.nb04 import hf_schedule, schedule_gap, truncation_outcomes
from utils.masking import build_labels
from utils.training import TrainConfig, lr_at

CFG = TrainConfig(max_steps=234, lr=5e-5, warmup_steps=20, min_lr=5e-6)      # notebook 04's full-mode run


# --------------------------------------------------------------------------- 9.1 the schedule
def test_the_right_schedules_pass(capsys):
    for answer in (dict(lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr": 5e-6}),
                   dict(lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": 0.1})):
        assert schedule_match_problems(answer, CFG) == [], answer
    assert check_schedule_match(dict(lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr": 5e-6}), CFG)
    assert "one step behind" in capsys.readouterr().out


def test_the_hf_schedule_runs_one_step_behind_the_loop():
    """Why the checker compares step s + 1 with s: measured, not assumed."""
    lrs = hf_schedule("cosine_with_min_lr", CFG, {"min_lr": 5e-6})
    assert lrs[0] == 0.0 and lr_at(0, CFG) == pytest.approx(CFG.lr / CFG.warmup_steps)
    gap, _ = schedule_gap(lrs, CFG)
    assert gap < 0.02
    unshifted = max(abs(lrs[s] - lr_at(s, CFG)) for s in range(CFG.max_steps)) / CFG.lr
    assert unshifted > gap                    # without the offset the curves differ more


WRONG_SCHEDULES = [
    (dict(lr_scheduler_type="linear"), "TRL's default"),
    (dict(lr_scheduler_type="cosine"), "decays to 0"),
    (dict(lr_scheduler_type="constant_with_warmup"), "never decays"),
    (dict(lr_scheduler_type="cosine_with_min_lr"), "needs its floor"),
    (dict(lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr": 5e-7}), "last step"),
    (dict(lr_scheduler_type="cosine_min_lr"), "not a 🤗 schedule name"),
    (dict(lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr": 5e-6}, warmup_steps=20), "not needed"),
]


@pytest.mark.parametrize("answer, phrase", WRONG_SCHEDULES)
def test_each_wrong_schedule_names_the_mistake(answer, phrase):
    problems = schedule_match_problems(answer, CFG)
    assert len(problems) == 1 and phrase in problems[0], problems


def test_schedule_not_attempted(capsys):
    assert check_schedule_match(None, CFG) is False
    assert check_schedule_match(dict(lr_scheduler_type=None, lr_scheduler_kwargs=None), CFG) is False
    assert capsys.readouterr().out.count("Not attempted") == 2


# --------------------------------------------------------------------------- 9.2 truncation
EOS = 50256


def example(prompt_len: int, response_len: int) -> dict:
    ids, labels = build_labels(list(range(1, prompt_len + 1)), list(range(100, 100 + response_len)), EOS)
    return {"input_ids": ids, "labels": labels, "prompt_len": prompt_len}


# max_length 6; lengths are prompt + response + 1 (EOS). Edge cases on both sides of each boundary.
EXAMPLES = [example(2, 2),      # 5 tokens: untouched
            example(3, 2),      # 6 = max_length: untouched, EOS kept
            example(3, 3),      # 7: loses its EOS only
            example(5, 3),      # prompt 5 = max_length − 1: one response token survives
            example(6, 2),      # prompt = max_length: nothing left
            example(8, 1)]      # prompt longer than max_length: nothing left
L = 6
RIGHT = {"lose_eos": 4, "lose_everything": 2}


def test_outcomes_are_measured_from_the_labels():
    assert truncation_outcomes(EXAMPLES, L) == RIGHT


def test_right_prediction_passes(capsys):
    assert truncation_prediction_problems(RIGHT, EXAMPLES, L) == []
    assert check_truncation_prediction(RIGHT, EXAMPLES, L) is True
    assert "4 of 6 examples lose their EOS" in capsys.readouterr().out


WRONG_COUNTS = [
    ({"lose_eos": 5}, "off by one: an example of exactly max_length"),          # counted len >= L
    ({"lose_eos": 2}, "those lose everything"),                                 # confused the two questions
    ({"lose_everything": 4}, "counted every example longer than max_length"),   # len > L
    ({"lose_everything": 1}, "a prompt of exactly max_length tokens"),          # prompt > L
    ({"lose_everything": 3}, "max_length − 1 tokens leaves one"),               # prompt >= L - 1
    ({"lose_eos": 0}, "which ones lose"),                                       # no recognisable rule: a nudge
]


@pytest.mark.parametrize("change, phrase", WRONG_COUNTS)
def test_each_wrong_count_names_the_mistake(change, phrase):
    problems = truncation_prediction_problems({**RIGHT, **change}, EXAMPLES, L)
    assert len(problems) == 1 and phrase in problems[0], problems


def test_truncation_not_attempted_and_malformed(capsys):
    assert check_truncation_prediction(None, EXAMPLES, L) is False
    assert check_truncation_prediction(dict(lose_eos=None, lose_everything=None), EXAMPLES, L) is False
    assert capsys.readouterr().out.count("Not attempted") == 2
    assert "two whole numbers" in truncation_prediction_problems({"eos": 1}, EXAMPLES, L)[0]
    assert truncation_prediction_problems({**RIGHT, "lose_everything": None}, EXAMPLES, L) == ["lose_everything: not answered yet"]
