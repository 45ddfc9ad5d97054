"""Notebook 03 — chat format: which tokens of a conversation are supervised, and how a reply is decoded.

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


# --------------------------------------------------------------------------- 6.3 predict what decoding does
#: A next-token distribution to reason about by hand (the exercise prints it): the candidates after
#: "The capital of France is", most probable first; they sum to 1.
TOY_NEXT_TOKEN = {" Paris": 0.50, " a": 0.15, " the": 0.12, " located": 0.08, " not": 0.06, " in": 0.05, " one": 0.04}
TOY_TOP_P = 0.8
TOY_TEMPERATURE = 0.5


def _nucleus(probs: dict[str, float], top_p: float) -> list[str]:
    kept, mass = [], 0.0
    for token, p in sorted(probs.items(), key=lambda kv: -kv[1]):
        if mass >= top_p - 1e-12:
            break
        kept.append(token)
        mass += p
    return kept


def _with_temperature(probs: dict[str, float], temperature: float) -> dict[str, float]:
    powered = {t: p ** (1 / temperature) for t, p in probs.items()}      # softmax(log p / T) = p^(1/T) / sum
    z = sum(powered.values())
    return {t: v / z for t, v in powered.items()}


def decoding_prediction_answers(probs: dict[str, float] = TOY_NEXT_TOKEN, top_p: float = TOY_TOP_P,
                                temperature: float = TOY_TEMPERATURE) -> dict:
    """The right answers: the top-p nucleus, P(top token) after top-p, P(top token) at the temperature."""
    top = max(probs, key=probs.get)
    nucleus = _nucleus(probs, top_p)
    return {"nucleus": nucleus, "p_top_after_top_p": probs[top] / sum(probs[t] for t in nucleus),
            "p_top_at_temperature": _with_temperature(probs, temperature)[top]}


def decoding_prediction_problems(nucleus, p_top_after_top_p, p_top_at_temperature,
                                 probs: dict[str, float] = TOY_NEXT_TOKEN, top_p: float = TOY_TOP_P,
                                 temperature: float = TOY_TEMPERATURE) -> list[str]:
    """Problems with a learner's predictions for top-p and temperature on ``probs``: one message per mistake."""
    require_answer(nucleus, "replace `None` with the list of tokens top-p keeps, e.g. [\" Paris\", ...].")
    require_answer(p_top_after_top_p, "replace `None` with P(\" Paris\") after the top-p cut (a number).")
    require_answer(p_top_at_temperature, "replace `None` with P(\" Paris\") at the new temperature (a number).")
    right = decoding_prediction_answers(probs, top_p, temperature)
    ranked = sorted(probs, key=lambda t: -probs[t])
    top = ranked[0]
    problems = []

    # --- the nucleus
    if isinstance(nucleus, str):
        nucleus = [nucleus]
    nucleus = list(nucleus)
    unknown = [t for t in nucleus if t not in probs]
    want = right["nucleus"]
    if unknown:
        problems.append(f"{unknown!r} not among the candidates: write the tokens exactly as printed, leading space "
                        f"included (e.g. {top!r})")
    elif set(nucleus) != set(want):
        kept = set(nucleus)
        mass = sum(probs[t] for t in kept)
        skipped = [t for t in ranked if t not in kept and any(probs[t] > probs[k] for k in kept)]
        if not kept:
            problems.append(f"you kept no token — no candidate reaches p = {top_p} on its own, but top-p is about the "
                            "*sum*: add probabilities, most probable first, until the total reaches p")
        elif skipped:
            problems.append(f"you kept {sorted(kept, key=lambda t: -probs[t])!r} but dropped the more probable "
                            f"{skipped[0]!r}: top-p keeps the most probable tokens first"
                            + (" (did you list the tokens it *removes*?)" if kept == set(ranked) - set(want) else ""))
        elif kept == {top}:
            problems.append(f"you kept only {top!r} — that is greedy decoding (or top-k = 1); top-p adds tokens until "
                            f"their probabilities sum to at least p = {top_p}")
        elif kept == set(ranked):
            problems.append(f"you kept every candidate — that is top_p = 1.0 (no cut); at p = {top_p} the tail goes")
        elif mass < top_p:
            problems.append(f"your {len(kept)} tokens add up to {mass:.2f}, less than p = {top_p}: the token whose "
                            "probability carries the sum past p is kept too (the nucleus must *reach* p)")
        else:
            problems.append(f"too many: your {len(kept)} tokens sum to {mass:.2f}, but fewer of them already reach "
                            f"p = {top_p} — top-p keeps the *smallest* such set (stop at the first token whose running "
                            "total reaches p)")

    # --- P(top) after the cut
    def number(x, what):
        try:
            return float(x)
        except (TypeError, ValueError):
            problems.append(f"{what} must be a number, got {x!r}")
            return None

    p_cut = number(p_top_after_top_p, "P after top-p")
    if p_cut is not None and abs(p_cut - right["p_top_after_top_p"]) > 0.01:
        if not 0 <= p_cut <= 1:
            problems.append(f"P after top-p = {p_cut} is not a probability")
        elif abs(p_cut - probs[top]) <= 0.01:
            problems.append(f"{p_cut:.3f} is P({top!r}) before the cut: the kept tokens are renormalised to sum to 1, so "
                            "divide by the total probability of the kept tokens")
        elif abs(p_cut - probs[top] / top_p) <= 0.01:
            problems.append(f"you divided by p = {top_p}; divide by the total probability the kept tokens actually "
                            "have — the nucleus usually overshoots p")
        else:
            problems.append(f"P({top!r}) after top-p should be its probability divided by the kept mass; "
                            f"{p_cut:.3f} is not that for the nucleus of p = {top_p}")

    # --- P(top) at the temperature
    p_t = number(p_top_at_temperature, "P at the temperature")
    if p_t is not None and abs(p_t - right["p_top_at_temperature"]) > 0.01:
        unnormalised = probs[top] ** (1 / temperature)
        if abs(p_t - probs[top] / temperature) <= 0.01 or not 0 <= p_t <= 1:
            problems.append(f"{p_t:g} is not how temperature works: it divides the *logits*, not the probabilities "
                            f"(P / T = {probs[top] / temperature:g}), and the result is renormalised")
        elif abs(p_t - unnormalised) <= 0.01 or abs(p_t - probs[top] * temperature) <= 0.01:
            problems.append(f"{p_t:.3f} is not normalised: softmax(logits / T) = p_i^(1/T) / Σ_j p_j^(1/T) — "
                            "divide by the sum over all candidates")
        elif abs(p_t - _with_temperature(probs, 1 / temperature)[top]) <= 0.01:
            problems.append(f"{p_t:.3f} is the answer for temperature {1 / temperature:g}: the exponent is 1/T, "
                            f"so T = {temperature} squares the probabilities before renormalising")
        elif p_t <= probs[top]:
            problems.append(f"T = {temperature} < 1 sharpens the distribution: the most probable token's share must "
                            f"grow above {probs[top]}, not shrink")
        else:
            problems.append(f"right direction (T < 1 sharpens), wrong value: compute p_i^(1/T) for every candidate "
                            "and divide by their sum")
    return problems


