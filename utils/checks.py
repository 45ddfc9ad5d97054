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
    from .schema import DataFormatError, validate_messages
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
                problems.append(f"row {index} has no answers: raise DataFormatError (from utils.schema), "
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


# =========================================================================== notebook 05: GPT-2 Large
def _call(fn, *args, **kwargs):
    """Call the learner's function; returns (result, problem) — problem names what went wrong."""
    try:
        return fn(*args, **kwargs), None
    except NotImplementedError as e:
        return None, (f"not implemented yet: {e}" if str(e) else
                      "not implemented yet — replace `raise NotImplementedError` with your code")
    except Exception as e:  # noqa: BLE001 — report any error as feedback, not a traceback
        return None, f"calling it raised {type(e).__name__}: {e}"


def _gib(n: float) -> str:
    return f"{n / 2**30:.3f} GiB"


def _tiny_lm(n_layer: int = 2, n_embd: int = 64, **config):
    """A small random GPT-2 (seed 0, GPT-2's vocabulary) for a checker to try the learner's code on."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=2, n_positions=256, **config))


def param_count_problems(count_params) -> list[str]:
    """``count_params(n_layer, n_embd, vocab_size=50257, n_positions=1024) -> int`` for GPT-2."""
    from .memory import GPT2_LARGE, GPT2_MEDIUM, GPT2_SMALL, ModelShape
    problems = []
    for name, shape in [("GPT-2 small", GPT2_SMALL), ("GPT-2 medium", GPT2_MEDIUM), ("GPT-2 Large", GPT2_LARGE),
                        ("the tiny model", ModelShape(2, 64, 2, n_positions=256))]:
        got, problem = _call(count_params, shape.n_layer, shape.n_embd, vocab_size=shape.vocab_size,
                             n_positions=shape.n_positions)
        if problem:
            return [problem]
        expected, L, d = shape.n_params, shape.n_layer, shape.n_embd
        if got == expected:
            continue
        diff = int(got) - expected
        why = {shape.vocab_size * d: "you counted the LM head as its own matrix; GPT-2 ties it to the token embedding",
               -shape.vocab_size * d: "the token embedding (vocab_size × n_embd) is missing",
               -shape.n_positions * d: "the position embedding (n_positions × n_embd) is missing",
               -2 * d: "the final LayerNorm (ln_f: gain and bias, 2·n_embd) is missing",
               -13 * d * L: "biases and LayerNorm parameters are missing: each block has 13·n_embd of them",
               -4 * d * L: "each block's two LayerNorms (gain + bias, 4·n_embd) are missing"}.get(diff)
        if why is None and diff % L == 0:
            why = (f"the per-block count is off by {diff // L:,} (a block has 12·d² + 13·d = {12 * d * d + 13 * d:,}: "
                   "c_attn d×3d, attn c_proj d×d, c_fc d×4d, mlp c_proj 4d×d, their biases, two LayerNorms)")
        problems.append(f"{name}: you counted {int(got):,}, the model has {expected:,} (off by {diff:+,}). "
                        + (why or "compare part by part: embeddings, blocks, final LayerNorm"))
    return problems


def check_param_count(count_params) -> bool:
    return _report(param_count_problems(count_params),
                   "✅ Your count matches sum(p.numel()) for GPT-2 small, medium, Large and the tiny model.")


def static_memory_problems(static_memory) -> list[str]:
    """``static_memory(n_params, optimizer, n_lora=0) -> {"weights", "gradients", "optimizer"}`` in bytes."""
    from .memory import GPT2_LARGE, static_training_memory
    n, r16 = GPT2_LARGE.n_params, GPT2_LARGE.lora_params(16)
    cases = [("fp32 AdamW", "adamw", 0), ("8-bit AdamW", "adamw8bit", 0), ("SGD", "sgd", 0),
             ("LoRA r=16 + AdamW", "adamw", r16)]
    hints = {"weights": "fp32 master weights are 4 bytes per parameter (LoRA adds its adapters on top)",
             "gradients": "one fp32 gradient (4 bytes) per *trainable* parameter",
             "optimizer": "AdamW keeps m and v in fp32 (8 bytes per trainable parameter), 8-bit AdamW 2 bytes, "
                          "SGD without momentum none"}
    problems = []
    for name, optimizer, n_lora in cases:
        got, problem = _call(static_memory, n, optimizer, n_lora=n_lora)
        if problem:
            return [problem]
        expected = static_training_memory(GPT2_LARGE, optimizer, 16 if n_lora else None)
        if not isinstance(got, dict):
            return [f"return a dict with keys weights, gradients, optimizer (bytes), not {type(got).__name__}"]
        for part in ("weights", "gradients", "optimizer"):
            if part not in got:
                problems.append(f"{name}: the result has no {part!r} entry")
            elif int(got[part]) != expected[part]:
                ratio = f" ({int(got[part]) / expected[part]:.2f}× the expected)" if expected[part] else ""
                problems.append(f"{name}, {part}: you predicted {_gib(int(got[part]))}, expected "
                                f"{_gib(expected[part])}{ratio} — {hints[part]}")
    return problems


def check_static_memory(static_memory) -> bool:
    return _report(static_memory_problems(static_memory),
                   "✅ Weights, gradients and optimizer states agree with utils.memory for all four configurations.")


def precision_choice_problems(choose_precision) -> list[str]:
    """``choose_precision(capability) -> "fp32" | "fp16" | "bf16"``; capability is (major, minor) or None (CPU)."""
    from .env import precision_for
    gpus = [(None, "no GPU (CPU)"), ((7, 5), "T4"), ((7, 0), "V100"), ((6, 0), "P100"), ((8, 0), "A100"),
            ((8, 9), "L4"), ((9, 0), "H100")]
    problems = []
    for capability, name in gpus:
        got, problem = _call(choose_precision, capability)
        if problem:
            return [problem]
        expected = precision_for(capability)
        if got != expected:
            why = {"fp32": "without a GPU there is no fast half precision: train in fp32",
                   "fp16": "below compute capability 8 bf16 is emulated (slow) even where "
                           "torch.cuda.is_bf16_supported() says True: use fp16 autocast with a loss scaler",
                   "bf16": "from compute capability 8 (Ampere) on, bf16 runs natively and needs no loss scaler"}[expected]
            problems.append(f"{name} (capability {capability}): you chose {got!r}, expected {expected!r} — {why}")
    return problems


def check_precision_choice(choose_precision) -> bool:
    return _report(precision_choice_problems(choose_precision),
                   "✅ fp32 on CPU, fp16 mixed precision below compute capability 8 (T4), bf16 from 8 on.")


def lora_config_problems(make_lora_config) -> list[str]:
    """``make_lora_config(r) -> peft.LoraConfig`` for GPT-2's Conv1D layers."""
    from peft import LoraConfig, get_peft_model

    from .memory import ModelShape
    config, problem = _call(make_lora_config, 4)
    if problem:
        return [problem]
    if not isinstance(config, LoraConfig):
        return [f"return a peft.LoraConfig, not {type(config).__name__}"]
    problems = []
    wanted = {"c_attn", "c_proj", "c_fc"}
    targets = set(config.target_modules or [])
    if targets != wanted:
        missing, extra = sorted(wanted - targets), sorted(targets - wanted)
        problems.append("target_modules should be exactly c_attn, c_proj, c_fc (GPT-2's Conv1D layers; c_proj "
                        f"matches both the attention and the MLP projection); missing {missing}, extra {extra}")
    if not config.fan_in_fan_out:
        problems.append("set fan_in_fan_out=True: GPT-2's Conv1D stores its weight as (in, out), the transpose "
                        "of nn.Linear, and LoRA must know to merge it that way")
    if config.r != 4:
        problems.append(f"use the rank you were given: make_lora_config(4) returned r={config.r}")
    if problems:
        return problems
    shape = ModelShape(2, 64, 2, n_positions=256)
    model = _tiny_lm()
    peft_model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    if trainable != shape.lora_params(4):
        problems.append(f"the tiny model gets {trainable:,} trainable parameters, expected {shape.lora_params(4):,} "
                        "(r·(in + out) per adapted layer, nothing else trainable)")
    return problems


def check_lora_config(make_lora_config) -> bool:
    from .memory import GPT2_LARGE
    return _report(lora_config_problems(make_lora_config),
                   f"✅ LoRA on c_attn, c_proj, c_fc with fan_in_fan_out=True. GPT-2 Large at r=16 trains "
                   f"{GPT2_LARGE.lora_params(16):,} parameters ({GPT2_LARGE.lora_params(16) / GPT2_LARGE.n_params:.2%}).")


def memory_savers_problems(add_memory_savers) -> list[str]:
    """``add_memory_savers(model, lr) -> optimizer``: gradient checkpointing on, 8-bit AdamW returned."""
    model = _tiny_lm()
    optimizer, problem = _call(add_memory_savers, model, 1e-3)
    if problem:
        return [problem]
    problems = []
    if not model.is_gradient_checkpointing:
        problems.append("gradient checkpointing is off: call model.gradient_checkpointing_enable()")
    if model.config.use_cache:
        problems.append("set model.config.use_cache = False: the key/value cache is useless in training and "
                        "conflicts with checkpointing")
    try:
        import bitsandbytes as bnb
        eight_bit = isinstance(optimizer, bnb.optim.optimizer.Optimizer8bit) and optimizer.args.optim_bits == 8
    except ImportError:
        eight_bit = False
    if not eight_bit:
        problems.append(f"return bitsandbytes' 8-bit AdamW (bnb.optim.AdamW8bit), not {type(optimizer).__name__}")
        return problems
    covered = {id(p) for g in optimizer.param_groups for p in g["params"]}
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in covered]
    if missing:
        problems.append(f"{len(missing)} trainable parameter(s) are not in the optimizer (first: {missing[0]})")
    return problems


