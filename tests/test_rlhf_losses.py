"""Preference and RLHF losses against independent, loop-by-loop computations."""
import math

import pytest
import torch

from utils.loss import (bradley_terry_loss, dpo_loss, gae, kl_penalty, masked_mean, ppo_clip_loss, sequence_logprobs,
                        value_loss)

g = torch.Generator().manual_seed(0)


def padded_mask(B, T, generator):
    """Response masks with right padding: sequence b has a random length in [1, T]."""
    lengths = torch.randint(1, T + 1, (B,), generator=generator)
    return (torch.arange(T)[None, :] < lengths[:, None]).float(), lengths


def test_bradley_terry_by_hand_and_extremes():
    rc, rr = torch.randn(7, generator=g), torch.randn(7, generator=g)
    by_hand = sum(-math.log(1 / (1 + math.exp(-(c - r)))) for c, r in zip(rc.tolist(), rr.tolist())) / 7
    assert bradley_terry_loss(rc, rr).item() == pytest.approx(by_hand, rel=1e-6)
    assert bradley_terry_loss(torch.tensor([0.0]), torch.tensor([0.0])).item() == pytest.approx(math.log(2))
    assert torch.isfinite(bradley_terry_loss(torch.tensor([-200.0]), torch.tensor([200.0])))   # no log(0)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_sequence_logprobs_loop(reduction):
    B, T, V = 3, 6, 11
    logits = torch.randn(B, T, V, generator=g)
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[0, :3] = -100                       # a prompt
    labels[2, 4:] = -100                       # padding
    out = sequence_logprobs(logits, labels, reduction=reduction)
    for b in range(B):
        terms = [torch.log_softmax(logits[b, t], -1)[labels[b, t + 1]].item()
                 for t in range(T - 1) if labels[b, t + 1] != -100]
        expected = sum(terms) if reduction == "sum" else sum(terms) / len(terms)
        assert out[b].item() == pytest.approx(expected, rel=1e-5, abs=1e-5)
    with pytest.raises(ValueError):
        sequence_logprobs(logits, labels, reduction="max")


def test_dpo_loss_and_rewards():
    pc, pr, rc, rr = (torch.randn(5, generator=g) for _ in range(4))
    beta = 0.3
    loss, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta)
    by_hand = sum(-math.log(1 / (1 + math.exp(-beta * ((a - c) - (b - d)))))
                  for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist())) / 5
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)
    torch.testing.assert_close(chosen, beta * (pc - rc))        # assert_close returns None: two statements,
    torch.testing.assert_close(rejected, beta * (pr - rr))      # or the second check never runs
    assert dpo_loss(pc, pr, pc, pr, beta)[0].item() == pytest.approx(math.log(2))   # policy = reference


def test_kl_estimators():
    lp, ref = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    d = (ref - lp).tolist()
    for kind, f in [("k1", lambda x: -x), ("k2", lambda x: x * x / 2), ("k3", lambda x: math.exp(x) - 1 - x)]:
        out = kl_penalty(lp, ref, kind)
        for i in range(4):
            for j in range(5):
                assert out[i, j].item() == pytest.approx(f(d[i][j]), rel=1e-5, abs=1e-6)
    assert (kl_penalty(lp, ref, "k3") >= 0).all() and (kl_penalty(lp, lp, "k1") == 0).all()
    # k1 and k3 are unbiased: on samples from p, their mean approaches KL(p || q)
    p, q = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.4, 0.4, 0.2])
    y = torch.multinomial(p, 200_000, replacement=True, generator=g)
    exact = (p * (p / q).log()).sum().item()
    for kind in ("k1", "k3"):
        assert kl_penalty(p.log()[y], q.log()[y], kind).mean().item() == pytest.approx(exact, abs=0.01)
    with pytest.raises(ValueError):
        kl_penalty(lp, ref, "k4")


