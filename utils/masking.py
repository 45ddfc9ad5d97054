"""Which tokens does the model learn from?  Labels, masks and a padding collate.

Instruction tuning trains only on the response: prompt positions get the label ``-100``
(PyTorch's ``ignore_index``), response tokens and the closing EOS keep their ids. The
EOS must stay supervised, or the model never learns to stop talking.
"""
from __future__ import annotations

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
