"""Losses, each written next to its formula.

Conventions (the Hugging Face ones): ``labels`` are aligned with ``input_ids``, the
one-position shift happens *inside* the loss, and ``-100`` marks a position that is not
trained on.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def masked_nll(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100,
               reduction: str = "mean") -> torch.Tensor:
    r"""Mean negative log-likelihood over the supervised tokens.

    .. math:: \mathcal{L} = -\frac{1}{N}\sum_{t:\,y_{t+1}\neq -100} \log P_\theta(y_{t+1}\mid x_{\le t})

    The logits at position ``t`` predict the token at ``t + 1``, so the labels move one step
    left and the last position gets no target. ``N`` counts the supervised targets of the whole batch
    (every token weighs the same, whichever sequence it is in) — the same reduction as
    ``model(input_ids, labels=labels).loss`` in transformers.

    Args:
        logits: ``(batch, T, vocab)``.
        labels: ``(batch, T)`` token ids, ``ignore_index`` where nothing is trained.
        reduction: ``"mean"`` (default) or ``"sum"`` — the sum lets gradient accumulation weigh
            every token equally across micro-batches (divide by the step's total token count).
    Returns:
        a scalar tensor. With ``"mean"``, NaN if no position is supervised (nothing to average).
    """
    # Shift the labels, not the logits: position t is scored on label t+1 and the last
    # position has no target. (Slicing the large logits tensor would copy it.)
    targets = F.pad(labels[:, 1:], (0, 1), value=ignore_index)     # (B, T)
    mask = targets != ignore_index                                   # (B, T)
    logp = F.log_softmax(logits.float(), dim=-1)                     # (B, T, V): log P(v | x_<=t)
    safe = targets.masked_fill(~mask, 0)                             # any valid id; zeroed by the mask
    token_logp = logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)     # (B, T)
    total = -token_logp.masked_fill(~mask, 0.0).sum()
    if reduction == "sum":
        return total
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'sum', not {reduction!r}")
    return total / mask.sum()


def n_targets(labels: torch.Tensor, ignore_index: int = -100) -> int:
    """How many positions :func:`masked_nll` scores: labels after the first position that are not ignored."""
    return int((labels[:, 1:] != ignore_index).sum())


def perplexity(loss: float | torch.Tensor) -> float:
    r"""Perplexity :math:`e^{\mathcal{L}}` of a mean per-token NLL (natural log).

    A perplexity of k means the model is, on average, as unsure as a uniform choice among
    k tokens; a random model over GPT-2's vocabulary sits near 50257.
    """
    value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    return math.exp(value)
