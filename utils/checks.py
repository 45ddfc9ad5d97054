"""Exercise checkers: specific feedback (what is wrong, where, what to look at), never just "wrong".

Each exercise has two functions: ``<name>_problems(...)`` returns the list of problems found
(empty = correct; used by the tests), and ``check_<name>(...)`` prints the verdict for the
learner and returns True/False.
"""
from __future__ import annotations

from collections.abc import Sequence

IGNORE_INDEX = -100


def _as_list(x) -> list[int]:
    return [int(v) for v in (x.tolist() if hasattr(x, "tolist") else x)]


def _spans(positions: list[int]) -> str:
    """[3, 4, 5, 9] -> '3–5, 9'"""
    out, start = [], None
    for i, p in enumerate(positions):
        if start is None:
            start = p
        if i + 1 == len(positions) or positions[i + 1] != p + 1:
            out.append(f"{start}" if start == p else f"{start}–{p}")
            start = None
    return ", ".join(out)


def _report(problems: list[str], success: str) -> bool:
    """Print the verdict: each problem on its own line, or the success message."""
    if problems:
        print("❌ Not yet:")
        for p in problems:
            print("   -", p)
        return False
    print(success)
    return True


def prompt_mask_problems(labels, input_ids: Sequence[int], prompt_len: int, eos_id: int = 50256,
                         ignore_index: int = IGNORE_INDEX) -> list[str]:
    """Problems with ``labels`` for ``input_ids = prompt + response + [EOS]``.

    Correct labels: ``ignore_index`` on the first ``prompt_len`` positions, the input token
    itself everywhere after (response tokens and the final EOS), same length, no shift.
    """
    ids = _as_list(input_ids)
    labels = _as_list(labels)
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
                        f"(positions {_spans(supervised_prompt)}); set them to {ignore_index} so the "
                        "model is not trained to write the instruction")
    last = len(ids) - 1
    masked_resp = [i for i in range(prompt_len, last) if labels[i] == ignore_index]
    if masked_resp:
        problems.append(f"{len(masked_resp)} response token(s) are masked (positions {_spans(masked_resp)}); "
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
    """Print feedback on a learner's labels for one example; True when they are right."""
    if labels is None:
        print("⏳ Not attempted yet: replace `None` with your list of labels.")
        return False
    problems = prompt_mask_problems(labels, input_ids, prompt_len, eos_id, ignore_index)
    n = len(_as_list(input_ids)) - prompt_len
    return _report(problems, f"✅ Correct: {prompt_len} prompt tokens masked, {n} tokens supervised (response + EOS).")


# --------------------------------------------------------------------------- notebook 02
#: A small "Q&A forum" format for the converter exercise of notebook 02.
FORUM_ROWS = [
    {"question": {"title": "How do I reverse a list in Python?", "body": "I have [1, 2, 3]."},
     "answers": [{"text": "Call reversed(my_list).", "votes": 12}, {"text": "Use my_list[::-1].", "votes": 30}],
     "site": "stackoverflow"},
    {"question": {"title": "What is the boiling point of water at sea level?", "body": ""},
     "answers": [{"text": "100 °C (212 °F).", "votes": 7}], "site": "physics"},
    {"question": {"title": "Best first programming language?", "body": "For a child of ten."},
     "answers": [{"text": "Scratch, then Python.", "votes": 5}, {"text": "Python.", "votes": 5}],
     "site": "softwareengineering"},
    {"question": {"title": "Why is the sky blue?", "body": ""}, "answers": [], "site": "physics"},
]


def _forum_expected(row: dict, index: int) -> dict:
    q = row["question"]
    best = max(row["answers"], key=lambda a: a["votes"])        # max() keeps the first of equal votes
    user = f"{q['title']}\n\n{q['body']}" if q["body"] else q["title"]
    return {"id": f"forum-{index}", "source": "forum",
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": best["text"]}],
            "meta": {"index": index, "site": row["site"], "votes": best["votes"]}}


def forum_converter_problems(convert) -> list[str]:
    """Problems with a learner's ``convert(row, index) -> record`` for :data:`FORUM_ROWS`."""
    from .data import DataFormatError, validate_messages
    problems = []
    for index, row in enumerate(FORUM_ROWS):
        if not row["answers"]:
            try:
                got = convert(row, index)
            except DataFormatError as err:
                if err.index not in (None, index):
                    problems.append(f"row {index}: the DataFormatError names record {err.index}, not {index}")
                continue
            except Exception as err:  # noqa: BLE001 - we report what the learner raised
                problems.append(f"row {index} has no answers: raise DataFormatError (from utils.data), "
                                f"not {type(err).__name__}")
                continue
            problems.append(f"row {index} has no answers, but your converter returned a record; raise "
                            "DataFormatError so the row is rejected with a reason instead of silently kept")
            continue
        expected = _forum_expected(row, index)
        try:
            got = convert(row, index)
        except Exception as err:  # noqa: BLE001
            problems.append(f"row {index}: your converter raised {type(err).__name__}: {err}")
            continue
        if not isinstance(got, dict) or "messages" not in got:
            problems.append(f"row {index}: return a dict with id, source, messages and meta, got {type(got).__name__}")
            continue
        try:
            validate_messages(got["messages"])
        except DataFormatError as err:
            problems.append(f"row {index}: the messages are not a valid conversation: {err.reason}")
            continue
        user, reply = got["messages"][0]["content"], got["messages"][-1]["content"]
        if user != expected["messages"][0]["content"]:
            problems.append(f"row {index}: user content should be {expected['messages'][0]['content']!r}, got "
                            f"{user!r} (title, a blank line, then the body — just the title when the body is empty)")
        if reply != expected["messages"][1]["content"]:
            votes = {a["text"]: a["votes"] for a in row["answers"]}
            picked = f" (it has {votes[reply]} votes)" if reply in votes else ""
            problems.append(f"row {index}: the assistant reply should be the most-voted answer "
                            f"{expected['messages'][1]['content']!r} ({expected['meta']['votes']} votes; on a tie the "
                            f"first listed), got {reply!r}{picked}")
        for key in ("id", "source"):
            if got.get(key) != expected[key]:
                problems.append(f"row {index}: {key} should be {expected[key]!r}, got {got.get(key)!r}")
        meta = got.get("meta", {})
        for key, value in expected["meta"].items():
            if meta.get(key) != value:
                problems.append(f"row {index}: meta[{key!r}] should be {value!r}, got {meta.get(key)!r}")
    return problems


def check_forum_converter(convert) -> bool:
    """Print feedback on the notebook-02 converter exercise; True when it is right."""
    try:
        problems = forum_converter_problems(convert)
    except NotImplementedError:
        problems = None
    if problems is None or any("NotImplementedError" in p for p in problems):
        print("⏳ Not attempted yet: write convert_forum(row, index) and run this cell again.")
        return False
    return _report(problems, f"✅ Correct: {len(FORUM_ROWS) - 1} rows converted, "
                             "the row without answers rejected with a reason.")


# --------------------------------------------------------------------------- notebook 03
def assistant_mask_problems(mask, messages, tokenizer, train_on: str = "all") -> list[str]:
    """Problems with a learner's assistant mask for ``render(messages, tokenizer)``."""
    from .chat import IM_END, render
    ids, expected = render(messages, tokenizer, train_on=train_on)
    mask = _as_list(mask)
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
        problems.append(f"{len(extra)} token(s) supervised that should not be (positions {_spans(extra)}: {what!r}); "
                        "system, user and role-header tokens are context only")
    missing_end = [i for i in missing if ids[i] == im_end]
    missing_text = [i for i in missing if ids[i] != im_end]
    if missing_text:
        what = tokenizer.decode([ids[i] for i in missing_text])[:60]
        problems.append(f"{len(missing_text)} reply token(s) not supervised (positions {_spans(missing_text)}: {what!r})")
    if missing_end:
        problems.append(f"the <|im_end|> after a reply is not supervised (positions {_spans(missing_end)}); "
                        "without it the model never learns to end its turn")
    return problems


def check_assistant_mask(mask, messages, tokenizer) -> bool:
    """Print feedback on the notebook-03 mask exercise; True when it is right."""
    if mask is None:
        print("⏳ Not attempted yet: replace `None` with your mask (a list of 0/1, one per token).")
        return False
    problems = assistant_mask_problems(mask, messages, tokenizer)
    return _report(problems, f"✅ Correct: {sum(_as_list(mask))} of {len(_as_list(mask))} tokens supervised — "
                             "every reply and its <|im_end|>.")


def last_turn_template_problems(template: str, tokenizer, conversations) -> list[str]:
    """Problems with a chat template meant to supervise only the final assistant reply.

    The template must render the same text as :data:`utils.chat.CHATML_TEMPLATE`, and its
    ``return_assistant_tokens_mask`` must equal ``render(..., train_on="last")``.
    """
    from .chat import CHATML_TEMPLATE, render
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


def check_last_turn_template(template: str, tokenizer, conversations) -> bool:
    """Print feedback on the notebook-03 template exercise; True when it is right."""
    problems = last_turn_template_problems(template, tokenizer, conversations)
    return _report(problems, f"✅ Correct: on {len(conversations)} conversations only the final reply "
                             "(and its <|im_end|>) is supervised.")


# --------------------------------------------------------------------------- notebook 04
def perplexity_problems(value, loss: float) -> list[str]:
    """Problems with a learner's perplexity for a mean per-token NLL ``loss`` (natural log)."""
    import math
    try:
        value = float(value)
    except (TypeError, ValueError):
        return [f"expected a number, got {type(value).__name__}"]
    expected = math.exp(loss)
    if math.isclose(value, expected, rel_tol=1e-4):
        return []
    if math.isclose(value, 2 ** loss, rel_tol=1e-4):
        return [f"you used 2**loss = {value:.4g}; the loss is in nats (natural log), so PP = e**loss = {expected:.4g}"]
    if math.isclose(value, math.exp(-loss), rel_tol=1e-4):
        return ["you used exp(-loss): that is the geometric-mean probability of a token, PP is its inverse"]
    if math.isclose(value, loss, rel_tol=1e-4):
        return ["that is the loss itself; perplexity is exp(loss)"]
    return [f"{value:.4g} is not exp({loss:.4f}) = {expected:.4g}"]


def check_perplexity(value, loss: float) -> bool:
    """Print feedback on the perplexity exercise; True when it is right."""
    if value is None:
        print("⏳ Not attempted yet: replace `None` with your perplexity.")
        return False
    return _report(perplexity_problems(value, loss), f"✅ Correct: PP = e^{loss:.4f} = {float(value):.4g}.")


def collate_labels_problems(make_labels) -> list[str]:
    """Problems with a learner's ``make_labels(input_ids, attention_mask, prompt_lens) -> labels``.

    The batch is right-padded with EOS (= the pad id, 50256) and every sequence ends with its
    own EOS, so masking "every EOS" is wrong: only padding is.
    """
    import torch

    from .masking import build_labels, pad_collate
    EOS = 50256
    pairs = [([11, 12, 13], [21, 22]), ([31], [41, 42, 43, 44]), ([51, 52], [61])]
    examples = [dict(zip(("input_ids", "labels"), build_labels(p, r, EOS))) for p, r in pairs]
    batch = pad_collate(examples, pad_token_id=EOS)
    prompt_lens = [len(p) for p, _ in pairs]
    try:
        got = make_labels(batch["input_ids"].clone(), batch["attention_mask"].clone(), list(prompt_lens))
    except NotImplementedError:
        raise
    except Exception as err:  # noqa: BLE001
        return [f"your function raised {type(err).__name__}: {err}"]
    got = torch.as_tensor(got)
    want = batch["labels"]
    if got.shape != want.shape:
        return [f"labels should have the batch's shape {tuple(want.shape)}, got {tuple(got.shape)}"]
    problems = []
    for b, (p, r) in enumerate(pairs):
        n, eos_pos = len(p) + len(r) + 1, len(p) + len(r)
        row, ref = got[b].tolist(), want[b].tolist()
        if any(row[t] != -100 for t in range(len(p))):
            problems.append(f"row {b}: the prompt (positions 0–{len(p) - 1}) must be -100")
        if row[eos_pos] == -100:
            problems.append(f"row {b}: the sequence's own EOS at position {eos_pos} is masked — mask padding "
                            "by the attention mask, not by the token id (pad = EOS here)")
        if any(row[t] != -100 for t in range(n, len(row))):
            problems.append(f"row {b}: padding positions {n}–{len(row) - 1} must be -100")
        if row[len(p):eos_pos] != ref[len(p):eos_pos]:
            problems.append(f"row {b}: response positions {len(p)}–{eos_pos - 1} should keep their ids {ref[len(p):eos_pos]}")
    if not problems and got.tolist() != want.tolist():
        problems.append("labels differ from the expected ones; keep them aligned with input_ids (no shift)")
    return problems


def check_collate_labels(make_labels) -> bool:
    """Print feedback on the collate-mask exercise; True when it is right."""
    try:
        problems = collate_labels_problems(make_labels)
    except NotImplementedError:
        print("⏳ Not attempted yet: write make_labels and run this cell again.")
        return False
    return _report(problems, "✅ Correct: prompt and padding masked, each sequence's own EOS kept.")
