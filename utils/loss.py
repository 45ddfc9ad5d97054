"""Losses, each written next to its formula.

Conventions (the Hugging Face ones): ``labels`` are aligned with ``input_ids``, the
one-position shift happens *inside* the loss, and ``-100`` marks a position that is not
trained on.

Introduced in notebook 01 (masked NLL, perplexity); the preference and RL losses in notebook 07.
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


# =========================================================================== preference learning and RLHF
def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the positions where ``mask`` is true/1 (all sequences of the batch pooled)."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum()


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    r"""Reward-model loss of the Bradley–Terry model, :math:`P(y_c \succ y_r) = \sigma(r_c - r_r)`.

    .. math:: \mathcal{L}_{BT} = -\frac1B\sum_i \log\sigma\big(r_\phi(x_i, y_{c,i}) - r_\phi(x_i, y_{r,i})\big)

    Args: ``(B,)`` scalar rewards of the chosen and the rejected response of each pair.
    ``logsigmoid`` rather than ``log(sigmoid(·))``: it stays finite for large negative margins.
    """
    return -F.logsigmoid(chosen_rewards - rejected_rewards).mean()


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100,
                      reduction: str = "sum") -> torch.Tensor:
    r"""Log-probability of each sequence's supervised tokens, :math:`\log\pi(y\mid x)=\sum_t \log\pi(y_t\mid x, y_{<t})`.

    Same shift as :func:`masked_nll`: the logits at ``t`` score the label at ``t + 1``.
    ``logits (B, T, V)``, ``labels (B, T)`` → ``(B,)``; ``reduction="mean"`` divides by each
    sequence's number of supervised tokens (a length-normalised score).
    """
    targets = F.pad(labels[:, 1:], (0, 1), value=ignore_index)
    mask = targets != ignore_index
    logp = F.log_softmax(logits.float(), dim=-1).gather(-1, targets.masked_fill(~mask, 0).unsqueeze(-1)).squeeze(-1)
    total = (logp * mask).sum(-1)
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / mask.sum(-1)
    raise ValueError(f"reduction must be 'sum' or 'mean', not {reduction!r}")


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
             beta: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Direct Preference Optimization (Rafailov et al., 2023), from summed sequence log-probs ``(B,)``.

    .. math:: \mathcal{L}_{DPO} = -\frac1B\sum_i \log\sigma\Big(\beta\big[(\log\pi_\theta(y_c) - \log\pi_{ref}(y_c))
              - (\log\pi_\theta(y_r) - \log\pi_{ref}(y_r))\big]\Big)

    Returns ``(loss, chosen_rewards, rejected_rewards)`` with the implicit rewards
    :math:`\beta(\log\pi_\theta - \log\pi_{ref})`, detached (for logging).
    """
    chosen = policy_chosen_logps - ref_chosen_logps
    rejected = policy_rejected_logps - ref_rejected_logps
    loss = -F.logsigmoid(beta * (chosen - rejected)).mean()
    return loss, (beta * chosen).detach(), (beta * rejected).detach()


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    r"""Per-token estimators of :math:`\mathrm{KL}(\pi_\theta\,\|\,\pi_{ref})` from samples of :math:`\pi_\theta` (Schulman, 2020).

    With :math:`d = \log\pi_{ref}(y_t) - \log\pi_\theta(y_t)`: k1 :math:`= -d` (unbiased, can be negative),
    k2 :math:`= d^2/2` (biased, low variance), k3 :math:`= e^{d} - 1 - d` (unbiased, always ≥ 0).
    """
    d = ref_logprobs - logprobs
    if kind == "k1":
        return -d
    if kind == "k2":
        return 0.5 * d * d
    if kind == "k3":
        return torch.expm1(d) - d
    raise ValueError(f"kind must be 'k1', 'k2' or 'k3', not {kind!r}")


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Generalised advantage estimation (Schulman et al., 2016) over response tokens.

    .. math:: \delta_t = r_t + \gamma V_{t+1} - V_t,\qquad \hat A_t = \sum_{l\ge0} (\gamma\lambda)^l\,\delta_{t+l}

    ``rewards, values, mask``: ``(B, T)``; ``mask`` is 1 on response tokens, 0 on padding after
    them. The value after a sequence's last token is 0 (the episode ends; no bootstrap).
    Returns ``(advantages, returns)`` with ``returns = advantages + values``, both 0 on padding.
    """
    mask = mask.to(values.dtype)
    B, T = rewards.shape
    advantages = torch.zeros_like(values)
    last = torch.zeros(B, dtype=values.dtype, device=values.device)
    for t in reversed(range(T)):
        next_mask = mask[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        next_value = values[:, t + 1] * next_mask if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * next_mask * last
        advantages[:, t] = last * mask[:, t]
    return advantages, (advantages + values) * mask


def ppo_clip_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                  mask: torch.Tensor, clip_eps: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    r"""PPO's clipped surrogate (Schulman et al., 2017), negated to be minimised.

    .. math:: r_t = \frac{\pi_\theta(y_t)}{\pi_{old}(y_t)},\qquad
              \mathcal{L} = -\operatorname{mean}_t \min\big(r_t\hat A_t,\ \mathrm{clip}(r_t, 1-\epsilon, 1+\epsilon)\hat A_t\big)

    averaged over every unmasked token of the batch. Returns ``(loss, clip_fraction)``: the
    share of tokens where the clipped term is the smaller one (its gradient is then zero).
    """
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * advantages
    loss = -masked_mean(torch.minimum(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped < unclipped).float(), mask).detach()
    return loss, clip_fraction


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip_eps: float = 0.2) -> torch.Tensor:
    r"""Clipped value loss: :math:`\frac12\operatorname{mean}_t\max\big((V_t-R_t)^2,\ (V^{clip}_t-R_t)^2\big)`,
    :math:`V^{clip}_t = V^{old}_t + \mathrm{clip}(V_t - V^{old}_t, -\epsilon, \epsilon)` — the value model
    may not move further than ``clip_eps`` from its rollout-time estimate in one update either."""
    clipped = old_values + torch.clamp(values - old_values, -clip_eps, clip_eps)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)