def gae_loop(rewards, values, lengths, gamma, lam):
    B, T = rewards.shape
    adv = torch.zeros(B, T)
    for b in range(B):
        n = int(lengths[b])
        for t in range(n):
            total = 0.0
            for l in range(n - t):
                nxt = values[b, t + l + 1].item() if t + l + 1 < n else 0.0
                delta = rewards[b, t + l].item() + gamma * nxt - values[b, t + l].item()
                total += (gamma * lam) ** l * delta
            adv[b, t] = total
    return adv


@pytest.mark.parametrize("gamma,lam", [(1.0, 1.0), (0.99, 0.95), (0.9, 0.0)])
def test_gae_against_the_definition(gamma, lam):
    B, T = 4, 7
    mask, lengths = padded_mask(B, T, g)
    rewards, values = torch.randn(B, T, generator=g) * mask, torch.randn(B, T, generator=g)
    adv, ret = gae(rewards, values, mask, gamma, lam)
    torch.testing.assert_close(adv, gae_loop(rewards, values, lengths, gamma, lam), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ret, (adv + values) * mask)
    assert (adv[mask == 0] == 0).all()


def test_gae_with_gamma_lambda_one_is_reward_to_go_minus_value():
    B, T = 3, 6
    mask, _ = padded_mask(B, T, g)
    rewards, values = torch.randn(B, T, generator=g) * mask, torch.randn(B, T, generator=g)
    adv, ret = gae(rewards, values, mask, 1.0, 1.0)
    to_go = rewards.flip(-1).cumsum(-1).flip(-1)           # sum of rewards from t to the end
    torch.testing.assert_close(adv, (to_go - values) * mask, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ret, to_go * mask, rtol=1e-5, atol=1e-5)


def test_ppo_clip_loss_loop_and_clip_fraction():
    B, T, eps = 3, 5, 0.2
    mask, _ = padded_mask(B, T, g)
    old = torch.randn(B, T, generator=g)
    new = old + 0.5 * torch.randn(B, T, generator=g)
    adv = torch.randn(B, T, generator=g)
    loss, frac = ppo_clip_loss(new, old, adv, mask, eps)
    terms, clipped = [], []
    for b in range(B):
        for t in range(T):
            if mask[b, t]:
                r, a = math.exp(new[b, t] - old[b, t]), adv[b, t].item()
                c = min(max(r, 1 - eps), 1 + eps)
                terms.append(min(r * a, c * a))
                clipped.append(c * a < r * a)
    assert loss.item() == pytest.approx(-sum(terms) / len(terms), rel=1e-5)
    assert frac.item() == pytest.approx(sum(clipped) / len(clipped))


def test_ppo_gradient_sign():
    """A positive advantage pushes the token's log-probability up, a negative one down — until the clip."""
    old = torch.zeros(1, 4)
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    new = torch.tensor([[0.0, 0.0, 0.5, -0.5]], requires_grad=True)     # the last two are outside the clip range
    loss, frac = ppo_clip_loss(new, old, adv, torch.ones(1, 4), 0.2)
    loss.backward()
    grad = new.grad[0]
    assert grad[0] < 0 and grad[1] > 0                   # gradient descent raises token 0, lowers token 1
    assert grad[2] == 0 and grad[3] == 0 and frac.item() == 0.5   # already moved far enough: no push


def test_value_loss_clipping():
    old = torch.zeros(1, 3)
    returns = torch.tensor([[1.0, 1.0, -1.0]])
    values = torch.tensor([[0.1, 0.9, 0.0]], requires_grad=True)
    loss = value_loss(values, old, returns, torch.tensor([[1.0, 1.0, 0.0]]), clip_eps=0.2)
    # token 0: max((0.1-1)^2, (0.1-1)^2) = 0.81; token 1: max((0.9-1)^2, (0.2-1)^2) = 0.64; token 2 masked
    assert loss.item() == pytest.approx(0.5 * (0.81 + 0.64) / 2)
    loss.backward()
    assert values.grad[0, 1] == 0                       # the clipped branch won: no gradient
    assert masked_mean(torch.tensor([1.0, 3.0, 100.0]), torch.tensor([1, 1, 0])).item() == 2.0
