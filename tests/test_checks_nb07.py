"""Tests of the checkers for notebook 07: the reward, PPO and DPO losses."""

import pytest

from utils import checks


def _stub(*args, **kwargs):
    raise NotImplementedError("write it")


def test_bt_loss_checker():
    import torch
    import torch.nn.functional as F

    from utils.loss import bradley_terry_loss
    assert checks.bt_loss_problems(bradley_terry_loss) == []
    with pytest.raises(checks.NotAttempted, match="not implemented"):
        checks.bt_loss_problems(_stub)
    assert "swapped" in checks.bt_loss_problems(lambda c, r: bradley_terry_loss(r, c))[0]
    assert "logsigmoid" in checks.bt_loss_problems(lambda c, r: -torch.log(torch.sigmoid(c - r)).mean())[0]
    assert "summed" in checks.bt_loss_problems(lambda c, r: -F.logsigmoid(c - r).sum())[0]


def test_ppo_clip_checker():
    import torch

    from utils.loss import masked_mean, ppo_clip_loss
    assert checks.ppo_clip_problems(lambda *a: ppo_clip_loss(*a)[0]) == []
    with pytest.raises(checks.NotAttempted, match="not implemented"):
        checks.ppo_clip_problems(_stub)
    assert "sign" in checks.ppo_clip_problems(lambda *a: -ppo_clip_loss(*a)[0])[0]

    def no_mask(lp, old, adv, mask, eps):
        r = torch.exp(lp - old)
        return -torch.minimum(r * adv, r.clamp(1 - eps, 1 + eps) * adv).mean()
    assert "padding" in checks.ppo_clip_problems(no_mask)[0]

    def no_clip(lp, old, adv, mask, eps):
        return -masked_mean(torch.exp(lp - old) * adv, mask)
    assert "no clipping" in checks.ppo_clip_problems(no_clip)[0]


def test_dpo_loss_checker():
    import torch

    from utils.loss import dpo_loss
    assert checks.dpo_loss_problems(lambda *a: dpo_loss(*a)[0]) == []
    with pytest.raises(checks.NotAttempted, match="not implemented"):
        checks.dpo_loss_problems(_stub)
    no_ref = lambda pc, pr, rc, rr, beta: dpo_loss(pc, pr, torch.zeros_like(rc), torch.zeros_like(rr), beta)[0]
    assert "reference model is missing" in checks.dpo_loss_problems(no_ref)[0]
    assert "β is missing" in checks.dpo_loss_problems(lambda pc, pr, rc, rr, beta: dpo_loss(pc, pr, rc, rr, 1.0)[0])[0]
