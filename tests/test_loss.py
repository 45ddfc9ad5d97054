import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.loss import masked_nll, perplexity
from utils.masking import build_labels, pad_collate


def reference_nll(logits, labels):
    """Independent computation: shift the logits (not the labels), then F.cross_entropy."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).double(),
                           labels[:, 1:].reshape(-1), ignore_index=-100).float()


@settings(max_examples=60, deadline=None)
@given(B=st.integers(1, 4), T=st.integers(2, 12), V=st.integers(2, 30), seed=st.integers(0, 2**16),
       p_mask=st.floats(0, 0.9))
def test_masked_nll_equals_cross_entropy_after_shift(B, T, V, seed, p_mask):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g) * 3
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[torch.rand(B, T, generator=g) < p_mask] = -100
    labels[0, 1] = int(torch.randint(0, V, (1,), generator=g))  # at least one supervised target
    torch.testing.assert_close(masked_nll(logits, labels), reference_nll(logits, labels), rtol=1e-5, atol=1e-5)


def test_masked_nll_ignores_first_label_and_masked_positions():
    logits = torch.randn(1, 5, 7)
    labels = torch.tensor([[3, -100, 2, 4, 1]])
    base = masked_nll(logits, labels)
    changed_first = labels.clone()
    changed_first[0, 0] = 6          # position 0 is never a target (nothing predicts it)
    torch.testing.assert_close(masked_nll(logits, changed_first), base)
    changed_last_logits = logits.clone()
    changed_last_logits[0, -1] += 5  # the last position predicts nothing
    torch.testing.assert_close(masked_nll(changed_last_logits, labels), base)
    changed_target = labels.clone()
    changed_target[0, 2] = 5
    assert not torch.allclose(masked_nll(logits, changed_target), base)


def test_masked_nll_by_hand_small_case():
    # two positions scored: logits[0] -> label[1]=1, logits[1] -> label[2]=0
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [9.0, 9.0]]])
    labels = torch.tensor([[-100, 1, 0]])
    expected = -(math.log(0.5) + math.log(0.75)) / 2
    assert masked_nll(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_masked_nll_equals_model_loss(tok):
    from utils.models import tiny_gpt2
    model = tiny_gpt2(tok, seed=3)
    pairs = [("### Instruction:\nSay hi\n\n### Response:\n", "Hi!"),
             ("### Instruction:\nName a colour.\n\n### Response:\n", "Blue is a colour.")]
    batch = pad_collate([dict(zip(("input_ids", "labels"), build_labels(tok(p)["input_ids"], tok(r)["input_ids"],
                                                                        tok.eos_token_id))) for p, r in pairs])
    out = model(**batch)
    torch.testing.assert_close(masked_nll(out.logits, batch["labels"]), out.loss, rtol=1e-6, atol=1e-6)


def test_masked_nll_gradient_only_on_supervised_positions():
    logits = torch.randn(2, 6, 11, requires_grad=True)
    labels = torch.full((2, 6), -100)
    labels[0, 3:] = torch.tensor([1, 2, 3])
    masked_nll(logits, labels).backward()
    has_grad = logits.grad.abs().sum(-1) > 0
    expected = torch.zeros(2, 6, dtype=torch.bool)
    expected[0, 2:5] = True          # logits at t feed label t+1
    assert torch.equal(has_grad, expected)


def test_perplexity():
    assert perplexity(0.0) == 1.0
    assert perplexity(torch.tensor(math.log(50257.0))) == pytest.approx(50257.0)
    assert perplexity(math.log(4)) == pytest.approx(4.0)