def check_memory_savers(add_memory_savers) -> bool:
    return _report(memory_savers_problems(add_memory_savers),
                   "✅ Gradient checkpointing on, the cache off, and 8-bit AdamW over every trainable parameter.")


def validation_loss_problems(validation_loss) -> list[str]:
    """``validation_loss(model, batches) -> (loss per supervised token, perplexity)``."""
    import math

    import torch

    from .env import pick_device_and_precision
    from .training import evaluate
    model = _tiny_lm(1, 32)
    g = torch.Generator().manual_seed(1)
    batches = []
    for n_batch, length, supervised in [(2, 24, 20), (3, 16, 2), (1, 8, 5)]:   # very different token counts
        ids = torch.randint(0, 50257, (n_batch, length), generator=g)
        labels = ids.clone()
        labels[:, : length - supervised] = -100
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    model.train()
    got, problem = _call(validation_loss, model, batches)
    if problem:
        return [problem]
    expected = evaluate(model, batches, pick_device_and_precision("cpu"))
    try:
        loss, ppl = float(got[0]), float(got[1])
    except (TypeError, IndexError, ValueError):
        return [f"return a pair (loss, perplexity), not {got!r}"]
    problems = []
    if abs(loss - expected) > 1e-4:
        means = []
        with torch.no_grad():
            model.eval()
            for b in batches:
                means.append(float(model(**b).loss))
        if abs(loss - sum(means) / len(means)) < 1e-4:
            problems.append(f"your loss {loss:.4f} is the mean of the batch means; weight each batch by its "
                            f"supervised tokens (sum of token losses / all tokens) to get {expected:.4f}")
        else:
            problems.append(f"your loss {loss:.4f} differs from the loss per supervised token {expected:.4f} "
                            f"(by {loss - expected:+.4f}); use model.eval(), sum the token losses of every batch "
                            "(labels −100 ignored) and divide by the number of supervised tokens")
    if abs(ppl - math.exp(loss)) > 1e-3 * math.exp(loss):
        problems.append(f"perplexity is exp(loss): exp({loss:.4f}) = {math.exp(loss):.3f}, you returned {ppl:.3f}")
    return problems


