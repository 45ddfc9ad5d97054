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


# =========================================================================== the likely wrong answers, per exercise
# Each entry: (the phrase the feedback must contain — it names the mistake, the wrong answer a learner is likely to
# give). The references pass (test_references_pass_their_own_checkers, and the solution notebook).

def _schedule(*, warmup="right", floor="right", denominator="right", shape="cosine", start="warmup"):
    """lr_schedule with one slip; the defaults give the right schedule."""
    import math

    def lr_schedule(step, max_lr, warmup_steps, total_steps, min_lr=0.0):
        if step < warmup_steps or (warmup == "1-based" and step == warmup_steps):
            return {"right": max_lr * (step + 1) / warmup_steps, "from 0": max_lr * step / warmup_steps,
                    "nanoGPT": max_lr * (step + 1) / (warmup_steps + 1),
                    "1-based": max_lr * step / warmup_steps}[warmup]
        span = {"right": total_steps - 1 - warmup_steps, "total - warmup": total_steps - warmup_steps,
                "whole run": total_steps - 1}[denominator]
        done = {"warmup": step - warmup_steps, "one early": step - warmup_steps + 1, "zero": step}[start]
        progress = min(done / span, 1.0)
        decay = 0.5 * (1 + math.cos(math.pi * progress)) if shape == "cosine" else 1 - progress
        return {"right": min_lr + decay * (max_lr - min_lr), "zero": decay * max_lr,
                "on top": min_lr + decay * max_lr}[floor]
    return lr_schedule


def test_the_schedule_helper_is_right():
    assert checks.lr_schedule_problems(_schedule()) == []


@pytest.mark.parametrize("named,wrong", [
    ("starts above 0", _schedule(warmup="from 0")),                                    # max_lr·s/warmup
    ("divides by warmup_steps + 1 (nanoGPT's", _schedule(warmup="nanoGPT")),
    ("your cosine decays to 0 and ignores min_lr", _schedule(floor="zero")),
    ("the swing is max_lr − min_lr", _schedule(floor="on top")),
    ("off by one at the end", _schedule(denominator="total - warmup")),
    ("your decay starts one step too soon", _schedule(start="one early", denominator="total - warmup")),
    ("your decay is a straight line", _schedule(shape="linear")),
    ("runs over the whole training", _schedule(start="zero", denominator="whole run")),
    ("counts steps from 1", _schedule(warmup="1-based", denominator="total - warmup")),
])
def test_lr_schedule_names_each_likely_mistake(named, wrong):
    problems = checks.lr_schedule_problems(wrong)
    assert problems and named in problems[0], problems


def _clip(*, norm="l2", condition="above", how="in place", returns="before"):
    """clip_global_norm with one slip; the defaults give the right answer."""
    import torch

    def clip_global_norm(parameters, max_norm):
        grads = [p.grad for p in parameters if p.grad is not None]
        total = {"l2": lambda: torch.sqrt(sum((g ** 2).sum() for g in grads)),
                 "sum of norms": lambda: sum(g.norm() for g in grads),
                 "l1": lambda: sum(g.abs().sum() for g in grads),
                 "max": lambda: max(g.abs().max() for g in grads),
                 "squares": lambda: sum((g ** 2).sum() for g in grads)}[norm]()
        factor = max_norm / (float(total) + 1e-6)
        clip = {"above": factor < 1, "always": True, "below": factor > 1}[condition]
        for g in grads:
            if not clip:
                continue
            if how == "in place":
                g.mul_(factor)
            elif how == "rebind":
                g = g * factor                                  # noqa: PLW2901 — the slip: a new local tensor
            elif how == "values":
                g.clamp_(-max_norm, max_norm)
            elif how == "per tensor":
                g.mul_(min(1.0, max_norm / (float(g.norm()) + 1e-6)))
        if returns == "nothing":
            return None
        return float(total) if returns == "before" else float(torch.sqrt(sum((g ** 2).sum() for g in grads)))
    return clip_global_norm


def test_the_clip_helper_is_right():
    assert checks.clip_problems(_clip()) == []


@pytest.mark.parametrize("named,wrong", [
    ("each tensor was clipped on its own", _clip(how="per tensor")),
    ("only scale down, never up", _clip(condition="always")),                        # max_norm / norm, always
    ("your condition is the wrong way round", _clip(condition="below")),
    ("the sum of the per-tensor norms", _clip(norm="sum of norms")),                  # the wrong norm…
    ("that is the L1 norm", _clip(norm="l1")),
    ("the ∞-norm", _clip(norm="max")),
    ("that is the sum of squares: take its square root", _clip(norm="squares")),
    ("the gradients were not changed", _clip(how="rebind")),                          # g = g * factor
    ("you clipped each value to ±max_norm", _clip(how="values")),                     # clip_grad_value_
    ("that is the norm after clipping", _clip(returns="after")),
    ("your function returned nothing", _clip(returns="nothing")),
])
def test_clip_names_each_likely_mistake(named, wrong):
    problems = checks.clip_problems(wrong)
    assert problems and any(named in p for p in problems), problems


