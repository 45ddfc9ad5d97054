"""Notebook 04 — instruction tuning GPT-2: make TRL's schedule match the course loop's, and predict what truncation
does to a batch.

Each ``check_*`` prints the verdict for the learner (see :mod:`utils.checks.feedback`); each ``*_problems``
returns what is wrong, for the tests. Both checkers measure: the schedule is built by transformers' own
``get_scheduler`` and the truncation counts come from ``utils.masking.pad_collate``'s labels.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from ..masking import IGNORE_INDEX, pad_collate
from ..training import TrainConfig, lr_at
from .feedback import NotAttempted, require_answer, verdict


# =========================================================================== 9.1: TRL's schedule = the loop's
def hf_schedule(name: str, cfg: TrainConfig, kwargs: dict | None = None) -> list[float]:
    """The learning rate of every optimizer step of a 🤗 Trainer / TRL run with ``lr_scheduler_type=name`` and
    ``lr_scheduler_kwargs=kwargs``, the warmup and step count of ``cfg``: built with transformers' ``get_scheduler``,
    as the Trainer builds it."""
    from transformers import get_scheduler

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    sched = get_scheduler(name, opt, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.max_steps,
                          scheduler_specific_kwargs=dict(kwargs or {}))
    lrs = []
    for _ in range(cfg.max_steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def schedule_gap(lrs: Sequence[float], cfg: TrainConfig) -> tuple[float, int]:
    """Largest gap between a 🤗 schedule and the course loop's ``lr_at``, as a fraction of the peak rate, and its step.

    The Trainer's warmup starts at 0 (its first step has learning rate 0) and the loop's at ``lr / warmup_steps``, so
    the 🤗 curve runs one step behind: its step ``s + 1`` is compared with the loop's step ``s``."""
    ours = [lr_at(s, cfg) for s in range(cfg.max_steps)]
    gaps = [abs(lrs[s + 1] - ours[s]) / cfg.lr for s in range(cfg.max_steps - 1)]
    worst = max(range(len(gaps)), key=gaps.__getitem__)
    return gaps[worst], worst


#: What the common wrong choices do, named in the feedback.
SCHEDULE_MISTAKES = {
    "linear": "'linear' is TRL's default — the schedule that split the curves: a straight line down to 0",
    "cosine": "'cosine' decays to 0; the course's loop stops at min_lr",
    "constant_with_warmup": "'constant_with_warmup' never decays after the warmup",
    "constant": "'constant' has neither the warmup nor the decay",
}


def schedule_match_problems(my_schedule, cfg: TrainConfig, tolerance: float = 0.02) -> list[str]:
    """Problems with ``my_schedule = dict(lr_scheduler_type=..., lr_scheduler_kwargs=...)`` as the SFTConfig arguments
    that make TRL follow ``cfg``'s warmup + cosine to ``cfg.min_lr`` (within ``tolerance`` of the peak rate, after the
    one-step warmup offset)."""
    from transformers import SchedulerType

    require_answer(my_schedule, "replace `None` with a dict of the SFTConfig arguments you would add.")
    if not isinstance(my_schedule, dict):
        return [f"my_schedule should be a dict like the one given, not a {type(my_schedule).__name__}"]
    name, kwargs = my_schedule.get("lr_scheduler_type"), my_schedule.get("lr_scheduler_kwargs")
    unknown = set(my_schedule) - {"lr_scheduler_type", "lr_scheduler_kwargs"}
    if unknown:
        return [f"only the schedule differs between the two runs: {sorted(unknown)} are not needed "
                "(the warmup steps, peak rate and step count already match)"]
    if name is None:
        raise NotAttempted("set my_schedule['lr_scheduler_type'] to the name of a schedule.")
    valid = [s.value for s in SchedulerType]
    if name not in valid:
        return [f"{name!r} is not a 🤗 schedule name; the names are {', '.join(valid)}"]
    if kwargs is not None and not isinstance(kwargs, dict):
        return [f"lr_scheduler_kwargs should be a dict (or None), not a {type(kwargs).__name__}"]
    try:
        lrs = hf_schedule(name, cfg, kwargs)
    except (ValueError, TypeError) as e:
        hint = (" — cosine_with_min_lr needs its floor: lr_scheduler_kwargs={'min_lr': ...} (or 'min_lr_rate')"
                if name == "cosine_with_min_lr" else "")
        return [f"transformers cannot build {name!r} with lr_scheduler_kwargs={kwargs!r}: {e}{hint}"]
    gap, step = schedule_gap(lrs, cfg)
    if gap <= tolerance:
        return []
    what = SCHEDULE_MISTAKES.get(name, f"{name!r} follows another curve")
    return [f"{what}. At step {step} the loop's learning rate is {lr_at(step, cfg):.2e} and this schedule's "
            f"{lrs[step + 1]:.2e} (a gap of {gap:.0%} of the peak); the last step: {lrs[-1]:.2e} vs "
            f"{lr_at(cfg.max_steps - 1, cfg):.2e}"]