def check_validation_loss(validation_loss) -> bool:
    return _report(validation_loss_problems(validation_loss),
                   "✅ Loss per supervised token over all batches, and its perplexity.")


def save_reload_problems(save_and_reload, tmp_dir) -> list[str]:
    """``save_and_reload(peft_model, directory, make_base) -> reloaded model`` with the same logits."""
    from pathlib import Path

    import torch
    from peft import LoraConfig, get_peft_model

    make_base = _tiny_lm

    model = get_peft_model(make_base(), LoraConfig(r=4, target_modules=["c_attn", "c_proj", "c_fc"],
                                                   fan_in_fan_out=True))
    with torch.no_grad():                               # trained adapters: B is no longer zero
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(name)))
    model.eval()
    x = torch.randint(0, 50257, (2, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = model(input_ids=x).logits
    directory = Path(tmp_dir) / "adapter"
    reloaded, problem = _call(save_and_reload, model, directory, make_base)
    if problem:
        return [problem]
    problems = []
    files = sorted(p.name for p in directory.glob("*")) if directory.exists() else []
    if "adapter_model.safetensors" not in files:
        problems.append(f"{directory} should hold adapter_model.safetensors (model.save_pretrained writes it); "
                        f"found {files or 'nothing'}")
    if any(f.endswith((".bin", ".pt", ".pkl")) for f in files):
        problems.append("save with safetensors, not pickle files (.bin/.pt): loading a pickle can run code")
    if reloaded is model:
        return problems + ["you returned the model you were given; load a new one from the directory"]
    try:
        reloaded.eval()
        with torch.no_grad():
            after = reloaded(input_ids=x).logits
    except Exception as e:  # noqa: BLE001
        return problems + [f"the reloaded model cannot run: {type(e).__name__}: {e}"]
    diff = float((after - before).abs().max())
    if diff > 1e-5:
        problems.append(f"the reloaded model's logits differ by up to {diff:.3g}: load the adapter onto a fresh "
                        "base model with PeftModel.from_pretrained(make_base(), directory)")
    return problems


def check_save_reload(save_and_reload, tmp_dir) -> bool:
    return _report(save_reload_problems(save_and_reload, tmp_dir),
                   "✅ Adapters saved as safetensors and reloaded onto a fresh base model: identical logits.")


# =========================================================================== notebook 07: RLHF
def _close(a, b, tol=1e-5) -> bool:
    import torch
    return bool(torch.isfinite(torch.as_tensor(a)).all()) and abs(float(a) - float(b)) <= tol * max(1.0, abs(float(b)))


def bt_loss_problems(bt_loss) -> list[str]:
    """``bt_loss(chosen_rewards, rejected_rewards) -> scalar``: mean of −log σ(r_c − r_r)."""
    import torch

    from .loss import bradley_terry_loss
    g = torch.Generator().manual_seed(0)
    rc, rr = torch.randn(8, generator=g), torch.randn(8, generator=g)
    got, problem = _call(bt_loss, rc, rr)
    if problem:
        return [problem]
    expected = bradley_terry_loss(rc, rr)
    if not _close(got, expected):
        if _close(got, bradley_terry_loss(rr, rc)):
            return ["chosen and rejected are swapped: the loss must be small when r_chosen > r_rejected"]
        if _close(got, 8 * expected):
            return ["you summed over the pairs; take the mean"]
        return [f"on 8 random pairs you gave {float(got):.5f}, expected {float(expected):.5f} = "
                "mean(−log σ(r_c − r_r))"]
    big, problem = _call(bt_loss, torch.tensor([-200.0]), torch.tensor([200.0]))
    if problem or not torch.isfinite(torch.as_tensor(big)):
        return ["a margin of −400 gives inf/nan: σ(−400) rounds to 0 and log(0) = −inf; use F.logsigmoid"]
    return []


def check_bt_loss(bt_loss) -> bool:
    return _report(bt_loss_problems(bt_loss), "✅ Bradley–Terry loss: mean of −log σ(r_c − r_r), finite for any margin.")


def ppo_clip_problems(ppo_clip) -> list[str]:
    """``ppo_clip(logprobs, old_logprobs, advantages, mask, clip_eps) -> scalar loss``."""
    import torch

    from .loss import masked_mean, ppo_clip_loss
    g = torch.Generator().manual_seed(0)
    B, T = 4, 6
    old = torch.randn(B, T, generator=g)
    new = old + 0.6 * torch.randn(B, T, generator=g)
    adv = torch.randn(B, T, generator=g)
    mask = (torch.arange(T)[None] < torch.tensor([[6], [3], [5], [1]])).float()
    got, problem = _call(ppo_clip, new, old, adv, mask, 0.2)
    if problem:
        return [problem]
    expected, _ = ppo_clip_loss(new, old, adv, mask, 0.2)
    if _close(got, expected):
        return []
    ratio = torch.exp(new - old)
    unclipped, clipped = ratio * adv, ratio.clamp(0.8, 1.2) * adv
    if _close(got, -expected):
        return ["the sign is flipped: PPO *maximises* the surrogate, so the loss is −mean(min(...))"]
    if _close(got, -masked_mean(torch.maximum(unclipped, clipped), mask)):
        return ["use the minimum of the clipped and unclipped terms (the pessimistic bound), not the maximum"]
    if _close(got, -torch.minimum(unclipped, clipped).mean()):
        return ["padding is averaged in: average over the tokens where mask is 1 only"]
    if _close(got, -masked_mean(unclipped, mask)):
        return ["no clipping: min(r·A, clip(r, 1−ε, 1+ε)·A)"]
    if _close(got, -masked_mean(torch.minimum((new - old) * adv, (new - old).clamp(-0.2, 0.2) * adv), mask)):
        return ["the ratio is π/π_old = exp(logprobs − old_logprobs), not their difference"]
    return [f"on a padded batch you gave {float(got):.5f}, expected {float(expected):.5f}"]


def check_ppo_clip(ppo_clip) -> bool:
    return _report(ppo_clip_problems(ppo_clip), "✅ PPO clipped surrogate: ratio, clip, minimum, mean over real tokens.")


def dpo_loss_problems(my_dpo_loss) -> list[str]:
    """``my_dpo_loss(pi_chosen, pi_rejected, ref_chosen, ref_rejected, beta) -> scalar loss``."""
    import torch

    from .loss import dpo_loss
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(6, generator=g) * 5 for _ in range(4))
    got, problem = _call(my_dpo_loss, pc, pr, rc, rr, 0.1)
    if problem:
        return [problem]
    expected = dpo_loss(pc, pr, rc, rr, 0.1)[0]
    if _close(got, expected):
        return []
    if _close(got, dpo_loss(pc, pr, torch.zeros(6), torch.zeros(6), 0.1)[0]):
        return ["the reference model is missing: the margin is (log π(y_c) − log π_ref(y_c)) − (log π(y_r) − log π_ref(y_r))"]
    if _close(got, dpo_loss(pr, pc, rr, rc, 0.1)[0]):
        return ["chosen and rejected are swapped"]
    if _close(got, dpo_loss(pc, pr, rc, rr, 1.0)[0]):
        return ["β is missing: multiply the margin by beta inside the sigmoid"]
    return [f"you gave {float(got):.5f}, expected {float(expected):.5f} = mean(−log σ(β·margin))"]


def check_dpo_loss(my_dpo_loss) -> bool:
    return _report(dpo_loss_problems(my_dpo_loss), "✅ DPO loss: −log σ(β[(π_c − ref_c) − (π_r − ref_r)]), averaged.")


# =========================================================================== notebook 06: stability and compute
def lr_schedule_problems(lr_schedule) -> list[str]:
    """``lr_schedule(step, max_lr, warmup_steps, total_steps, min_lr) -> float``, 0-based steps (= utils.training.lr_at)."""
    from .training import TrainConfig, lr_at
    cfg = TrainConfig(max_steps=50, lr=1e-3, warmup_steps=10, min_lr=1e-4)
    for step in range(50):
        got, problem = _call(lr_schedule, step, cfg.lr, cfg.warmup_steps, cfg.max_steps, cfg.min_lr)
        if problem:
            return [problem]
        expected = lr_at(step, cfg)
        if abs(float(got) - expected) > 1e-9 + 1e-6 * expected:
            if step < cfg.warmup_steps:
                why = ("warmup is linear and starts above 0: step s (0-based) gets max_lr·(s+1)/warmup_steps, "
                       "so the first step already learns and the last warmup step reaches max_lr")
            elif step == cfg.max_steps - 1:
                why = "the cosine must reach min_lr exactly at the last step (progress = 1 there)"
            else:
                why = ("after warmup: min_lr + ½(1 + cos(π·progress))·(max_lr − min_lr) with "
                       "progress = (step − warmup)/(total − 1 − warmup)")
            return [f"step {step}: you gave {float(got):.3g}, expected {expected:.3g} — {why}"]
    return []


def check_lr_schedule(lr_schedule) -> bool:
    return _report(lr_schedule_problems(lr_schedule), "✅ Linear warmup, then cosine down to min_lr — same as utils.training.lr_at.")


def clip_problems(clip_global_norm) -> list[str]:
    """``clip_global_norm(parameters, max_norm) -> total norm before clipping``; scales the grads in place."""
    import torch

    def params(seed):
        g = torch.Generator().manual_seed(seed)
        ps = [torch.nn.Parameter(torch.zeros(s)) for s in [(4, 3), (7,), (2, 2, 2)]]
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g) * 3
        return ps
    mine, ref = params(0), params(0)
    got, problem = _call(clip_global_norm, mine, 1.0)
    if problem:
        return [problem]
    expected = float(torch.nn.utils.clip_grad_norm_(ref, 1.0))
    problems = []
    if got is None or abs(float(got) - expected) > 1e-4 * expected:
        after = float(torch.sqrt(sum((p.grad ** 2).sum() for p in mine)))
        hint = " (that is the norm after clipping: return the one before)" if got is not None and abs(float(got) - after) < 1e-4 else ""
        problems.append(f"returned {got}, expected the global norm before clipping {expected:.4f}{hint}")
    per_tensor = all(float(p.grad.norm()) <= 1.0 + 1e-5 for p in mine) and \
        abs(float(torch.sqrt(sum((p.grad ** 2).sum() for p in mine))) - 1.0) > 1e-3
    diff = max(float((a.grad - b.grad).abs().max()) for a, b in zip(mine, ref))
    if per_tensor:
        problems.append("each tensor was clipped on its own; clip all gradients together by ONE factor "
                        "max_norm / global_norm, so their directions relative to each other are kept")
    elif diff > 1e-5:
        problems.append(f"the gradients after clipping differ from torch's by up to {diff:.3g}: multiply every "
                        "gradient by min(1, max_norm / (global_norm + 1e-6)) in place")
    small, ref_small = params(1), params(1)
    for p, q in zip(small, ref_small):
        p.grad.mul_(1e-3)
        q.grad.mul_(1e-3)
    _call(clip_global_norm, small, 1.0)
    if any(not torch.allclose(p.grad, q.grad) for p, q in zip(small, ref_small)):
        problems.append("gradients already below max_norm were changed: only scale down, never up")
    return problems


