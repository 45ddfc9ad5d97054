"""Notebook 01 — what instruction tuning trains on: the labels of one example.

Each ``check_*`` prints the verdict for the learner (see :mod:`utils.checks.feedback`); each ``*_problems``
returns what is wrong, for the tests.
"""
from __future__ import annotations

from collections.abc import Sequence

from ..masking import IGNORE_INDEX
from .feedback import as_list, require_answer, spans, verdict


def prompt_mask_problems(labels, input_ids: Sequence[int], prompt_len: int, eos_id: int = 50256,
                         ignore_index: int = IGNORE_INDEX) -> list[str]:
    """Problems with ``labels`` for ``input_ids = prompt + response + [EOS]``.

    Correct labels: ``ignore_index`` on the first ``prompt_len`` positions, the input token
    itself everywhere after (response tokens and the final EOS), same length, no shift.
    """
    require_answer(labels, "replace `None` with your list of labels.")
    ids = as_list(input_ids)
    labels = as_list(labels)
    if len(labels) != len(ids):
        hint = ""
        if len(labels) == len(ids) - 1:
            hint = " It looks shifted by one: the loss does the shift, labels stay aligned with input_ids."
        return [f"labels has {len(labels)} entries but input_ids has {len(ids)}; they must line up "
                f"one-to-one.{hint}"]
    problems = []
    if labels[:-1] == ids[1:] or labels[1:] == ids[:-1]:
        problems.append("your labels look shifted by one position; keep them aligned with input_ids "
                        "(model(..., labels=...) and masked_nll shift internally)")
        return problems
    supervised_prompt = [i for i in range(prompt_len) if labels[i] != ignore_index]
    if supervised_prompt:
        problems.append(f"your labels supervise {len(supervised_prompt)} prompt token(s) "
                        f"(positions {spans(supervised_prompt)}); set them to {ignore_index} so the "
                        "model is not trained to write the instruction")
    last = len(ids) - 1
    masked_resp = [i for i in range(prompt_len, last) if labels[i] == ignore_index]
    if masked_resp:
        problems.append(f"{len(masked_resp)} response token(s) are masked (positions {spans(masked_resp)}); "
                        "the response is what the model must learn — keep their token ids")
    if ids[last] == eos_id and labels[last] == ignore_index:
        problems.append(f"the final EOS (position {last}) is masked; keep it in the labels, "
                        "or the model never learns to stop")
    wrong = [i for i in range(prompt_len, len(ids)) if labels[i] not in (ignore_index, ids[i])]
    if wrong:
        i = wrong[0]
        problems.append(f"{len(wrong)} response label(s) differ from the input token at the same position "
                        f"(first: position {i} has {labels[i]}, expected {ids[i]}); copy the token ids")
    return problems


def check_prompt_mask(labels, input_ids: Sequence[int], prompt_len: int, eos_id: int = 50256,
                      ignore_index: int = IGNORE_INDEX) -> bool:
    """Print feedback on notebook 01's labels exercise (one example's prompt masked with -100); True when right."""
    return verdict(prompt_mask_problems, labels, input_ids, prompt_len, eos_id, ignore_index,
                   success=lambda: f"✅ Correct: {prompt_len} prompt tokens masked, "
                                   f"{len(as_list(input_ids)) - prompt_len} tokens supervised (response + EOS).")