def check_schedule_match(my_schedule, cfg: TrainConfig) -> bool:
    """Print feedback on notebook 04's exercise 9.1; True when TRL would follow the course loop's schedule."""
    def success():
        gap, _ = schedule_gap(hf_schedule(my_schedule["lr_scheduler_type"], cfg, my_schedule.get("lr_scheduler_kwargs")), cfg)
        return (f"✅ Right: with these arguments TRL's learning rate follows the loop's to within {gap:.1%} of the peak "
                "(one step behind: the Trainer's warmup starts at 0).")
    return verdict(schedule_match_problems, my_schedule, cfg, success=success)


# =========================================================================== 9.2: predict what truncation removes
def truncation_outcomes(examples: Sequence[dict], max_length: int, eos_id: int = 50256) -> dict[str, int]:
    """Measured on ``pad_collate(examples, max_length=...)``'s labels: how many examples lose their final EOS target
    and how many keep no supervised token at all."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # pad_collate warns for each example left with nothing to learn
        batch = pad_collate(list(examples), pad_token_id=eos_id, max_length=max_length)
    lose_eos = lose_everything = 0
    for labels, mask in zip(batch["labels"], batch["attention_mask"]):
        row = labels[: int(mask.sum())].tolist()
        lose_eos += eos_id not in row
        lose_everything += all(t == IGNORE_INDEX for t in row[1:])
    return {"lose_eos": lose_eos, "lose_everything": lose_everything}


def truncation_prediction_problems(prediction, examples: Sequence[dict], max_length: int,
                                   eos_id: int = 50256) -> list[str]:
    """Problems with ``prediction = dict(lose_eos=..., lose_everything=...)`` for ``examples`` cut to ``max_length``."""
    require_answer(prediction, "replace `None` with your two counts.")
    if not isinstance(prediction, dict) or set(prediction) != {"lose_eos", "lose_everything"}:
        return ["prediction should be dict(lose_eos=..., lose_everything=...) with two whole numbers"]
    if all(v is None for v in prediction.values()):
        raise NotAttempted("replace each None with a count.")
    truth = truncation_outcomes(examples, max_length, eos_id)
    lengths = [len(e["input_ids"]) for e in examples]
    prompts = [e["prompt_len"] for e in examples]
    L = max_length
    # the counts a likely mistake gives, each with what it gets wrong
    eos_mistakes = [
        (sum(n >= L for n in lengths), "off by one: an example of exactly max_length tokens keeps all of them, "
                                       "its EOS included"),
        (sum(p >= L for p in prompts), "that counts the examples whose prompt fills max_length — those lose "
                                       "everything; an example loses its final token, the EOS, as soon as it is "
                                       "longer than max_length"),
    ]
    all_mistakes = [
        (sum(n > L for n in lengths), "you counted every example longer than max_length; most keep the start of "
                                      "their response — only an example whose prompt alone fills max_length keeps "
                                      "no response token"),
        (sum(p > L for p in prompts), "off by one: a prompt of exactly max_length tokens leaves no room for any "
                                      "response token"),
        (sum(p >= L - 1 for p in prompts), "off by one the other way: a prompt of max_length − 1 tokens leaves one "
                                           "response token, and it is supervised"),
    ]
    problems = []
    for key, mistakes in (("lose_eos", eos_mistakes), ("lose_everything", all_mistakes)):
        got = prediction[key]
        if got is None:
            problems.append(f"{key}: not answered yet")
            continue
        if got == truth[key]:
            continue
        why = next((text for count, text in mistakes if got == count and count != truth[key]), None)
        problems.append(f"{key}: {got} is not what pad_collate does — "
                        + (why or "truncation keeps the first max_length tokens of each example; which ones lose "
                                  "their last token, and which lose every token after the prompt?"))
    return problems


def check_truncation_prediction(prediction, examples: Sequence[dict], max_length: int, eos_id: int = 50256) -> bool:
    """Print feedback on notebook 04's exercise 9.2; True when both counts match what pad_collate does."""
    def success():
        t = truncation_outcomes(examples, max_length, eos_id)
        return (f"✅ Right, measured on pad_collate's labels: {t['lose_eos']} of {len(examples)} examples lose their "
                f"EOS, {t['lose_everything']} keep nothing to learn.")
    return verdict(truncation_prediction_problems, prediction, examples, max_length, eos_id, success=success)
