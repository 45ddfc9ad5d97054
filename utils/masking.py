"""Which tokens does the model learn from?  Labels, masks and a padding collate.

Instruction tuning trains only on the response: prompt positions get the label ``-100``
(PyTorch's ``ignore_index``), response tokens and the closing EOS keep their ids. The
EOS must stay supervised, or the model never learns to stop talking.

Introduced in notebook 01 (labels of one example); the padding collate in 01 and 04, packing in 06.
"""
from __future__ import annotations

import random
import warnings
from collections.abc import Mapping, Sequence

import torch

IGNORE_INDEX = -100


def build_labels(prompt_ids: Sequence[int], response_ids: Sequence[int], eos_id: int,
                 ignore_index: int = IGNORE_INDEX) -> tuple[list[int], list[int]]:
    """Join prompt, response and EOS; supervise only the response and the EOS.

    ::

        input_ids = prompt + response + [eos]
        labels    = [-100] * len(prompt) + response + [eos]

    Labels are aligned with ``input_ids`` (not shifted): the loss shifts them
    (see :func:`utils.loss.masked_nll`).

    Returns:
        ``(input_ids, labels)`` as two lists of equal length ``len(prompt) + len(response) + 1``.
    """
    prompt_ids, response_ids = list(prompt_ids), list(response_ids)
    input_ids = prompt_ids + response_ids + [eos_id]
    labels = [ignore_index] * len(prompt_ids) + response_ids + [eos_id]
    return input_ids, labels


def pad_collate(examples: Sequence[Mapping[str, Sequence[int]]], pad_token_id: int = 50256,
                ignore_index: int = IGNORE_INDEX, max_length: int | None = None,
                ) -> dict[str, torch.Tensor]:
    """Right-pad a list of examples into a batch.

    Each example is ``{"input_ids": [...], "labels": [...]}`` (labels optional: without
    them every token of the example is supervised — plain language modelling).

    GPT-2 pads with its EOS id. Padding positions get ``ignore_index`` in the labels, but the
    example's *own* tokens keep theirs — so the first EOS of each sequence (its real end)
    stays supervised, and only the EOS copies used as padding are masked. Deciding by the
    label, not by ``token == pad_token_id``, is what keeps that first EOS.

    Args:
        max_length: truncate longer examples (from the right). A warning names every
            example left with no supervised token.
    Returns:
        ``input_ids`` ``(B, T)``, ``attention_mask`` ``(B, T)`` (1 = real token) and
        ``labels`` ``(B, T)``, all ``torch.long``, with ``T`` the longest example.
    """
    rows = []
    for i, ex in enumerate(examples):
        ids = list(ex["input_ids"])
        labels = list(ex["labels"]) if ex.get("labels") is not None else list(ids)
        if len(labels) != len(ids):
            raise ValueError(f"example {i}: {len(ids)} input_ids but {len(labels)} labels")
        if max_length is not None and len(ids) > max_length:
            ids, labels = ids[:max_length], labels[:max_length]
            if all(l == ignore_index for l in labels[1:]):
                warnings.warn(f"example {i}: truncation to {max_length} tokens left no supervised "
                              "token (the response was cut off); it adds nothing to the loss",
                              stacklevel=2)
        rows.append((ids, labels))
    T = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), T), pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), T), ignore_index, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), T), dtype=torch.long)
    for b, (ids, labs) in enumerate(rows):
        input_ids[b, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        labels[b, :len(labs)] = torch.tensor(labs, dtype=torch.long)
        attention_mask[b, :len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int = 0) -> list[list[int]]:
    """Batches of example indices with similar lengths, so little of each batch is padding.

    Sort the examples by length, cut the sorted list into batches, then shuffle the *order of
    the batches* (seeded), so training does not see short examples first and long ones last.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    random.Random(seed).shuffle(batches)
    return batches


def real_tokens(batch: Mapping[str, torch.Tensor]) -> int:
    """Non-padding positions in a batch: its attention mask's sum, or a packed batch's ``n_real``."""
    n_real = getattr(batch, "n_real", None)
    return int(n_real) if n_real is not None else int(batch["attention_mask"].sum())


def padding_waste(batches: Sequence[Mapping[str, torch.Tensor]]) -> float:
    """Share of all positions in ``batches`` that are padding — padded (``pad_collate``) or packed
    (``collate_packed``) batches alike."""
    total = sum(b["input_ids"].numel() for b in batches)
    return 1 - sum(real_tokens(b) for b in batches) / total if total else 0.0


def pack_examples(examples: Sequence[Mapping[str, Sequence[int]]], max_length: int,
                  ignore_index: int = IGNORE_INDEX) -> list[dict[str, list[int]]]:
    """Pack examples into rows of at most ``max_length`` tokens (first-fit, longest first).

    Each row concatenates whole examples; ``position_ids`` restart at 0 for every example, which
    is how transformers (5.x) recognises packed sequences and builds a block-diagonal causal
    mask — pass ``position_ids``, ``use_cache=False`` and *no* ``attention_mask`` (with a cache,
    or a mask, the detection is skipped and examples would attend to each other): tokens
    attend only within their own example. Each example's first label is set to ``ignore_index``, so the last token of one
    example is never trained to predict the first token of the next. Longer examples are
    truncated to ``max_length``.
    """
    items = []
    for ex in examples:
        ids = list(ex["input_ids"])[:max_length]
        labels = (list(ex["labels"]) if ex.get("labels") is not None else list(ex["input_ids"]))[:max_length]
        labels[0] = ignore_index
        items.append((ids, labels))
    rows: list[dict[str, list[int]]] = []
    for ids, labels in sorted(items, key=lambda it: -len(it[0])):
        row = next((r for r in rows if len(r["input_ids"]) + len(ids) <= max_length), None)
        if row is None:
            row = {"input_ids": [], "labels": [], "position_ids": []}
            rows.append(row)
        row["input_ids"] += ids
        row["labels"] += labels
        row["position_ids"] += list(range(len(ids)))
    return rows


class PackedBatch(dict):
    """The model inputs of a packed batch (``model(**batch)`` works), plus ``n_real``, the number of real
    (non-padding) tokens, as an attribute: it is not a model input, and a packed batch has no attention
    mask to count them from."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], n_real: int):
        super().__init__(tensors)
        self.n_real = n_real


def collate_packed(rows: Sequence[Mapping[str, Sequence[int]]], pad_token_id: int = 50256,
                   ignore_index: int = IGNORE_INDEX) -> PackedBatch:
    """Batch packed rows: ``input_ids``, ``labels``, ``position_ids`` ``(B, T)``, no attention mask.

    Right padding forms one more "example" of its own (positions restart at 0), so it cannot
    leak into real tokens; its labels are ``ignore_index``. ``batch.n_real`` counts real tokens.
    """
    T = max(len(r["input_ids"]) for r in rows)
    input_ids = torch.full((len(rows), T), pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), T), ignore_index, dtype=torch.long)
    position_ids = torch.zeros((len(rows), T), dtype=torch.long)
    for b, r in enumerate(rows):
        n = len(r["input_ids"])
        input_ids[b, :n] = torch.tensor(r["input_ids"])
        labels[b, :n] = torch.tensor(r["labels"])
        position_ids[b, :n] = torch.tensor(r["position_ids"])
        position_ids[b, n:] = torch.arange(T - n)
    return PackedBatch({"input_ids": input_ids, "labels": labels, "position_ids": position_ids},
                       n_real=sum(len(r["input_ids"]) for r in rows))