def check_clip(clip_global_norm) -> bool:
    return _report(clip_problems(clip_global_norm), "✅ Global-norm clipping: one factor for all gradients, only when the norm is too large.")


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
        got, problem = _call(next_loss_scale, state[0], inf, state[1], 3)
        if problem:
            return [problem]
        if got is None or tuple(got) != expected:
            what = ("an overflow halves the scale and resets the count of good steps" if inf else
                    "a good step adds 1 to the count; after growth_interval good steps in a row the scale doubles "
                    "and the count restarts")
            return [f"call {i + 1} (found_inf={inf}, scale={state[0]:g}, good_steps={state[1]}): you returned "
                    f"{got if got is None else tuple(got)}, expected {expected} — {what}"]
        state = expected
    return []


def check_loss_scale(next_loss_scale) -> bool:
    return _report(loss_scale_problems(next_loss_scale), "✅ Dynamic loss scaling: halve on overflow, double after a run of good steps.")


def finite_guard_problems(assert_finite) -> list[str]:
    """``assert_finite(step, loss, model)`` raises FloatingPointError naming the step (and the first bad parameter)."""
    import math

    import torch
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    _, problem = _call(assert_finite, 3, 0.5, model)
    if problem:
        return [problem if "not implemented" in problem else f"a healthy step must pass silently, but {problem}"]
    problems = []
    try:
        assert_finite(7, math.nan, model)
        problems.append("a NaN loss at step 7 went through: raise FloatingPointError")
    except FloatingPointError as e:
        if "7" not in str(e):
            problems.append(f"the message should name the step (7): {e}")
    except NotImplementedError as e:
        return [f"not implemented yet: {e}" if str(e) else "not implemented yet"]
    except Exception as e:  # noqa: BLE001
        problems.append(f"raise FloatingPointError, not {type(e).__name__}")
    model[1].weight.grad[0, 1] = math.inf
    try:
        assert_finite(9, 0.5, model)
        problems.append("an inf gradient in '1.weight' at step 9 went through: check every parameter's gradient too")
    except FloatingPointError as e:
        if "1.weight" not in str(e) or "9" not in str(e):
            problems.append(f"name the step (9) and the first parameter with a non-finite gradient ('1.weight'): {e}")
    except Exception as e:  # noqa: BLE001
        problems.append(f"raise FloatingPointError, not {type(e).__name__}")
    return problems


