"""Notebook 06 — GPT-2 Large, part 2: stability and compute (schedule, clipping, scaling, norms, FLOPs, accumulation).

Each ``check_*`` prints the verdict for the learner (see :mod:`utils.checks.feedback`); each ``*_problems``
returns what is wrong, for the tests. Each ``*_reference`` is the course's answer to an exercise that has none in
``utils``: the notebook's later cells use it (through ``yours_or_reference``) only while the learner's function is
still the stub.
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch

from ..loss import masked_nll, n_targets
from ..masking import IGNORE_INDEX, pad_collate
from ..memory import GPT2_LARGE, GPT2_SMALL
from ..models import TINY_GPT2, tiny_model
from ..training import TrainConfig, flops_per_token, grad_norms_by_group, lr_at, model_part
from .feedback import attempt, not_written, verdict


def _lr_slips(step: int, max_lr: float, warmup: int, total: int, min_lr: float) -> dict[str, float]:
    """{what went wrong: the learning rate that slip gives at ``step``} for the schedules learners write most often."""
    def cosine(progress, floor=min_lr, peak=max_lr):
        return floor + 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))) * (peak - floor)
    right = lr_at(step, TrainConfig(max_steps=total, lr=max_lr, warmup_steps=warmup, min_lr=min_lr))
    after = step >= warmup
    p = (step - warmup) / (total - 1 - warmup)
    return {
        "warmup is linear and starts above 0: step s (0-based) gets max_lr·(s+1)/warmup_steps, so the first step "
        "already learns and the last warmup step reaches max_lr — yours starts at 0 (max_lr·s/warmup_steps)":
            right if after else max_lr * step / warmup,
        "your warmup divides by warmup_steps + 1 (nanoGPT's (it+1)/(warmup_iters+1)): it reaches max_lr one step "
        "late; here step s gets max_lr·(s+1)/warmup_steps":
            right if after else max_lr * (step + 1) / (warmup + 1),
        "your cosine decays to 0 and ignores min_lr: min_lr + ½(1 + cos(π·progress))·(max_lr − min_lr)":
            right if not after else cosine(p, floor=0.0),
        "your cosine adds min_lr on top of the full swing (min_lr + ½(1 + cos)·max_lr starts above max_lr): the swing "
        "is max_lr − min_lr":
            right if not after else min_lr + 0.5 * (1 + math.cos(math.pi * min(p, 1.0))) * max_lr,
        "off by one at the end: progress = (step − warmup)/(total − warmup) never reaches 1, so the last step "
        "(total − 1) stays above min_lr; divide by total − 1 − warmup":
            right if not after else cosine((step - warmup) / (total - warmup)),
        "your decay starts one step too soon (progress = (step − warmup + 1)/(total − warmup)): the first step after "
        "warmup must still get max_lr — progress = (step − warmup)/(total − 1 − warmup)":
            right if not after else cosine((step - warmup + 1) / (total - warmup)),
        "your decay is a straight line; the schedule follows half a cosine, ½(1 + cos(π·progress))":
            right if not after else min_lr + (1 - min(p, 1.0)) * (max_lr - min_lr),
        "your cosine runs over the whole training, not just the steps after warmup: progress = (step − warmup)/"
        "(total − 1 − warmup)":
            right if not after else cosine(step / (total - 1)),
        "your schedule counts steps from 1 (warmup max_lr·step/warmup_steps, progress over total − warmup), but the "
        "steps are 0-based: step s gets max_lr·(s+1)/warmup_steps, and progress = (step − warmup)/(total − 1 − warmup) "
        "reaches 1 at the last step, total − 1":
            max_lr * step / warmup if not after else cosine((step - warmup) / (total - warmup)),
    }


def lr_schedule_problems(lr_schedule) -> list[str]:
    """``lr_schedule(step, max_lr, warmup_steps, total_steps, min_lr) -> float``, 0-based steps (= utils.training.lr_at)."""
    cfg = TrainConfig(max_steps=50, lr=1e-3, warmup_steps=10, min_lr=1e-4)
    close = lambda a, b: abs(a - b) <= 1e-9 + 1e-6 * abs(b)
    got_all, first_wrong = [], None
    for step in range(50):
        got, problem = attempt(lr_schedule, step, cfg.lr, cfg.warmup_steps, cfg.max_steps, cfg.min_lr)
        if problem:
            return [problem]
        try:
            got = float(got)
        except (TypeError, ValueError):
            return [f"step {step}: return the learning rate as a number, not {type(got).__name__}"]
        got_all.append(got)
        expected = lr_at(step, cfg)
        if first_wrong is None and not close(got, expected):
            first_wrong = (step, got, expected)
    if first_wrong is None:
        return []
    step, got, expected = first_wrong
    slips = [why for why in _lr_slips(0, cfg.lr, cfg.warmup_steps, cfg.max_steps, cfg.min_lr)
             if all(close(g, _slip_value(why, s, cfg)) for s, g in enumerate(got_all))]
    if slips:
        why = slips[0]
    elif step < cfg.warmup_steps:
        why = ("warmup is linear and starts above 0: step s (0-based) gets max_lr·(s+1)/warmup_steps, "
               "so the first step already learns and the last warmup step reaches max_lr")
    elif step == cfg.max_steps - 1:
        why = "the cosine must reach min_lr exactly at the last step (progress = 1 there)"
    else:
        why = ("after warmup: min_lr + ½(1 + cos(π·progress))·(max_lr − min_lr) with "
               "progress = (step − warmup)/(total − 1 − warmup)")
    return [f"step {step}: you gave {got:.4g}, expected {expected:.4g} — {why}"]


def _slip_value(why: str, step: int, cfg: TrainConfig) -> float:
    return _lr_slips(step, cfg.lr, cfg.warmup_steps, cfg.max_steps, cfg.min_lr)[why]


def clip_problems(clip_global_norm) -> list[str]:
    """``clip_global_norm(parameters, max_norm) -> total norm before clipping``; scales the grads in place."""
    def params(seed):
        g = torch.Generator().manual_seed(seed)
        ps = [torch.nn.Parameter(torch.zeros(s)) for s in [(4, 3), (7,), (2, 2, 2)]]
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g) * 3
        return ps
    mine, ref, original = params(0), params(0), params(0)
    got, problem = attempt(clip_global_norm, mine, 1.0)
    if problem:
        return [problem]
    expected = float(torch.nn.utils.clip_grad_norm_(ref, 1.0))
    grads = [p.grad for p in original]
    problems = []
    try:
        got = None if got is None else float(got)
    except (TypeError, ValueError, RuntimeError):
        return [f"return the global norm before clipping as one number, not {type(got).__name__}"]
    if got is None or abs(got - expected) > 1e-4 * expected:
        after = float(torch.sqrt(sum((p.grad ** 2).sum() for p in mine)))
        other_norms = {
            after: " (that is the norm after clipping: return the one before)",
            float(sum(g.norm() for g in grads)): " (that is the sum of the per-tensor norms: norms do not add — take "
                                                 "the root of the sum of ALL squared entries)",
            float(sum(g.abs().sum() for g in grads)): " (that is the L1 norm, the sum of |g|: the global norm is the L2 "
                                                      "norm, √(Σ g²) over all gradients)",
            float(max(g.abs().max() for g in grads)): " (that is the largest |g|, the ∞-norm: the global norm is the "
                                                      "L2 norm, √(Σ g²) over all gradients)",
            float(sum((g ** 2).sum() for g in grads)): " (that is the sum of squares: take its square root)",
        }
        hint = "" if got is None else next((h for v, h in other_norms.items() if abs(got - v) < 1e-4 * abs(v)), "")
        if got is None:
            hint = " (your function returned nothing: return the norm before clipping)"
        problems.append(f"returned {'nothing' if got is None else f'{got:.4f}'}, expected the global norm before "
                        f"clipping {expected:.4f}{hint}")
    def like(tensors) -> bool:
        return all(torch.allclose(p.grad, t, rtol=1e-4, atol=1e-6) for p, t in zip(mine, tensors))
    per_tensor = like([g * min(1.0, 1.0 / (float(g.norm()) + 1e-6)) for g in grads])
    value_clipped = like([g.clamp(-1.0, 1.0) for g in grads])
    flat, flat_orig = torch.cat([p.grad.flatten() for p in mine]), torch.cat([g.flatten() for g in grads])
    factor = float(flat @ flat_orig / (flat_orig @ flat_orig))
    one_factor = like([g * factor for g in grads])
    diff = max(float((a.grad - b.grad).abs().max()) for a, b in zip(mine, ref))
    unchanged = all(torch.equal(a.grad, b.grad) for a, b in zip(mine, original))
    small, ref_small = params(1), params(1)
    for p, q in zip(small, ref_small):
        p.grad.mul_(1e-3)
        q.grad.mul_(1e-3)
    attempt(clip_global_norm, small, 1.0)
    small_changed = any(not torch.allclose(p.grad, q.grad) for p, q in zip(small, ref_small))
    if unchanged and small_changed:
        problems.append("your condition is the wrong way round: gradients whose global norm is above max_norm were left "
                        "as they were and the small ones were scaled — clip only when the norm is above max_norm")
        return problems
    if unchanged:
        problems.append("the gradients were not changed: scale each p.grad in place (p.grad.mul_(factor)); "
                        "`g = g * factor` only makes a new tensor and rebinds a local name")
    elif per_tensor:
        problems.append("each tensor was clipped on its own; clip all gradients together by ONE factor "
                        "max_norm / global_norm, so their directions relative to each other are kept")
    elif value_clipped:
        problems.append("you clipped each value to ±max_norm (clamp, clip_grad_value_): that changes the gradient's "
                        "direction; scale all gradients by ONE factor max_norm / global_norm instead")
    elif diff > 1e-5 and one_factor:
        problems.append(f"all gradients were scaled by one factor — right — but by {factor:.4g}, not by "
                        f"max_norm / global_norm = {1.0 / expected:.4g}: the global norm is √(Σ g²) over all gradients "
                        "together")
    elif diff > 1e-5:
        problems.append(f"the gradients after clipping differ from torch's by up to {diff:.3g}: multiply every "
                        "gradient by min(1, max_norm / (global_norm + 1e-6)) in place")
    if small_changed:
        problems.append("gradients already below max_norm were changed: only scale down, never up")
    return problems


def loss_scale_problems(next_loss_scale) -> list[str]:
    """``next_loss_scale(scale, found_inf, good_steps, growth_interval) -> (scale, good_steps)`` (GradScaler's rule)."""
    def reference(scale, found_inf, good, interval):
        if found_inf:
            return scale * 0.5, 0
        good += 1
        return (scale * 2.0, 0) if good == interval else (scale, good)
    state = (65536.0, 0)
    pattern = [False, False, True, False, False, False, True, True, False, False, False, False]
    for i, inf in enumerate(pattern):
        expected = reference(state[0], inf, state[1], 3)
        got, problem = attempt(next_loss_scale, state[0], inf, state[1], 3)
        if problem:
            return [problem]
        try:
            got = None if got is None else tuple(got)
            if got is not None and len(got) != 2:
                raise ValueError
        except (TypeError, ValueError):
            return [f"return a pair (scale, good_steps), not {got!r}"]
        if got != expected:
            what = ("an overflow halves the scale and resets the count of good steps" if inf else
                    "a good step adds 1 to the count; after growth_interval good steps in a row the scale doubles "
                    "and the count restarts")
            slip = "" if got is None else _loss_scale_slip(next_loss_scale, got, expected, state, inf, 3)
            return [f"call {i + 1} (found_inf={inf}, scale={state[0]:g}, good_steps={state[1]}): you returned "
                    f"{got}, expected {expected} — {slip + '; ' if slip else ''}{what}"]
        state = expected
    return []


def _loss_scale_slip(next_loss_scale, got: tuple, expected: tuple, state: tuple, inf: bool, interval: int) -> str:
    """The likely slip behind one wrong ``next_loss_scale`` answer, or ""."""
    (scale, good), (want_scale, want_good), (s0, g0) = got, expected, state
    if inf:
        if scale == s0 * 2:
            return ("you raised the scale on an overflow: inf gradients mean the scaled loss was too large — lower it "
                    "(×0.5)")
        if scale == s0:
            return "you kept the scale after an overflow: the same scale would overflow again — halve it"
        if scale == want_scale and good != 0:
            return (f"the scale is right, but the count of good steps must restart at 0 after an overflow (you "
                    f"returned {good})")
        if scale != want_scale and scale != 0:
            return f"the backoff factor is ×0.5 (you gave ×{scale / s0:g})"
        return ""
    if want_scale == 2 * s0:                          # this good step completes a run: growth due
        if scale == s0 and good == g0 + 1:
            later, _ = attempt(next_loss_scale, s0, False, good, interval)
            if isinstance(later, (tuple, list)) and len(later) == 2 and later[0] == 2 * s0:
                return (f"the scale grows one step late (after {interval + 1} good steps): double it when the count, "
                        f"with this step added, reaches growth_interval = {interval}")
            return ("the scale never grows: count the good steps, and when the count reaches growth_interval double "
                    "the scale")
        if scale == 2 * s0 and good != 0:
            return f"after the scale doubles, the count of good steps must restart at 0 (you returned {good})"
        if scale == s0:
            return (f"the scale should double now: this is good step {interval} in a row (= growth_interval) — "
                    "compare the count after adding this step")
        return ""
    if scale == 2 * s0:
        return (f"the scale doubled too early: only after growth_interval = {interval} good steps in a row (this was "
                f"good step {g0 + 1}) — compare after adding this step, with ==, not before")
    if scale == s0 * 0.5:
        return "you lowered the scale without an overflow: a good step never lowers it"
    if scale == s0 and good == g0:
        return "a good step adds 1 to the count of good steps: you returned it unchanged"
    if scale == s0 and good == 0:
        return "you reset the count on a good step: only an overflow (or a growth) restarts it"
    return ""


def finite_guard_problems(assert_finite) -> list[str]:
    """``assert_finite(step, loss, model, loss_scaling=False)`` raises FloatingPointError naming the step and the
    culprit. Without loss scaling: a non-finite loss or gradient. With it (fp16 + GradScaler, the T4 path): an inf
    gradient is routine — the scaler skips that step and lowers the scale — so only a non-finite loss or *weight*
    (damage that got through) may stop the run."""
    def model_with_grads():
        m = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
        for p in m.parameters():
            p.grad = torch.ones_like(p)
        return m

    def raises(args, kwargs) -> bool:
        try:
            assert_finite(*args, **kwargs)
        except FloatingPointError:
            return True
        except Exception:  # noqa: BLE001 — only a probe
            return False
        return False

    def expect_raise(args, kwargs, must_name, missing_message, nan_probe=None):
        try:
            returned = assert_finite(*args, **kwargs)
        except FloatingPointError as e:
            absent = [x for x in must_name if x not in str(e)]
            return [f"name {' and '.join(repr(x) for x in must_name)} in the message, not only: {e}"] if absent else []
        except NotImplementedError as e:
            raise not_written(e) from None
        except TypeError as e:
            return [f"it must accept loss_scaling=True/False: {e}"]
        except Exception as e:  # noqa: BLE001
            hint = (" (an `assert` raises AssertionError, and `python -O` removes it)" if isinstance(e, AssertionError)
                    else "")
            return [f"raise FloatingPointError, not {type(e).__name__}{hint}: {e}"]
        if returned is not None:
            return [f"{missing_message} — you returned {returned!r}; a guard raises FloatingPointError (a returned "
                    "flag is easy to ignore, and the run goes on)"]
        if nan_probe is not None and raises(*nan_probe):
            return [f"{missing_message} — you test only for NaN (isnan); inf is not finite either: use "
                    "math.isfinite / torch.isfinite, which catch both"]
        return [missing_message]

    model = model_with_grads()
    _, problem = attempt(assert_finite, 3, 0.5, model)
    if problem:
        return [f"a healthy step must pass silently, but {problem}"]
    problems = expect_raise((7, math.nan, model), {}, ["7"], "a NaN loss at step 7 went through: raise FloatingPointError")
    if not problems:
        problems += expect_raise((8, math.inf, model), {}, ["8"], "an inf loss at step 8 went through: check the loss "
                                 "for any non-finite value", nan_probe=((8, math.nan, model), {}))
    nan_grads = model_with_grads()
    nan_grads[1].weight.grad[0, 1] = math.nan
    model[1].weight.grad[0, 1] = math.inf
    problems += expect_raise((9, 0.5, model), {}, ["9", "1.weight"],
                             "an inf gradient in '1.weight' at step 9 went through (no loss scaling): check every "
                             "parameter's gradient too", nan_probe=((9, 0.5, nan_grads), {}))
    # With a loss scaler the same inf gradient is an ordinary skipped step.
    _, problem = attempt(assert_finite, 10, 0.5, model, loss_scaling=True)
    if problem:
        problems.append("with loss scaling an inf gradient is routine — GradScaler skips that step and lowers the "
                        "scale — so the guard must let it through (raising kills healthy fp16 runs); check the "
                        f"loss and the weights instead. Yours: {problem}")
    problems += expect_raise((11, math.inf, model), {"loss_scaling": True}, ["11"],
                             "with loss scaling an inf loss at step 11 went through: the loss is still checked",
                             nan_probe=((11, math.nan, model), {"loss_scaling": True}))
    broken = model_with_grads()
    with torch.no_grad():
        broken[0].bias[1] = math.nan
    problems += expect_raise((12, 0.5, broken), {"loss_scaling": True}, ["12", "0.bias"],
                             "with loss scaling a NaN weight in '0.bias' at step 12 went through: after a step, look "
                             "at the weights — that is where damage a skipped step did not stop shows")
    return problems


def param_grad_norms(model) -> dict[str, float]:
    """``{parameter name: L2 norm of its gradient}`` for every parameter that has one — what notebook 06's runs record
    at every step, and what exercise 5 turns into one norm per part of the model."""
    return {n: float(p.grad.detach().float().norm()) for n, p in model.named_parameters() if p.grad is not None}


def group_norms_reference(param_norms: dict[str, float]) -> dict[str, float]:
    """Exercise 5's answer: per part (``utils.training.model_part``), the root of the sum of squared norms."""
    squares: dict[str, float] = {}
    for name, norm in param_norms.items():
        part = model_part(name)
        squares[part] = squares.get(part, 0.0) + norm * norm
    return {part: math.sqrt(v) for part, v in squares.items()}


def group_norm_problems(my_grad_norms) -> list[str]:
    """``my_grad_norms(param_norms) -> {group: norm}``: ``param_norms`` maps each parameter's name to its gradient's
    L2 norm (:func:`param_grad_norms`); the groups come from ``utils.training.model_part``."""
    model = tiny_model(replace(TINY_GPT2, n_embd=32))
    x = torch.randint(0, 50257, (2, 16), generator=torch.Generator().manual_seed(0))
    model(input_ids=x, labels=x).loss.backward()
    norms = param_grad_norms(model)
    got, problem = attempt(my_grad_norms, dict(norms))
    if problem:
        return [problem]
    expected = grad_norms_by_group(model)
    if not isinstance(got, dict) or set(got) != set(expected):
        hint = ""
        if isinstance(got, dict) and set(got) == set(norms):
            hint = " — one entry per parameter: group the names with model_part(name) and combine each group's norms"
        return [f"expected the groups {list(expected)} (utils.training.model_part of each name), got "
                f"{list(got) if isinstance(got, dict) else type(got).__name__}{hint}"]
    members: dict[str, list[float]] = {}
    for name, n in norms.items():
        members.setdefault(model_part(name), []).append(n)
    problems = []
    for g, v in expected.items():
        mine = float(got[g])
        if abs(mine - v) > 1e-4 * max(v, 1e-8):
            ns = members[g]
            slips = [
                (sum(ns), " — that is the sum of the per-tensor norms; norms do not add, their squares do: take the "
                          "square root of the sum of squares"),
                (sum(n * n for n in ns), " — that is the sum of the squares: take its square root"),
                (math.sqrt(sum(n * n for n in ns) / len(ns)), " — you divided by the number of tensors (a root mean "
                                                               "square): a group's norm is √(Σ‖∇p‖²), no averaging"),
                (sum(ns) / len(ns), " — that is the mean of the per-tensor norms: square each, sum the squares, take "
                                    "the root"),
                (max(ns), " — that is the largest member's norm: every tensor of the group counts, √(Σ‖∇p‖²)"),
            ]
            hint = next((h for value, h in slips if abs(mine - value) <= 1e-4 * max(abs(value), 1e-8)), None)
            if hint is None:
                hint = " — square each parameter's norm, sum the squares of the group, then take the root"
            problems.append(f"{g}: you gave {mine:.4g}, expected {v:.4g}{hint}")
    return problems


def flops_problems(my_flops_per_token) -> list[str]:
    """``my_flops_per_token(n_params, n_layer, n_ctx, d_model) -> training FLOPs per token``."""
    problems = []
    for name, shape, ctx in [("GPT-2 small @1024", GPT2_SMALL, 1024), ("GPT-2 Large @512", GPT2_LARGE, 512)]:
        args = (shape.n_params, shape.n_layer, ctx, shape.n_embd)
        got, problem = attempt(my_flops_per_token, *args)
        if problem:
            return [problem]
        expected = flops_per_token(*args)
        try:
            got = float(got)
        except (TypeError, ValueError):
            return [f"return one number, the FLOPs per token, not {type(got).__name__}"]
        if abs(got - expected) > 1e-6 * expected:
            N, attn = shape.n_params, shape.n_layer * ctx * shape.n_embd
            slips = [
                (2 * N, "that is the forward pass only; backward costs about twice the forward: ×3"),
                (2 * N + 2 * attn, "that is the forward pass only; backward costs about twice the forward: ×3"),
                (4 * N + 4 * attn, "you counted backward as one forward; it costs about twice the forward (gradients "
                                   "for the activations and for the weights): 2 + 4 = 6 per parameter"),
                (6 * N, "add the attention term 6·n_layer·n_ctx·d_model (the scores and their use grow with the "
                        "context)"),
                (6 * N + 12 * attn, "that is nanoGPT's / PaLM's 6N + 12·n_layer·n_ctx·d_model (both attention matmuls "
                                    "counted in full); this course uses Kaplan et al.'s 6N + 6·n_layer·n_ctx·d_model "
                                    "(Table 1) — they differ by a few percent"),
                (6 * N + 6 * attn * ctx, "per token the attention cost grows with n_ctx, not n_ctx² (n_ctx² is per "
                                         "sequence): 6·n_layer·n_ctx·d_model"),
                (6 * N + 6 * attn * shape.n_embd, "the attention term is linear in d_model (n_ctx·d_model per layer "
                                                  "for the scores and their use), not d_model²"),
                (6 * N + 6 * ctx * shape.n_embd, "the attention term is per layer: multiply by n_layer"),
                (6 * N + 2 * attn, "the attention term needs the ×3 for backward too: 6·n_layer·n_ctx·d_model"),
                (6 * N * ctx + 6 * attn * ctx, "that is per sequence of n_ctx tokens; the question is per token"),
            ]
            why = next((w for value, w in slips if abs(got - value) < 1e-4 * value),
                       f"{got / expected:.2f}× the expected 6N + 6·n_layer·n_ctx·d_model")
            problems.append(f"{name}: you gave {got:.4g}, expected {expected:.4g} — {why}")
    return problems


def accumulation_problems(accumulate) -> list[str]:
    """``accumulate(model, micro_batches)`` leaves in ``.grad`` the gradient of the whole batch's loss per token."""
    def make():                                      # dropout off: the same forward pass every time
        return tiny_model(replace(TINY_GPT2, n_layer=1, n_embd=32), resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    g = torch.Generator().manual_seed(0)
    examples = []
    for n_prompt, n_resp in [(3, 12), (5, 2), (2, 9), (6, 1)]:             # very different response lengths
        ids = torch.randint(0, 50257, (n_prompt + n_resp,), generator=g).tolist()
        examples.append({"input_ids": ids, "labels": [IGNORE_INDEX] * n_prompt + ids[n_prompt:]})
    micro = [pad_collate(examples[:1]), pad_collate(examples[1:3]), pad_collate(examples[3:])]
    full = pad_collate(examples)
    ref = make()
    masked_nll(ref(input_ids=full["input_ids"], attention_mask=full["attention_mask"]).logits, full["labels"]).backward()
    mine = make()
    _, problem = attempt(accumulate, mine, micro)
    if problem:
        return [problem]
    if any(p.grad is None for p in mine.parameters()):
        return ["some parameters have no gradient: call backward on every micro-batch's loss"]
    diff = max(float((a.grad - b.grad).abs().max()) for a, b in zip(mine.parameters(), ref.parameters()))
    if diff <= 1e-6:
        return []
    return [_accumulation_mistake(make, mine, micro, diff)]


def _accumulation_mistake(make, mine, micro, diff: float) -> str:
    """Name the likely slip behind a wrong accumulated gradient: each candidate replays one slip on a fresh model."""
    def grads_of(losses_of) -> list[torch.Tensor]:
        model = make()
        for loss in losses_of(model):
            loss.backward()
        return [p.grad for p in model.parameters()]

    def nll(model, b, reduction="mean"):
        return masked_nll(model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits, b["labels"],
                          reduction=reduction)

    total = sum(n_targets(b["labels"]) for b in micro)
    n_seq = sum(len(b["input_ids"]) for b in micro)
    last = micro[-1]
    candidates = [
        (lambda m: (nll(m, b) / len(micro) for b in micro),
         f"you averaged the micro-batch means (largest gradient difference to the full batch {diff:.2e}): a "
         "micro-batch with 1 response token then weighs as much as one with 12. Use the token sums: "
         "masked_nll(..., reduction='sum') / (supervised tokens in all micro-batches)"),
        (lambda m: (nll(m, b) for b in micro),
         "you added the micro-batch means without dividing: the gradient is the sum of per-micro-batch means, "
         f"{len(micro)}× too large on average and weighted per micro-batch. Use masked_nll(..., reduction='sum') / "
         "(supervised tokens in all micro-batches)"),
        (lambda m: (nll(m, b, "sum") for b in micro),
         f"you forgot to divide: the summed token losses need ÷ {total}, the supervised tokens of all micro-batches"),
        (lambda m: (nll(m, b) * len(b["input_ids"]) / n_seq for b in micro),
         "you weighted each micro-batch by its number of sequences; the responses have different lengths, so weight "
         "by supervised tokens: masked_nll(..., reduction='sum') / (supervised tokens in all micro-batches)"),
        (lambda m: [nll(m, last, "sum") / total],
         "only the last micro-batch's gradient is left: zeroing the gradients inside the loop (zero_grad before each "
         "backward) wipes the earlier ones — accumulating means letting .grad add up"),
        (lambda m: [nll(m, last) / len(micro)],
         "only the last micro-batch's gradient is left: zeroing the gradients inside the loop (zero_grad before each "
         "backward) wipes the earlier ones — accumulating means letting .grad add up"),
        (lambda m: [nll(m, last)],
         "only the last micro-batch's gradient is left: zeroing the gradients inside the loop (zero_grad before each "
         "backward) wipes the earlier ones — accumulating means letting .grad add up"),
    ]
    for losses_of, why in candidates:
        other = grads_of(losses_of)
        if all(float((a.grad - b).abs().max()) <= 1e-6 + 1e-5 * float(b.abs().max())
               for a, b in zip(mine.parameters(), other)):
            return why
    return f"the accumulated gradient differs from the full batch's by up to {diff:.2e} (must be ≤ 1e-6)"


def check_lr_schedule(lr_schedule) -> bool:
    """Print feedback on notebook 06's learning-rate schedule (warmup, then cosine); True when right."""
    return verdict(lr_schedule_problems, lr_schedule,
                   success="✅ Linear warmup, then cosine down to min_lr — same as utils.training.lr_at.")


def check_clip(clip_global_norm) -> bool:
    """Print feedback on notebook 06's global-norm clipping; True when right."""
    return verdict(clip_problems, clip_global_norm,
                   success="✅ Global-norm clipping: one factor for all gradients, only when the norm is too large.")


def check_loss_scale(next_loss_scale) -> bool:
    """Print feedback on notebook 06's dynamic loss scaling rule; True when right."""
    return verdict(loss_scale_problems, next_loss_scale,
                   success="✅ Dynamic loss scaling: halve on overflow, double after a run of good steps.")


def check_finite_guard(assert_finite) -> bool:
    """Print feedback on notebook 06's NaN/inf guard; True when right."""
    return verdict(finite_guard_problems, assert_finite,
                   success="✅ The guard stops a broken run and names the step and the parameter — gradients without a "
                           "loss scaler, weights with one (where inf gradients are routine skipped steps).")


def check_group_norms(my_grad_norms) -> bool:
    """Print feedback on notebook 06's gradient norm per part of the model; True when right."""
    return verdict(group_norm_problems, my_grad_norms,
                   success="✅ Gradient norm per part of the model: √(Σ‖∇p‖²) over each group. The heatmaps "
                           "of section 2 use your function.")


def check_flops(my_flops_per_token) -> bool:
    """Print feedback on notebook 06's training FLOPs per token; True when right."""
    return verdict(flops_problems, my_flops_per_token,
                   success="✅ Training FLOPs per token: 6N + 6·n_layer·n_ctx·d_model.")


def check_accumulation(accumulate) -> bool:
    """Print feedback on notebook 06's gradient accumulation (every token weighs the same); True when right."""
    return verdict(accumulation_problems, accumulate,
                   success="✅ Accumulated gradients equal the full batch's (≤ 1e-6): every token weighs the same.")



# =========================================================================== references (used only for a skipped stub)
def lr_schedule_reference(step: int, max_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Exercise 1's answer: ``utils.training.lr_at`` with the exercise's arguments."""
    return lr_at(step, TrainConfig(max_steps=total_steps, lr=max_lr, warmup_steps=warmup_steps, min_lr=min_lr))


def clip_reference(parameters, max_norm: float) -> float:
    """Exercise 2's answer: ``torch.nn.utils.clip_grad_norm_``, returning the norm before clipping as a float."""
    return float(torch.nn.utils.clip_grad_norm_(list(parameters), max_norm))


def next_loss_scale_reference(scale: float, found_inf: bool, good_steps: int, growth_interval: int = 2000) -> tuple[float, int]:
    """Exercise 3's answer: GradScaler's rule (backoff ×0.5 on an overflow, growth ×2 after ``growth_interval`` good steps)."""
    if found_inf:
        return scale * 0.5, 0
    good_steps += 1
    return (scale * 2.0, 0) if good_steps == growth_interval else (scale, good_steps)


def assert_finite_reference(step: int, loss: float, model, loss_scaling: bool = False) -> None:
    """Exercise 4's answer: the loss always; the gradients without a loss scaler, the weights with one."""
    if not math.isfinite(float(loss)):
        raise FloatingPointError(f"step {step}: the loss is {loss}")
    for name, param in model.named_parameters():
        tensor, what = (param, "weight") if loss_scaling else (param.grad, "gradient")
        if tensor is not None and not torch.isfinite(tensor).all():
            raise FloatingPointError(f"step {step}: the {what} of {name} has "
                                     f"{int((~torch.isfinite(tensor)).sum())} non-finite values")


def accumulate_reference(model, micro_batches) -> None:
    """Exercise 7's answer: each micro-batch's summed token loss ÷ the supervised tokens of all of them (fp32)."""
    total = sum(n_targets(b["labels"]) for b in micro_batches)
    for b in micro_batches:
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        (masked_nll(logits, b["labels"], reduction="sum") / total).backward()


# =========================================================================== predict, then measure
RUN_NAMES = ("warmup + cosine", "no warmup", "learning rate too high", "warmup + cosine + clipping",
             "too high + clipping")
FAILS_ABOVE = 1.5          # a run "fails" when its final loss is above 1.5 × the good run's (or not finite)

_WHY = {
    "no warmup": ("warmup protects the first steps, when Adam's v rests on one gradient; after those few steps the "
                  "run without it trains like the good one"),
    "learning rate too high": ("Adam moves every weight by about the learning rate per step, whatever the gradient's "
                               "size: at a rate far above the good one the weights are thrown around faster than the "
                               "loss can follow"),
    "warmup + cosine + clipping": ("clipping at the median only caps the larger half of the steps' lengths: the good "
                                   "run stays good"),
    "too high + clipping": ("clipping scales the gradient by one factor, but Adam divides the gradient by √v, which "
                            "scales with it: the update hardly changes, so clipping cannot rescue a learning rate that "
                            "is too high (it only caps a sudden spike)"),
}


def _as_names(prediction) -> set[str] | str:
    if isinstance(prediction, str) or not hasattr(prediction, "__iter__"):
        return f"return a set of run names, not {type(prediction).__name__}"
    names = set(prediction)
    unknown = sorted(names - set(RUN_NAMES))
    if unknown:
        return f"unknown run name(s) {unknown}: choose from {list(RUN_NAMES)}"
    if "warmup + cosine" in names:
        return "'warmup + cosine' is the yardstick the others are compared with: it cannot fail against itself"
    return names


def run_prediction_problems(predict_failures, final_losses: dict[str, float] | None = None) -> list[str]:
    """``predict_failures() -> set of run names`` expected to fail (final loss > 1.5 × the good run's, or not
    finite). Without ``final_losses`` only the form is checked (the runs have not happened yet); with the measured
    ``{run name: final loss}`` each wrong call is explained with the numbers."""
    got, problem = attempt(predict_failures)
    if problem:
        return [problem]
    names = _as_names(got)
    if isinstance(names, str):
        return [names]
    if final_losses is None:
        return []
    good = final_losses["warmup + cosine"]
    failed = {n for n in RUN_NAMES[1:] if not math.isfinite(final_losses[n]) or final_losses[n] > FAILS_ABOVE * good}
    problems = []
    for n in RUN_NAMES[1:]:
        if (n in names) != (n in failed):
            said = "would fail" if n in names else "would train well"
            did = "failed" if n in failed else "trained well"
            problems.append(f"'{n}': you predicted it {said}; it {did} (final loss {final_losses[n]:.3f} against the "
                            f"good run's {good:.3f}, the line at ×{FAILS_ABOVE}) — {_WHY[n]}")
    return problems


def check_run_prediction(predict_failures, final_losses: dict[str, float] | None = None) -> bool:
    """Print feedback on notebook 06's prediction of the runs that fail (its form now; against the runs once
    ``final_losses`` are measured); True when right."""
    if final_losses is None:
        success = lambda: (f"✅ Prediction recorded: you expect {sorted(predict_failures()) or 'no run'} to fail. "
                           "Sections 1.1 and 1.2 run all five; the cell after them compares.")
    else:
        success = lambda: (f"✅ Your prediction matches the runs: {sorted(predict_failures()) or 'none'} failed, "
                           "the others trained well.")
    return verdict(run_prediction_problems, predict_failures, final_losses, success=success)