def _scaler(*, on_inf="halve", reset_on_inf=True, reset_on_growth=True, count=True, grow_at="==", backoff=0.5):
    """next_loss_scale with one slip; the defaults give GradScaler's rule."""
    def next_loss_scale(scale, found_inf, good_steps, growth_interval=2000):
        if found_inf:
            new = {"halve": scale * backoff, "double": scale * 2, "keep": scale}[on_inf]
            return new, 0 if reset_on_inf else good_steps
        if grow_at == "modulo":                                 # the count taken before this step
            if good_steps % growth_interval == 0:
                return scale * 2, good_steps + 1
            return scale, good_steps + 1
        good_steps += 1 if count else 0
        if grow_at == "never":
            return scale, good_steps
        if (good_steps == growth_interval) if grow_at == "==" else (good_steps > growth_interval):
            return scale * 2, 0 if reset_on_growth else good_steps
        return scale, good_steps
    return next_loss_scale


def test_the_scaler_helper_is_right():
    assert checks.loss_scale_problems(_scaler()) == []


@pytest.mark.parametrize("named,wrong", [
    ("the scale never grows", _scaler(grow_at="never")),
    ("you raised the scale on an overflow", _scaler(on_inf="double")),
    ("you kept the scale after an overflow", _scaler(on_inf="keep")),
    ("the backoff factor is ×0.5", _scaler(backoff=0.1)),
    ("must restart at 0 after an overflow", _scaler(reset_on_inf=False)),
    ("after the scale doubles, the count of good steps must restart at 0", _scaler(reset_on_growth=False)),
    ("grows one step late", _scaler(grow_at=">")),
    ("the scale doubled too early", _scaler(grow_at="modulo")),
    ("a good step adds 1 to the count", _scaler(count=False)),
])
def test_loss_scale_names_each_likely_mistake(named, wrong):
    problems = checks.loss_scale_problems(wrong)
    assert problems and named in problems[0], problems


def _guard(*, loss_check="isfinite", grads="without scaler", weights="with scaler", error=FloatingPointError,
           names_parameter=True, returns=False):
    """assert_finite with one slip; the defaults give the right guard."""
    import math

    import torch

    def assert_finite(step, loss, model, loss_scaling=False):
        def bad(x):
            return math.isnan(x) if loss_check == "isnan" else not math.isfinite(x)

        def bad_tensor(t):
            return bool(torch.isnan(t).any()) if loss_check == "isnan" else not bool(torch.isfinite(t).all())

        def fail(message):
            if returns:
                return False
            if error is AssertionError:
                assert False, message                            # noqa: B011, PT015 — the slip: assert, not raise
            raise error(message)
        if bad(float(loss)) and not (loss_scaling and loss_check == "skip when scaling"):
            return fail(f"step {step}: loss {loss}")
        for name, p in model.named_parameters():
            check_grads = grads == "always" or (grads == "without scaler" and not loss_scaling)
            check_weights = weights == "with scaler" and loss_scaling
            if check_grads and p.grad is not None and bad_tensor(p.grad):
                return fail(f"step {step}: gradient of {name if names_parameter else 'a parameter'}")
            if check_weights and bad_tensor(p.detach()):
                return fail(f"step {step}: weight {name if names_parameter else 'of a parameter'}")
        return True if returns else None
    return assert_finite


def test_the_guard_helper_is_right():
    assert checks.finite_guard_problems(_guard()) == []


@pytest.mark.parametrize("named,wrong", [
    ("check every parameter's gradient too", _guard(grads="never", weights="never")),      # the loss only
    ("routine", _guard(grads="always", weights="never")),                              # kills healthy fp16 runs
    ("a NaN weight in '0.bias'", _guard(weights="never")),                             # with a scaler: loss only
    ("an inf loss at step 11 went through", _guard(loss_check="skip when scaling")),
    ("you test only for NaN", _guard(loss_check="isnan")),                             # math.isnan / torch.isnan
    ("not AssertionError", _guard(error=AssertionError)),                              # `assert torch.isfinite(...)`
    ("raise FloatingPointError, not ValueError", _guard(error=ValueError)),
    ("you returned False", _guard(returns=True)),                                      # a flag, not an exception
    ("in the message", _guard(names_parameter=False)),
])
def test_finite_guard_names_each_likely_mistake(named, wrong):
    problems = checks.finite_guard_problems(wrong)
    assert problems and any(named in p for p in problems), problems


def _by_part(combine, group=None):
    """my_grad_norms that groups the per-parameter norms (model_part, or ``group``) and combines each group's list."""
    def my_grad_norms(param_norms):
        from utils.training import model_part
        groups = {}
        for name, n in param_norms.items():
            groups.setdefault((group or model_part)(name), []).append(n)
        return {g: combine(ns) for g, ns in groups.items()}
    return my_grad_norms