def check_decoding_prediction(nucleus, p_top_after_top_p, p_top_at_temperature) -> bool:
    """Print feedback on notebook 03's decoding prediction (top-p nucleus, renormalised and tempered P); True when right."""
    right = decoding_prediction_answers()
    return verdict(decoding_prediction_problems, nucleus, p_top_after_top_p, p_top_at_temperature,
                   success=f"✅ Correct: top-p {TOY_TOP_P} keeps {len(right['nucleus'])} tokens, P(' Paris') becomes "
                           f"{right['p_top_after_top_p']:.3f} after the cut and {right['p_top_at_temperature']:.3f} at "
                           f"temperature {TOY_TEMPERATURE}.")


# --------------------------------------------------------------------------- 6.4 diagnose: a chatbot that never stops
#: A colleague's ChatML template: it renders exactly the same text as CHATML_TEMPLATE, but the bot trained with it
#: (assistant_only_loss=True) runs on to max_new_tokens every time. The exercise asks why.
NEVER_STOPS_TEMPLATE = CHATML_TEMPLATE.replace(
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}",
    "{% generation %}{{ message['content'] }}{% endgeneration %}{{ '<|im_end|>' + '\\n' }}")
assert NEVER_STOPS_TEMPLATE != CHATML_TEMPLATE

