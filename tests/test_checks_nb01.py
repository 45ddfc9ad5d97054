"""Tests of the checkers for notebook 01: the prompt-mask checker."""

from utils.checks import check_prompt_mask, prompt_mask_problems


EOS = 50256
IDS = [10, 11, 12, 13, 20, 21, 22, EOS]     # prompt = 4 tokens, response = 3, EOS
P = 4
GOOD = [-100] * 4 + [20, 21, 22, EOS]


def test_correct_labels_pass(capsys):
    assert prompt_mask_problems(GOOD, IDS, P) == []
    assert check_prompt_mask(GOOD, IDS, P) is True
    assert "✅" in capsys.readouterr().out


def test_stub_is_not_attempted(capsys):
    assert check_prompt_mask(None, IDS, P) is False
    assert "Not attempted" in capsys.readouterr().out


def test_unmasked_prompt_is_named_with_count_and_positions():
    problems = prompt_mask_problems(list(IDS), IDS, P)
    assert problems == ["your labels supervise 4 prompt token(s) (positions 0–3); set them to -100 so the "
                        "model is not trained to write the instruction"]


def test_partly_masked_prompt():
    labels = [-100, -100, 12, 13, 20, 21, 22, EOS]
    assert "supervise 2 prompt token(s) (positions 2–3)" in prompt_mask_problems(labels, IDS, P)[0]


def test_masked_eos_is_called_out(capsys):
    labels = GOOD[:-1] + [-100]
    problems = prompt_mask_problems(labels, IDS, P)
    assert len(problems) == 1 and "final EOS (position 7) is masked" in problems[0]
    assert check_prompt_mask(labels, IDS, P) is False
    assert "never learns to stop" in capsys.readouterr().out


def test_masked_response_tokens():
    labels = [-100] * 6 + [22, EOS]
    assert "2 response token(s) are masked (positions 4–5)" in prompt_mask_problems(labels, IDS, P)[0]


def test_wrong_ids_in_response():
    labels = [-100] * 4 + [20, 99, 22, EOS]
    problems = prompt_mask_problems(labels, IDS, P)
    assert "first: position 5 has 99, expected 21" in problems[0]


def test_shifted_labels_are_recognised():
    assert "shifted by one" in prompt_mask_problems(IDS[1:] + [-100], IDS, P)[0]
    assert "shifted by one" in prompt_mask_problems(IDS[1:], IDS, P)[0]     # and one too short


def test_wrong_length():
    assert "has 3 entries but input_ids has 8" in prompt_mask_problems([1, 2, 3], IDS, P)[0]


def test_accepts_tensors():
    import torch
    assert prompt_mask_problems(torch.tensor(GOOD), torch.tensor(IDS), P) == []


# --------------------------------------------------------------------------- 9.2: diagnose four label builders
from utils.checks import LABEL_BUILDERS, check_label_diagnosis, label_diagnosis_problems  # noqa: E402
from utils.checks.nb01 import LABEL_DIAGNOSIS  # noqa: E402
from utils.masking import build_labels  # noqa: E402

PROMPT, RESPONSE = [10, 11, 12, 13], [20, 21, 22]
RIGHT = {"never_stops": "a", "writes_instructions": "b", "predicts_two_ahead": "d", "correct": "c"}


def test_the_builders_do_what_the_answers_say():
    """The answer key is computed from the builders, not asserted about them."""
    built = {k: b(PROMPT, RESPONSE, EOS) for k, b in LABEL_BUILDERS.items()}
    ids, reference = build_labels(PROMPT, RESPONSE, EOS)
    assert all(b[0] == list(ids) for b in built.values())             # same inputs from every builder
    correct = [k for k, (_, labels) in built.items() if labels == list(reference)]
    no_eos = [k for k, (_, labels) in built.items() if EOS not in labels]
    prompt_targets = [k for k, (i, labels) in built.items() if labels[1:len(PROMPT)] == i[1:len(PROMPT)]]
    shifted = [k for k, (i, labels) in built.items() if labels[len(PROMPT) - 1:-1] == i[len(PROMPT):]]
    assert (no_eos, prompt_targets, shifted, correct) == (["a"], ["b"], ["d"], ["c"])
    assert RIGHT == LABEL_DIAGNOSIS


def test_right_diagnosis_passes(capsys):
    assert label_diagnosis_problems(RIGHT) == []
    assert check_label_diagnosis({k: v.upper() for k, v in RIGHT.items()}) is True    # case does not matter
    assert "✅" in capsys.readouterr().out


def test_stub_is_not_attempted(capsys):
    assert check_label_diagnosis(None) is False
    assert check_label_diagnosis(dict.fromkeys(RIGHT)) is False
    assert capsys.readouterr().out.count("Not attempted") == 2


# The likely wrong picks, each with what the feedback must name.
WRONG = [
    ("never_stops", "d", "predict the token two ahead"),       # "shifted labels lose the end" — they keep the EOS
    ("never_stops", "b", "does learn to stop"),                # no mask ≠ no EOS
    ("writes_instructions", "a", "never trained to end"),
    ("predicts_two_ahead", "b", "supervises every token"),
    ("correct", "a", "final EOS is an EOS too"),               # looks right: prompt masked, response kept
    ("correct", "d", "loss shifts again"),                     # the most common mistake: shifting by hand
]


def test_each_wrong_pick_names_the_mistake():
    for question, pick, phrase in WRONG:
        problems = label_diagnosis_problems({**RIGHT, question: pick})
        assert len(problems) == 1 and problems[0].startswith(f"{question}: not {pick}"), (question, pick, problems)
        assert phrase in problems[0], (question, pick, problems)


def test_partial_and_malformed_answers():
    assert label_diagnosis_problems({**RIGHT, "correct": None}) == ["correct: not answered yet"]
    assert 'one of "a", "b", "c", "d"' in label_diagnosis_problems({**RIGHT, "correct": "e"})[0]
    assert "unknown question" in label_diagnosis_problems({**RIGHT, "never_stop": "a"})[0]
    assert "should be a dict" in label_diagnosis_problems(["a", "b", "d", "c"])[0]
