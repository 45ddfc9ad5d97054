import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.masking import IGNORE_INDEX, build_labels, pad_collate

EOS = 50256
token_lists = st.lists(st.integers(0, 50256), max_size=20)


@settings(max_examples=200)
@given(prompt=token_lists, response=token_lists)
def test_build_labels_supervises_exactly_response_and_eos(prompt, response):
    input_ids, labels = build_labels(prompt, response, EOS)
    assert input_ids == prompt + response + [EOS]
    assert len(labels) == len(input_ids)
    supervised = [i for i, l in enumerate(labels) if l != IGNORE_INDEX]
    assert supervised == list(range(len(prompt), len(input_ids)))     # response positions + the EOS
    assert [labels[i] for i in supervised] == response + [EOS]         # with their own ids
    assert labels[-1] == EOS


@settings(max_examples=150)
@given(st.lists(st.tuples(st.lists(st.integers(0, 50255), max_size=8),
                          st.lists(st.integers(0, 50255), min_size=0, max_size=8)), min_size=1, max_size=5))
def test_pad_collate_keeps_first_eos_and_masks_padding(pairs):
    examples = [dict(zip(("input_ids", "labels"), build_labels(p, r, EOS))) for p, r in pairs]
    batch = pad_collate(examples, pad_token_id=EOS)
    T = max(len(e["input_ids"]) for e in examples)
    assert all(batch[k].shape == (len(examples), T) for k in ("input_ids", "attention_mask", "labels"))
    for b, ((p, r), ex) in enumerate(zip(pairs, examples)):
        n = len(ex["input_ids"])
        assert batch["input_ids"][b, :n].tolist() == ex["input_ids"]
        assert batch["labels"][b, :n].tolist() == ex["labels"]
        assert batch["attention_mask"][b].tolist() == [1] * n + [0] * (T - n)
        # the sequence's own (first) EOS is a target; every padding EOS after it is not
        first_eos = len(p) + len(r)
        assert batch["labels"][b, first_eos] == EOS
        assert (batch["input_ids"][b, n:] == EOS).all() and (batch["labels"][b, n:] == IGNORE_INDEX).all()


def test_pad_collate_without_labels_is_language_modelling():
    batch = pad_collate([{"input_ids": [5, 6, EOS]}, {"input_ids": [7]}], pad_token_id=EOS)
    assert batch["labels"].tolist() == [[5, 6, EOS], [7, -100, -100]]
    assert batch["input_ids"].tolist() == [[5, 6, EOS], [7, EOS, EOS]]


def test_pad_collate_does_not_mask_by_token_value():
    """An EOS id inside the real tokens (e.g. a document separator) keeps its label."""
    ids, labels = build_labels([1, EOS, 2], [3, EOS, 4], EOS)
    batch = pad_collate([{"input_ids": ids, "labels": labels}, {"input_ids": ids + [9, 9], "labels": labels + [9, 9]}])
    assert batch["labels"][0].tolist() == [-100, -100, -100, 3, EOS, 4, EOS, -100, -100]


def test_pad_collate_truncation_warns_when_nothing_left_to_learn():
    ids, labels = build_labels(list(range(10)), [11, 12], EOS)
    with pytest.warns(UserWarning, match="example 1: truncation to 6 tokens left no supervised token"):
        batch = pad_collate([{"input_ids": ids[:4], "labels": labels[:4]}, {"input_ids": ids, "labels": labels}],
                            max_length=6)
    assert batch["input_ids"].shape == (2, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pad_collate([{"input_ids": ids, "labels": labels}], max_length=12)   # response survives: no warning


def test_pad_collate_rejects_misaligned_labels():
    with pytest.raises(ValueError, match="example 0: 3 input_ids but 2 labels"):
        pad_collate([{"input_ids": [1, 2, 3], "labels": [1, 2]}])


def test_length_grouped_batches_cover_everything_once_and_waste_little():
    from utils.masking import length_grouped_batches, padding_waste
    import random
    rng = random.Random(0)
    lengths = [rng.randint(5, 200) for _ in range(400)]
    batches = length_grouped_batches(lengths, 16, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(400))
    assert batches == length_grouped_batches(lengths, 16, seed=1) != length_grouped_batches(lengths, 16, seed=2)
    def collated(groups):
        return [pad_collate([{"input_ids": [1] * lengths[i]} for i in g]) for g in groups]
    naive = [list(range(i, min(i + 16, 400))) for i in range(0, 400, 16)]
    assert padding_waste(collated(batches)) < 0.05 < padding_waste(collated(naive))


def test_packed_examples_do_not_see_each_other(tok):
    """The loss of a packed batch equals the summed losses of its examples run one by one."""
    from utils.loss import masked_nll
    from utils.masking import collate_packed, pack_examples
    from utils.models import tiny_gpt2
    model = tiny_gpt2(tok, seed=0).eval()
    texts = [("Name a colour.", "Blue."), ("Add two and three.", "Five, because 2 + 3 = 5."),
             ("Say hi.", "Hi!"), ("Spell cat.", "C-A-T.")]
    examples = [dict(zip(("input_ids", "labels"), build_labels(tok(p)["input_ids"], tok(r)["input_ids"], EOS)))
                for p, r in texts]
    rows = pack_examples(examples, max_length=24)
    assert len(rows) < len(examples) and all(len(r["input_ids"]) <= 24 for r in rows)
    assert sum(len(r["input_ids"]) for r in rows) == sum(len(e["input_ids"]) for e in examples)
    batch = collate_packed(rows)
    packed = masked_nll(model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits,
                        batch["labels"], reduction="sum")
    separate = sum(masked_nll(model(input_ids=torch.tensor([e["input_ids"]])).logits,
                              torch.tensor([e["labels"]]), reduction="sum") for e in examples)
    assert torch.allclose(packed, separate, rtol=1e-5, atol=1e-4), (packed, separate)
    # with a cache (the default in eval mode) the packing is not detected: examples would see each other
    leaky = masked_nll(model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits,
                       batch["labels"], reduction="sum")
    assert not torch.allclose(leaky, separate, rtol=1e-5, atol=1e-4)


def test_packed_batch_is_model_inputs_and_counts_its_padding():
    """`collate_packed` returns only model inputs (so `model(**batch)` works); its real-token count rides
    along as an attribute, and `padding_waste`/`real_tokens` read it."""
    from utils.masking import collate_packed, pad_collate, padding_waste, real_tokens
    rows = [{"input_ids": [1, 2, 3, 4, 5], "labels": [-100, 2, 3, 4, 5], "position_ids": [0, 1, 2, 0, 1]},
            {"input_ids": [6, 7], "labels": [-100, 7], "position_ids": [0, 1]}]
    batch = collate_packed(rows)
    assert set(batch) == {"input_ids", "labels", "position_ids"}
    assert real_tokens(batch) == 7 and batch["input_ids"].shape == (2, 5)
    assert padding_waste([batch]) == pytest.approx(3 / 10)
    padded = pad_collate([{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}, {"input_ids": [4], "labels": [4]}])
    assert real_tokens(padded) == 4 and padding_waste([padded, batch]) == pytest.approx(1 - 11 / 16)