_WRONG_CULPRITS = {
    "<|endoftext|>": "<|endoftext|> is the padding token here: it never appears inside a conversation, and generation "
                     "does not stop at it — the tokenizer's EOS (the stop id) is <|im_end|>",
    "\n": "the newline after <|im_end|> is context in the correct template too (look at section 3's viewer): the bot "
          "never needs to write it",
    "<|im_start|>": "<|im_start|> opens a turn; the generation prompt already supplies it, the bot never writes it",
    "assistant": "the role header comes from the generation prompt (<|im_start|>assistant\\n), not from the model",
}


def never_stops_problems(culprit, fixed_template, tokenizer, conversations) -> list[str]:
    """Problems with the learner's diagnosis of :data:`NEVER_STOPS_TEMPLATE` (the token never supervised) and fix."""
    require_answer(culprit, "replace `None` with the token that is never a target, as a string.")
    require_answer(fixed_template, "replace `None` with your corrected template (start from NEVER_STOPS_TEMPLATE).")
    problems = []
    c = str(culprit).strip() if str(culprit).strip() else str(culprit)
    if c != IM_END:
        problems.append(_WRONG_CULPRITS.get(c, f"{culprit!r} is not it: compare the two templates' masks — which "
                                               "token is grey in the colleague's viewer but green in section 3's?"))
    if fixed_template == NEVER_STOPS_TEMPLATE:
        problems.append("the template is unchanged: move one piece of text inside the generation block")
        return problems
    for k, msgs in enumerate(conversations):
        try:
            text = tokenizer.apply_chat_template(msgs, tokenize=False, chat_template=fixed_template)
            out = tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=True,
                                                return_assistant_tokens_mask=True, chat_template=fixed_template)
        except Exception as err:  # noqa: BLE001 - a Jinja syntax error is the learner's to see
            return problems + [f"the template does not render: {type(err).__name__}: {err}"]
        reference = tokenizer.apply_chat_template(msgs, tokenize=False, chat_template=CHATML_TEMPLATE)
        if text != reference:
            return problems + [f"conversation {k}: the fix changed the text itself — only the {{% endgeneration %}} "
                               f"tag should move; expected {reference[:60]!r}…, got {text[:60]!r}…"]
        ids, expected = render(msgs, tokenizer)
        got = out["assistant_masks"]
        if got != expected:
            extra = [i for i, (g, e) in enumerate(zip(got, expected)) if g and not e]
            what = tokenizer.decode([ids[i] for i in extra]) if extra else ""
            problems.append(f"conversation {k}: the fixed template still supervises the wrong tokens"
                            + (f" (also {what!r}: the newline after <|im_end|> is context)" if extra else
                               " (<|im_end|> still outside the generation block?)"))
            break
    return problems


def check_never_stops(culprit, fixed_template, tokenizer, conversations) -> bool:
    """Print feedback on notebook 03's diagnosis exercise (the never-supervised <|im_end|>); True when right."""
    return verdict(never_stops_problems, culprit, fixed_template, tokenizer, conversations,
                   success="✅ Correct: <|im_end|> was never a target, so the model never learned to end its turn "
                           "(and its probability only fell); your template supervises it again.")