def check_finite_guard(assert_finite) -> bool:
    return _report(finite_guard_problems(assert_finite), "✅ NaN/inf in the loss or any gradient stops the run, naming the step and the parameter.")


def group_norm_problems(my_grad_norms) -> list[str]:
    """``my_grad_norms(model) -> {group: norm}`` with groups from ``utils.training.param_group``."""
    import torch

    from .training import grad_norms_by_group
    model = _tiny_lm(2, 32)
    x = torch.randint(0, 50257, (2, 16), generator=torch.Generator().manual_seed(0))
    model(input_ids=x, labels=x).loss.backward()
    got, problem = _call(my_grad_norms, model)
    if problem:
        return [problem]
    expected = grad_norms_by_group(model)
    if not isinstance(got, dict) or set(got) != set(expected):
        return [f"expected the groups {list(expected)}, got {list(got) if isinstance(got, dict) else type(got).__name__}"]
    problems = []
    for g, v in expected.items():
        if abs(float(got[g]) - v) > 1e-4 * max(v, 1e-8):
            ratio = float(got[g]) / v if v else float("nan")
            hint = (" — that is the sum of the per-tensor norms; take the square root of the sum of squares"
                    if ratio > 1 else " — sum the squares of every parameter's gradient in the group, then take the root")
            problems.append(f"{g}: you gave {float(got[g]):.4g}, expected {v:.4g}{hint}")
    return problems


