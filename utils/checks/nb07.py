"""Notebook 07 — RLHF: the Bradley–Terry, PPO-clip and DPO losses.

Each ``check_*`` prints the verdict for the learner (see :mod:`utils.checks.feedback`); each ``*_problems``
returns what is wrong, for the tests.
"""
from __future__ import annotations

import torch

from ..loss import bradley_terry_loss, dpo_loss, masked_mean, ppo_clip_loss
from .feedback import attempt, verdict


def _close(a, b, tol=1e-5) -> bool:
    return bool(torch.isfinite(torch.as_tensor(a)).all()) and abs(float(a) - float(b)) <= tol * max(1.0, abs(float(b)))


def bt_loss_problems(bt_loss) -> list[str]:
    """``bt_loss(chosen_rewards, rejected_rewards) -> scalar``: mean of −log σ(r_c − r_r)."""
    g = torch.Generator().manual_seed(0)
    rc, rr = torch.randn(8, generator=g), torch.randn(8, generator=g)
    got, problem = attempt(bt_loss, rc, rr)
    if problem:
        return [problem]
    expected = bradley_terry_loss(rc, rr)
    if not _close(got, expected):
        if _close(got, bradley_terry_loss(rr, rc)):
            return ["chosen and rejected are swapped: the loss must be small when r_chosen > r_rejected"]
        if _close(got, 8 * expected):
            return ["you summed over the pairs; take the mean"]
        return [f"on 8 random pairs you gave {float(got):.5f}, expected {float(expected):.5f} = "
                "mean(−log σ(r_c − r_r))"]
    big, problem = attempt(bt_loss, torch.tensor([-200.0]), torch.tensor([200.0]))
    if problem or not torch.isfinite(torch.as_tensor(big)):
        return ["a margin of −400 gives inf/nan: σ(−400) rounds to 0 and log(0) = −inf; use F.logsigmoid"]
    return []


def ppo_clip_problems(ppo_clip) -> list[str]:
    """``ppo_clip(logprobs, old_logprobs, advantages, mask, clip_eps) -> scalar loss``."""
    g = torch.Generator().manual_seed(0)
    B, T = 4, 6
    old = torch.randn(B, T, generator=g)
    new = old + 0.6 * torch.randn(B, T, generator=g)
    adv = torch.randn(B, T, generator=g)
    mask = (torch.arange(T)[None] < torch.tensor([[6], [3], [5], [1]])).float()
    got, problem = attempt(ppo_clip, new, old, adv, mask, 0.2)
    if problem:
        return [problem]
    expected, _ = ppo_clip_loss(new, old, adv, mask, 0.2)
    if _close(got, expected):
        return []
    ratio = torch.exp(new - old)
    unclipped, clipped = ratio * adv, ratio.clamp(0.8, 1.2) * adv
    if _close(got, -expected):
        return ["the sign is flipped: PPO *maximises* the surrogate, so the loss is −mean(min(...))"]
    if _close(got, -masked_mean(torch.maximum(unclipped, clipped), mask)):
        return ["use the minimum of the clipped and unclipped terms (the pessimistic bound), not the maximum"]
    if _close(got, -torch.minimum(unclipped, clipped).mean()):
        return ["padding is averaged in: average over the tokens where mask is 1 only"]
    if _close(got, -masked_mean(unclipped, mask)):
        return ["no clipping: min(r·A, clip(r, 1−ε, 1+ε)·A)"]
    if _close(got, -masked_mean(torch.minimum((new - old) * adv, (new - old).clamp(-0.2, 0.2) * adv), mask)):
        return ["the ratio is π/π_old = exp(logprobs − old_logprobs), not their difference"]
    return [f"on a padded batch you gave {float(got):.5f}, expected {float(expected):.5f}"]


def dpo_loss_problems(my_dpo_loss) -> list[str]:
    """``my_dpo_loss(pi_chosen, pi_rejected, ref_chosen, ref_rejected, beta) -> scalar loss``."""
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(6, generator=g) * 5 for _ in range(4))
    got, problem = attempt(my_dpo_loss, pc, pr, rc, rr, 0.1)
    if problem:
        return [problem]
    expected = dpo_loss(pc, pr, rc, rr, 0.1)[0]
    if _close(got, expected):
        return []
    if _close(got, dpo_loss(pc, pr, torch.zeros(6), torch.zeros(6), 0.1)[0]):
        return ["the reference model is missing: the margin is (log π(y_c) − log π_ref(y_c)) − (log π(y_r) − log π_ref(y_r))"]
    if _close(got, dpo_loss(pr, pc, rr, rc, 0.1)[0]):
        return ["chosen and rejected are swapped"]
    if _close(got, dpo_loss(pc, pr, rc, rr, 1.0)[0]):
        return ["β is missing: multiply the margin by beta inside the sigmoid"]
    return [f"you gave {float(got):.5f}, expected {float(expected):.5f} = mean(−log σ(β·margin))"]


def check_bt_loss(bt_loss) -> bool:
    """Print feedback on notebook 07's Bradley–Terry loss; True when right."""
    return verdict(bt_loss_problems, bt_loss,
                   success="✅ Bradley–Terry loss: mean of −log σ(r_c − r_r), finite for any margin.")


def check_ppo_clip(ppo_clip) -> bool:
    """Print feedback on notebook 07's PPO clipped surrogate; True when right."""
    return verdict(ppo_clip_problems, ppo_clip,
                   success="✅ PPO clipped surrogate: ratio, clip, minimum, mean over real tokens.")


def check_dpo_loss(my_dpo_loss) -> bool:
    """Print feedback on notebook 07's DPO loss; True when right."""
    return verdict(dpo_loss_problems, my_dpo_loss,
                   success="✅ DPO loss: −log σ(β[(π_c − ref_c) − (π_r − ref_r)]), averaged.")
