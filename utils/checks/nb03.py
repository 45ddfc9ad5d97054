"""Notebook 03 — chat format: which tokens of a conversation are supervised.

Each ``check_*`` prints the verdict for the learner (see :mod:`utils.checks.feedback`); each ``*_problems``
returns what is wrong, for the tests.
"""
from __future__ import annotations

from ..chat import CHATML_TEMPLATE, IM_END, render
from .feedback import as_list, require_answer, spans, verdict


def assistant_mask_problems(mask, messages, tokenizer, train_on: str = "all") -> list[str]:
    """Problems with a learner's assistant mask for ``render(messages, tokenizer)``."""
    require_answer(mask, "replace `None` with your mask (a list of 0/1, one per token).")
    ids, expected = render(messages, tokenizer, train_on=train_on)
    mask = as_list(mask)
    if len(mask) != len(ids):
        return [f"the mask has {len(mask)} entries but the conversation has {len(ids)} tokens"]
    if any(m not in (0, 1) for m in mask):
        return ["use 1 for supervised tokens and 0 for the rest"]
    problems = []
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    extra = [i for i, (m, e) in enumerate(zip(mask, expected)) if m and not e]
    missing = [i for i, (m, e) in enumerate(zip(mask, expected)) if e and not m]
    if extra:
        what = tokenizer.decode([ids[i] for i in extra])[:60]
        problems.append(f"{len(extra)} token(s) supervised that should not be (positions {spans(extra)}: {what!r}); "
                        "system, user and role-header tokens are context only")
    missing_end = [i for i in missing if ids[i] == im_end]
    missing_text = [i for i in missing if ids[i] != im_end]
    if missing_text:
        what = tokenizer.decode([ids[i] for i in missing_text])[:60]
        problems.append(f"{len(missing_text)} reply token(s) not supervised (positions {spans(missing_text)}: {what!r})")
    if missing_end:
        problems.append(f"the <|im_end|> after a reply is not supervised (positions {spans(missing_end)}); "
                        "without it the model never learns to end its turn")
    return problems


def last_turn_template_problems(template: str, tokenizer, conversations) -> list[str]:
    """Problems with a chat template meant to supervise only the final assistant reply.

    The template must render the same text as :data:`utils.chat.CHATML_TEMPLATE`, and its
    ``return_assistant_tokens_mask`` must equal ``render(..., train_on="last")``.
    """
    problems = []
    for k, msgs in enumerate(conversations):
        try:
            text = tokenizer.apply_chat_template(msgs, tokenize=False, chat_template=template)
            out = tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                                                chat_template=template)
        except Exception as err:  # noqa: BLE001 - a Jinja syntax error is the learner's to see
            return [f"the template does not render: {type(err).__name__}: {err}"]
        reference = tokenizer.apply_chat_template(msgs, tokenize=False, chat_template=CHATML_TEMPLATE)
        if text != reference:
            return [f"conversation {k}: the template changed the text itself (only the generation tags should move); "
                    f"expected {reference[:80]!r}…, got {text[:80]!r}…"]
        ids, expected = render(msgs, tokenizer, train_on="last")
        got = out["assistant_masks"]
        n_replies = sum(m["role"] == "assistant" for m in msgs)
        if got == expected:
            continue
        if sum(got) == 0:
            problems.append(f"conversation {k}: nothing is supervised; keep {{% generation %}} around the last reply")
        elif sum(got) > sum(expected):
            supervised_text = tokenizer.decode([i for i, m in zip(ids, got) if m])
            problems.append(f"conversation {k} has {n_replies} replies and your template supervises more than the "
                            f"last one: {supervised_text[:80]!r}; wrap only the final reply (hint: loop.last)")
        else:
            problems.append(f"conversation {k}: the last reply is only partly supervised; the <|im_end|> belongs "
                            "inside the generation block too")
    return problems


def check_assistant_mask(mask, messages, tokenizer) -> bool:
    """Print feedback on notebook 03's mask exercise (1 on every reply and its <|im_end|>); True when right."""
    return verdict(assistant_mask_problems, mask, messages, tokenizer,
                   success=lambda: f"✅ Correct: {sum(as_list(mask))} of {len(as_list(mask))} tokens supervised — every reply and its <|im_end|>.")


def check_last_turn_template(template: str, tokenizer, conversations) -> bool:
    """Print feedback on notebook 03's template exercise (only the final reply supervised); True when right."""
    return verdict(last_turn_template_problems, template, tokenizer, conversations,
                   success=f"✅ Correct: on {len(conversations)} conversations only the final reply (and its <|im_end|>) is supervised.")