def check_group_norms(my_grad_norms) -> bool:
    return _report(group_norm_problems(my_grad_norms), "✅ Gradient norm per part of the model: √(Σ‖∇p‖²) over each group.")


def flops_problems(my_flops_per_token) -> list[str]:
    """``my_flops_per_token(n_params, n_layer, n_ctx, d_model) -> training FLOPs per token``."""
    from .memory import GPT2_LARGE, GPT2_SMALL
    from .training import flops_per_token
    problems = []
    for name, shape, ctx in [("GPT-2 small @1024", GPT2_SMALL, 1024), ("GPT-2 Large @512", GPT2_LARGE, 512)]:
        args = (shape.n_params, shape.n_layer, ctx, shape.n_embd)
        got, problem = _call(my_flops_per_token, *args)
        if problem:
            return [problem]
        expected = flops_per_token(*args)
        if abs(float(got) - expected) > 1e-6 * expected:
            r = float(got) / expected
            if abs(float(got) - 2 * shape.n_params) < 1e-3 * expected or abs(float(got) - (expected / 3)) < 1e-3 * expected:
                why = "that is the forward pass only; backward costs about twice the forward: ×3"
            elif abs(float(got) - 6 * shape.n_params) < 1e-6 * expected:
                why = "add the attention term 6·n_layer·n_ctx·d_model (the scores and their use grow with the context)"
            else:
                why = f"{r:.2f}× the expected 6N + 6·n_layer·n_ctx·d_model"
            problems.append(f"{name}: you gave {float(got):.4g}, expected {expected:.4g} — {why}")
    return problems


