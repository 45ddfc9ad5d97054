"""Tests of the checkers for notebook 06: the stability and compute exercises."""

import pytest

from utils import checks


def _stub(*args, **kwargs):
    raise NotImplementedError("write it")


def test_lr_schedule_checker_explains_warmup_from_zero():
    import math

    def warmup_from_zero(step, max_lr, warmup, total, min_lr=0.0):
        if step < warmup:
            return max_lr * step / warmup
        p = (step - warmup) / (total - 1 - warmup)
        return min_lr + 0.5 * (1 + math.cos(math.pi * p)) * (max_lr - min_lr)
    problems = checks.lr_schedule_problems(warmup_from_zero)
    assert problems[0].startswith("step 0") and "starts above 0" in problems[0]
    with pytest.raises(checks.NotAttempted, match="not implemented"):
        checks.lr_schedule_problems(_stub)


def test_clip_checker_catches_per_tensor_clipping_and_the_wrong_norm():
    import torch

    def per_tensor(params, max_norm):
        params = list(params)
        total = torch.sqrt(sum((p.grad ** 2).sum() for p in params))
        for p in params:
            torch.nn.utils.clip_grad_norm_([p], max_norm)
        return float(total)
    assert any("each tensor was clipped on its own" in p for p in checks.clip_problems(per_tensor))

    def returns_after(params, max_norm):
        params = list(params)
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        return float(torch.sqrt(sum((p.grad ** 2).sum() for p in params)))
    assert "norm after clipping" in checks.clip_problems(returns_after)[0]


def test_loss_scale_checker_catches_a_scale_that_never_grows():
    problems = checks.loss_scale_problems(lambda s, inf, good, n: (s / 2, 0) if inf else (s, good + 1))
    assert "doubles" in problems[0]


def test_finite_guard_checker_needs_the_gradients_checked():
    import math

    def loss_only(step, loss, model):
        if not math.isfinite(loss):
            raise FloatingPointError(f"step {step}")
    assert "check every parameter's gradient" in checks.finite_guard_problems(loss_only)[0]


def test_finite_guard_checker_rejects_a_guard_that_kills_fp16_runs():
    """The likely wrong answer on a T4: any inf gradient raises, even where GradScaler would just skip the step."""
    import math

    import torch

    def gradients_always(step, loss, model, loss_scaling=False):
        if not math.isfinite(loss):
            raise FloatingPointError(f"step {step}: loss {loss}")
        for name, p in model.named_parameters():
            if p.grad is not None and not torch.isfinite(p.grad).all():
                raise FloatingPointError(f"step {step}: gradient of {name}")
    problems = checks.finite_guard_problems(gradients_always)
    assert any("routine" in p and "GradScaler" in p for p in problems)
    assert any("0.bias" in p for p in problems)                      # and it never looks at the weights

    def no_parameter(step, loss, model):
        if not math.isfinite(loss):
            raise FloatingPointError(f"step {step}")
    assert any("loss_scaling" in p for p in checks.finite_guard_problems(no_parameter))


def test_flops_checker_catches_forward_only():
    assert "forward pass only" in checks.flops_problems(lambda n, L, T, d: 2 * n + 2 * L * T * d)[0]


def test_accumulation_checker_catches_the_mean_of_micro_batch_means():
    from utils.loss import masked_nll

    def mean_of_means(model, micro):
        for b in micro:
            (masked_nll(model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits, b["labels"])
             / len(micro)).backward()
    assert "averaged the micro-batch means" in checks.accumulation_problems(mean_of_means)[0]
    with pytest.raises(checks.NotAttempted, match="not implemented"):
        checks.accumulation_problems(_stub)


def test_yours_or_reference_falls_back_only_for_the_stub(capsys):
    from utils.checks import yours_or_reference

    def stub(x):
        raise NotImplementedError("nudge")

    def reference(x):
        return 2 * x

    def wrong(x):
        return 3 * x
    assert yours_or_reference(stub, reference, "f", 1) is reference
    assert "not written yet" in capsys.readouterr().out
    assert yours_or_reference(wrong, reference, "f", 1) is wrong            # a wrong answer is still the learner's
    assert "Using your `f`" in capsys.readouterr().out


def test_group_norm_checker_takes_per_parameter_norms_and_catches_plain_sums():
    from utils.training import model_part
    assert checks.group_norm_problems(checks.group_norms_reference) == []

    def plain_sum(norms):
        out = {}
        for name, n in norms.items():
            out[model_part(name)] = out.get(model_part(name), 0.0) + n
        return out
    assert any("sum of the per-tensor norms" in p for p in checks.group_norm_problems(plain_sum))

    def one_norm_each(norms):                            # squares summed but never rooted
        out = {}
        for name, n in norms.items():
            out[model_part(name)] = out.get(model_part(name), 0.0) + n * n
        return out
    assert checks.group_norm_problems(one_norm_each)

    def per_tensor(norms):                               # no grouping at all
        return dict(norms)
    assert "expected the groups" in checks.group_norm_problems(per_tensor)[0]


def test_references_pass_their_own_checkers():
    assert checks.lr_schedule_problems(checks.lr_schedule_reference) == []
    assert checks.clip_problems(checks.clip_reference) == []
    assert checks.loss_scale_problems(checks.next_loss_scale_reference) == []
    assert checks.finite_guard_problems(checks.assert_finite_reference) == []
    assert checks.accumulation_problems(checks.accumulate_reference) == []


# --------------------------------------------------------------------------- predict, then measure
FINALS = {"warmup + cosine": 1.20, "no warmup": 1.31, "learning rate too high": 6.4,
          "warmup + cosine + clipping": 1.22, "too high + clipping": 6.1}
RIGHT = {"learning rate too high", "too high + clipping"}


def test_run_prediction_is_recorded_before_the_runs_and_right_after_them():
    assert checks.run_prediction_problems(lambda: RIGHT) == []
    assert checks.run_prediction_problems(lambda: RIGHT, FINALS) == []
    nan_run = {**FINALS, "too high + clipping": float("nan")}                # a diverged run fails too
    assert checks.run_prediction_problems(lambda: RIGHT, nan_run) == []
    with pytest.raises(checks.NotAttempted):
        checks.run_prediction_problems(_stub)


@pytest.mark.parametrize("prediction,named", [
    ({"learning rate too high"}, ["'too high + clipping'", "√v"]),               # "clipping rescues it"
    (set(), ["'learning rate too high'", "about the learning rate per step", "'too high + clipping'"]),
    (RIGHT | {"no warmup"}, ["'no warmup'", "first steps"]),                   # "warmup is what keeps it alive"
    (RIGHT | {"warmup + cosine + clipping"}, ["'warmup + cosine + clipping'", "caps"]),
    ({"too high + clipping"}, ["'learning rate too high'"]),
])
def test_run_prediction_explains_each_likely_wrong_call(prediction, named):
    problems = checks.run_prediction_problems(lambda: prediction, FINALS)
    text = " ".join(problems)
    assert problems and all(n in text for n in named), problems
    assert all("final loss" in p and "1.200" in p for p in problems)             # the measured numbers, not just "wrong"


@pytest.mark.parametrize("prediction,message", [
    ({"lr too high"}, "unknown run name"),
    ("learning rate too high", "set of run names"),
    ({"warmup + cosine"}, "yardstick"),
])
def test_run_prediction_checks_its_form_before_the_runs(prediction, message):
    assert message in checks.run_prediction_problems(lambda: prediction)[0]