@pytest.mark.parametrize("named,wrong", [
    ("sum of the per-tensor norms", _by_part(sum)),
    ("that is the sum of the squares: take its square root", _by_part(lambda ns: sum(n * n for n in ns))),
    ("you divided by the number of tensors", _by_part(lambda ns: (sum(n * n for n in ns) / len(ns)) ** 0.5)),
    ("the mean of the per-tensor norms", _by_part(lambda ns: sum(ns) / len(ns))),
    ("the largest member's norm", _by_part(max)),
    ("one entry per parameter", lambda norms: dict(norms)),                          # no grouping at all
    ("expected the groups", _by_part(lambda ns: sum(n * n for n in ns) ** 0.5,       # grouped by module name
                                     group=lambda name: name.split(".")[-2])),
])
def test_group_norms_name_each_likely_mistake(named, wrong):
    assert checks.group_norm_problems(_by_part(lambda ns: sum(n * n for n in ns) ** 0.5)) == []
    problems = checks.group_norm_problems(wrong)
    assert problems and any(named in p for p in problems), problems


@pytest.mark.parametrize("named,wrong", [
    ("forward pass only", lambda N, L, T, d: 2 * N + 2 * L * T * d),
    ("forward pass only", lambda N, L, T, d: 2 * N),
    ("you counted backward as one forward", lambda N, L, T, d: 4 * N + 4 * L * T * d),
    ("add the attention term", lambda N, L, T, d: 6 * N),
    ("nanoGPT's / PaLM's 6N + 12", lambda N, L, T, d: 6 * N + 12 * L * T * d),      # estimate_mfu's convention
    ("not n_ctx²", lambda N, L, T, d: 6 * N + 6 * L * T * T * d),
    ("not d_model²", lambda N, L, T, d: 6 * N + 6 * L * T * d * d),
    ("multiply by n_layer", lambda N, L, T, d: 6 * N + 6 * T * d),
    ("needs the ×3 for backward too", lambda N, L, T, d: 6 * N + 2 * L * T * d),
    ("per sequence", lambda N, L, T, d: (6 * N + 6 * L * T * d) * T),
])
def test_flops_names_each_likely_mistake(named, wrong):
    assert checks.flops_problems(lambda N, L, T, d: 6 * N + 6 * L * T * d) == []
    problems = checks.flops_problems(wrong)
    assert problems and all(named in p for p in problems), problems


def _accumulate(*, scale="tokens", zero_grad_inside=False):
    """accumulate with one slip; the defaults give the right answer."""
    from utils.loss import masked_nll, n_targets

    def accumulate(model, micro_batches):
        total = sum(n_targets(b["labels"]) for b in micro_batches)
        sequences = sum(len(b["input_ids"]) for b in micro_batches)
        for b in micro_batches:
            if zero_grad_inside:
                model.zero_grad()                              # the slip: wipes what the earlier ones added
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            loss = {"tokens": lambda: masked_nll(logits, b["labels"], reduction="sum") / total,
                    "mean of means": lambda: masked_nll(logits, b["labels"]) / len(micro_batches),
                    "sum of means": lambda: masked_nll(logits, b["labels"]),
                    "sum": lambda: masked_nll(logits, b["labels"], reduction="sum"),
                    "sequences": lambda: masked_nll(logits, b["labels"]) * len(b["input_ids"]) / sequences}[scale]()
            loss.backward()
    return accumulate


def test_the_accumulation_helper_is_right():
    assert checks.accumulation_problems(_accumulate()) == []


@pytest.mark.parametrize("named,wrong", [
    ("you averaged the micro-batch means", _accumulate(scale="mean of means")),
    ("you added the micro-batch means without dividing", _accumulate(scale="sum of means")),
    ("you forgot to divide", _accumulate(scale="sum")),
    ("you weighted each micro-batch by its number of sequences", _accumulate(scale="sequences")),
    ("only the last micro-batch's gradient is left", _accumulate(zero_grad_inside=True)),
    ("only the last micro-batch's gradient is left", _accumulate(scale="mean of means", zero_grad_inside=True)),
])
def test_accumulation_names_each_likely_mistake(named, wrong):
    problems = checks.accumulation_problems(wrong)
    assert problems and named in problems[0], problems


@pytest.mark.parametrize("norm", ["sum of norms", "l1", "max", "squares"])
def test_clip_with_the_wrong_norm_is_not_called_per_tensor(norm):
    """One factor from the wrong norm: the norm is named, and the scaling is not mistaken for per-tensor clipping."""
    problems = checks.clip_problems(_clip(norm=norm))
    assert any("by one factor — right — but by" in p for p in problems), problems
    assert not any("each tensor was clipped on its own" in p for p in problems), problems