def check_flops(my_flops_per_token) -> bool:
    return _report(flops_problems(my_flops_per_token), "✅ Training FLOPs per token: 6N + 6·n_layer·n_ctx·d_model.")


def accumulation_problems(accumulate) -> list[str]:
    """``accumulate(model, micro_batches)`` leaves in ``.grad`` the gradient of the whole batch's loss per token."""
    import torch

    from .loss import masked_nll
    from .masking import pad_collate

    def make():                                      # dropout off: the same forward pass every time
        return _tiny_lm(1, 32, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    g = torch.Generator().manual_seed(0)
    examples = []
    for n_prompt, n_resp in [(3, 12), (5, 2), (2, 9), (6, 1)]:             # very different response lengths
        ids = torch.randint(0, 50257, (n_prompt + n_resp,), generator=g).tolist()
        examples.append({"input_ids": ids, "labels": [-100] * n_prompt + ids[n_prompt:]})
    micro = [pad_collate(examples[:1]), pad_collate(examples[1:3]), pad_collate(examples[3:])]
    full = pad_collate(examples)
    ref = make()
    masked_nll(ref(input_ids=full["input_ids"], attention_mask=full["attention_mask"]).logits, full["labels"]).backward()
    mine = make()
    _, problem = _call(accumulate, mine, micro)
    if problem:
        return [problem]
    if any(p.grad is None for p in mine.parameters()):
        return ["some parameters have no gradient: call backward on every micro-batch's loss"]
    diff = max(float((a.grad - b.grad).abs().max()) for a, b in zip(mine.parameters(), ref.parameters()))
    if diff <= 1e-6:
        return []
    means = make()
    for b in micro:
        (masked_nll(means(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits, b["labels"]) / len(micro)).backward()
    diff_means = max(float((a.grad - b.grad).abs().max()) for a, b in zip(mine.parameters(), means.parameters()))
    if diff_means <= 1e-6:
        return [f"you averaged the micro-batch means (largest gradient difference to the full batch {diff:.2e}): a "
                "micro-batch with 1 response token then weighs as much as one with 12. Use the token sums: "
                "masked_nll(..., reduction='sum') / (supervised tokens in all micro-batches)"]
    return [f"the accumulated gradient differs from the full batch's by up to {diff:.2e} (must be ≤ 1e-6)"]


def check_accumulation(accumulate) -> bool:
    return _report(accumulation_problems(accumulate),
                   "✅ Accumulated gradients equal the full batch's (≤ 1e-6): every token weighs the same.")
