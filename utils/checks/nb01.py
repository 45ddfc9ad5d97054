"""Notebook 01 — what instruction tuning trains on: the labels of one example.

Each ``check_*`` prints the verdict for the learner (see :mod:`utils.checks.feedback`); each ``*_problems``
returns what is wrong, for the tests.
"""
from __future__ import annotations

from collections.abc import Sequence

from ..masking import IGNORE_INDEX
from .feedback import NotAttempted, as_list, require_answer, spans, verdict


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


# =========================================================================== 9.2: diagnose four label builders
# Four label builders as learners write them; the notebook prints their source. Each returns (input_ids, labels)
# for prompt + response + EOS.
def builder_a(prompt_ids, response_ids, eos_id):
    ids = prompt_ids + response_ids + [eos_id]
    labels = [-100] * len(prompt_ids) + response_ids + [eos_id]
    return ids, [-100 if token == eos_id else label for token, label in zip(ids, labels)]   # ignore padding


def builder_b(prompt_ids, response_ids, eos_id):
    ids = prompt_ids + response_ids + [eos_id]
    return ids, list(ids)                                        # the model should predict every token


def builder_c(prompt_ids, response_ids, eos_id):
    ids = prompt_ids + response_ids + [eos_id]
    return ids, [token if i >= len(prompt_ids) else -100 for i, token in enumerate(ids)]


def builder_d(prompt_ids, response_ids, eos_id):
    ids = prompt_ids + response_ids + [eos_id]
    targets = [-100] * len(prompt_ids) + response_ids + [eos_id]
    return ids, targets[1:] + [-100]                             # label t = the token that comes next


LABEL_BUILDERS = {"a": builder_a, "b": builder_b, "c": builder_c, "d": builder_d}

#: The right builder for each question of the exercise.
LABEL_DIAGNOSIS = {"never_stops": "a", "writes_instructions": "b", "predicts_two_ahead": "d",
                   "correct": "c"}

#: What each builder really does: the feedback for a wrong pick names the mistake in the reading.
BUILDER_BEHAVIOUR = {
    "a": "a masks every position whose token is EOS — meant for padding, but the example's own final EOS is an EOS "
         "too, so the model is never trained to end its answer",
    "b": "b supervises every token, the prompt included (so it also learns to write instructions), and it keeps the "
         "final EOS, so it does learn to stop",
    "c": "c masks exactly the prompt and keeps every response token and the final EOS: nothing is wrong with it",
    "d": "d shifts the labels itself (label t = token t+1), but the loss shifts again, so each position is trained "
         "to predict the token two ahead; it keeps the EOS as a target",
}


def label_diagnosis_problems(answers) -> list[str]:
    """Problems with the answers of exercise 9.2 (a dict question → "a"/"b"/"c"/"d")."""
    require_answer(answers, "replace `None` in `diagnosis` with your answers.")
    if not isinstance(answers, dict):
        return [f"`diagnosis` should be a dict like the one given, not a {type(answers).__name__}"]
    if all(answers.get(q) is None for q in LABEL_DIAGNOSIS):
        raise NotAttempted('replace each None with "a", "b", "c" or "d".')
    problems = [f"unknown question {q!r}: keep the four keys as given" for q in answers if q not in LABEL_DIAGNOSIS]
    for question, right in LABEL_DIAGNOSIS.items():
        got = answers.get(question)
        if got is None:
            problems.append(f"{question}: not answered yet")
            continue
        pick = str(got).strip().lower()
        if pick not in LABEL_BUILDERS:
            problems.append(f'{question}: answer with one of "a", "b", "c", "d", not {got!r}')
        elif pick != right:
            problems.append(f"{question}: not {pick} — {BUILDER_BEHAVIOUR[pick]}")
    return problems


def check_label_diagnosis(answers) -> bool:
    """Print feedback on notebook 01's exercise 9.2 (which label builder does what); True when all four are right."""
    return verdict(label_diagnosis_problems, answers,
                   success="✅ Right: a drops the final EOS with the padding, b trains on the prompt, d shifts twice, "
                           "c is correct. Section 7.1 measured what the first two do to a trained model.")
