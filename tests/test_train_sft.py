"""utils.training.train_sft: the smallest loop (notebook 01)."""
import copy

import torch

from utils.masking import build_labels, pad_collate
from utils.models import tiny_gpt2
from utils.training import train_sft

PAIRS = [("### Instruction:\nCapital of France?\n\n### Response:\n", "Paris."),
         ("### Instruction:\nTwo plus two?\n\n### Response:\n", "Four."),
         ("### Instruction:\nOpposite of hot?\n\n### Response:\n", "Cold.")]


def make_batch(tok):
    examples = [dict(zip(("input_ids", "labels"), build_labels(tok(p)["input_ids"], tok(r)["input_ids"],
                                                               tok.eos_token_id))) for p, r in PAIRS]
    return pad_collate(examples, pad_token_id=tok.eos_token_id)


def test_same_seed_same_losses_and_weights(tok):
    batch = make_batch(tok)
    start = tiny_gpt2(tok, seed=0)
    a, b = copy.deepcopy(start), copy.deepcopy(start)
    losses_a = train_sft(a, batch, steps=8, lr=5e-3, seed=11, progress=False)
    losses_b = train_sft(b, batch, steps=8, lr=5e-3, seed=11, progress=False)
    assert losses_a == losses_b                      # bit-identical on CPU
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    # dropout draws from the seeded RNG: another seed gives another run
    losses_c = train_sft(copy.deepcopy(start), batch, steps=8, lr=5e-3, seed=12, progress=False)
    assert losses_c != losses_a


def test_tiny_model_memorises_answers_and_stops(tok):
    batch = make_batch(tok)
    model = tiny_gpt2(tok, seed=0)
    losses = train_sft(model, batch, steps=60, lr=5e-3, seed=0, progress=False)
    assert losses[-1] < 0.1 * losses[0]
    assert not model.training
    for prompt, response in PAIRS:
        ids = torch.tensor([tok(prompt)["input_ids"]])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, do_sample=False,
                             pad_token_id=tok.eos_token_id)[0, ids.shape[1]:].tolist()
        assert out == tok(response)["input_ids"] + [tok.eos_token_id]
