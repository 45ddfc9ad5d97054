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
