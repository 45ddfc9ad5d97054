"""Tests of the checkers for notebook 04: the perplexity and collate checkers."""

import math

import torch

from utils.checks import check_collate_labels, check_perplexity, collate_labels_problems, perplexity_problems


def test_perplexity_checker(capsys):
    assert perplexity_problems(math.exp(1.95), 1.95) == []
    assert check_perplexity(7.0287, 1.95) is True
    assert "natural log" in perplexity_problems(2 ** 1.95, 1.95)[0]
    assert "inverse" in perplexity_problems(math.exp(-1.95), 1.95)[0]
    assert "the loss itself" in perplexity_problems(1.95, 1.95)[0]
    assert check_perplexity(None, 1.95) is False and "Not attempted" in capsys.readouterr().out


def good_labels(input_ids, attention_mask, prompt_lens):
    labels = input_ids.clone()
    labels[attention_mask == 0] = -100
    for b, p in enumerate(prompt_lens):
        labels[b, :p] = -100
    return labels


def test_collate_labels_checker(capsys):
    assert collate_labels_problems(good_labels) == []
    assert check_collate_labels(good_labels) is True

    def by_token_id(input_ids, attention_mask, prompt_lens):
        labels = good_labels(input_ids, attention_mask, prompt_lens)
        labels[input_ids == 50256] = -100
        return labels
    assert any("own EOS at position" in p for p in collate_labels_problems(by_token_id))

    def no_prompt_mask(input_ids, attention_mask, prompt_lens):
        labels = input_ids.clone()
        labels[attention_mask == 0] = -100
        return labels
    assert any("the prompt (positions 0–2) must be -100" in p for p in collate_labels_problems(no_prompt_mask))

    def shifted(input_ids, attention_mask, prompt_lens):
        return good_labels(input_ids, attention_mask, prompt_lens)[:, 1:]
    assert "shape" in collate_labels_problems(shifted)[0]

    def stub(input_ids, attention_mask, prompt_lens):
        raise NotImplementedError
    assert check_collate_labels(stub) is False and "Not attempted" in capsys.readouterr().out
    assert torch.is_tensor(good_labels(torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2), [1]))
