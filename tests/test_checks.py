from utils.checks import check_prompt_mask, prompt_mask_problems

EOS = 50256
IDS = [10, 11, 12, 13, 20, 21, 22, EOS]     # prompt = 4 tokens, response = 3, EOS
P = 4
GOOD = [-100] * 4 + [20, 21, 22, EOS]


def test_correct_labels_pass(capsys):
    assert prompt_mask_problems(GOOD, IDS, P) == []
    assert check_prompt_mask(GOOD, IDS, P) is True
    assert "✅" in capsys.readouterr().out


def test_stub_is_not_attempted(capsys):
    assert check_prompt_mask(None, IDS, P) is False
    assert "Not attempted" in capsys.readouterr().out


def test_unmasked_prompt_is_named_with_count_and_positions():
    problems = prompt_mask_problems(list(IDS), IDS, P)
    assert problems == ["your labels supervise 4 prompt token(s) (positions 0–3); set them to -100 so the "
                        "model is not trained to write the instruction"]


def test_partly_masked_prompt():
    labels = [-100, -100, 12, 13, 20, 21, 22, EOS]
    assert "supervise 2 prompt token(s) (positions 2–3)" in prompt_mask_problems(labels, IDS, P)[0]


def test_masked_eos_is_called_out(capsys):
    labels = GOOD[:-1] + [-100]
    problems = prompt_mask_problems(labels, IDS, P)
    assert len(problems) == 1 and "final EOS (position 7) is masked" in problems[0]
    assert check_prompt_mask(labels, IDS, P) is False
    assert "never learns to stop" in capsys.readouterr().out


def test_masked_response_tokens():
    labels = [-100] * 6 + [22, EOS]
    assert "2 response token(s) are masked (positions 4–5)" in prompt_mask_problems(labels, IDS, P)[0]


def test_wrong_ids_in_response():
    labels = [-100] * 4 + [20, 99, 22, EOS]
    problems = prompt_mask_problems(labels, IDS, P)
    assert "first: position 5 has 99, expected 21" in problems[0]


def test_shifted_labels_are_recognised():
    assert "shifted by one" in prompt_mask_problems(IDS[1:] + [-100], IDS, P)[0]
    assert "shifted by one" in prompt_mask_problems(IDS[1:], IDS, P)[0]     # and one too short


def test_wrong_length():
    assert "has 3 entries but input_ids has 8" in prompt_mask_problems([1, 2, 3], IDS, P)[0]


def test_accepts_tensors():
    import torch
    assert prompt_mask_problems(torch.tensor(GOOD), torch.tensor(IDS), P) == []


# ------------------------------------------------------------------ notebook 02: forum converter
from utils.checks import FORUM_ROWS, check_forum_converter, forum_converter_problems  # noqa: E402
from utils.schema import DataFormatError  # noqa: E402


def solution(row, index):
    if not row["answers"]:
        raise DataFormatError("question has no answers", index)
    q = row["question"]
    best = max(row["answers"], key=lambda a: a["votes"])
    user = f"{q['title']}\n\n{q['body']}" if q["body"] else q["title"]
    return {"id": f"forum-{index}", "source": "forum",
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": best["text"]}],
            "meta": {"index": index, "site": row["site"], "votes": best["votes"]}}


def test_forum_solution_passes(capsys):
    assert forum_converter_problems(solution) == []
    assert check_forum_converter(solution) is True
    assert "✅" in capsys.readouterr().out


def test_forum_stub_is_not_attempted(capsys):
    def stub(row, index):
        raise NotImplementedError
    assert check_forum_converter(stub) is False
    assert "Not attempted" in capsys.readouterr().out


def test_forum_first_answer_instead_of_most_voted():
    def first_answer(row, index):
        rec = solution(row, index)
        rec["messages"][1]["content"] = row["answers"][0]["text"]
        return rec
    problems = forum_converter_problems(first_answer)
    assert len(problems) == 1
    assert "row 0: the assistant reply should be the most-voted answer 'Use my_list[::-1].' (30 votes" in problems[0]
    assert "(it has 12 votes)" in problems[0]


def test_forum_last_of_tied_answers():
    def last_max(row, index):
        rec = solution(row, index)
        top = max(a["votes"] for a in row["answers"])
        rec["messages"][1]["content"] = [a for a in row["answers"] if a["votes"] == top][-1]["text"]
        return rec
    problems = forum_converter_problems(last_max)
    assert len(problems) == 1 and problems[0].startswith("row 2:") and "on a tie the first listed" in problems[0]


def test_forum_empty_body_and_missing_raise():
    def always_body(row, index):
        rec = solution(row, index)
        q = row["question"]
        rec["messages"][0]["content"] = f"{q['title']}\n\n{q['body']}"
        return rec
    assert any("row 1: user content should be" in p for p in forum_converter_problems(always_body))

    def keeps_unanswered(row, index):
        if not row["answers"]:
            return {"id": f"forum-{index}", "source": "forum", "messages": [], "meta": {"index": index}}
        return solution(row, index)
    assert any("row 3 has no answers, but your converter returned a record" in p
               for p in forum_converter_problems(keeps_unanswered))

    def key_error(row, index):
        return solution(row, index) if row["answers"] else row["answers"][0]
    assert any("raise DataFormatError (from utils.schema), not IndexError" in p for p in forum_converter_problems(key_error))


def test_forum_meta_and_id():
    def wrong_meta(row, index):
        rec = solution(row, index)
        rec["meta"].pop("votes")
        rec["id"] = str(index)
        return rec
    problems = forum_converter_problems(wrong_meta)
    assert any("id should be 'forum-0'" in p for p in problems)
    assert any("meta['votes'] should be 30" in p for p in problems)
    assert len(FORUM_ROWS) == 4


# ------------------------------------------------------------------ notebook 03: masks and templates
import pytest  # noqa: E402

from utils.chat import CHATML_TEMPLATE, add_chat_tokens, render  # noqa: E402
from utils.checks import assistant_mask_problems, check_assistant_mask, last_turn_template_problems  # noqa: E402

CONV = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "See you."}]
LAST_TURN_TEMPLATE = CHATML_TEMPLATE.replace(
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}",
    "{{ '<|im_start|>assistant\\n' }}{% if loop.last %}{% generation %}{{ message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}")


@pytest.fixture(scope="module")
def ctok():
    from utils.models import load_gpt2_tokenizer
    t = load_gpt2_tokenizer()
    add_chat_tokens(t)
    return t


def test_assistant_mask_checker(ctok, capsys):
    ids, mask = render(CONV, ctok)
    assert assistant_mask_problems(mask, CONV, ctok) == []
    assert check_assistant_mask(mask, CONV, ctok) is True
    assert check_assistant_mask(None, CONV, ctok) is False and "Not attempted" in capsys.readouterr().out
    no_end = [0 if i == ctok.convert_tokens_to_ids("<|im_end|>") else m for i, m in zip(ids, mask)]
    assert any("<|im_end|> after a reply is not supervised" in p for p in assistant_mask_problems(no_end, CONV, ctok))
    everything = [1] * len(ids)
    assert "should not be" in assistant_mask_problems(everything, CONV, ctok)[0]
    first_only = render(CONV[:3], ctok)[1] + [0] * (len(ids) - len(render(CONV[:3], ctok)[1]))
    assert any("reply token(s) not supervised" in p for p in assistant_mask_problems(first_only, CONV, ctok))
    assert "entries but the conversation has" in assistant_mask_problems(mask[:-1], CONV, ctok)[0]


def test_last_turn_template_checker(ctok):
    convs = [CONV, CONV[1:3]]
    assert last_turn_template_problems(LAST_TURN_TEMPLATE, ctok, convs) == []
    stub = last_turn_template_problems(CHATML_TEMPLATE, ctok, convs)
    assert len(stub) == 1 and "has 2 replies and your template supervises more than the last one" in stub[0]
    broken = last_turn_template_problems(CHATML_TEMPLATE.replace("{% endgeneration %}", ""), ctok, convs)
    assert "does not render" in broken[0]
    changed = last_turn_template_problems(CHATML_TEMPLATE.replace("'\\n' + message['content']", "': ' + message['content']"),
                                          ctok, convs)
    assert "changed the text itself" in changed[0]


# ------------------------------------------------------------------ notebook 04
import math as _math  # noqa: E402

import torch as _torch  # noqa: E402

from utils.checks import check_collate_labels, check_perplexity, collate_labels_problems, perplexity_problems  # noqa: E402


def test_perplexity_checker(capsys):
    assert perplexity_problems(_math.exp(1.95), 1.95) == []
    assert check_perplexity(7.0287, 1.95) is True
    assert "natural log" in perplexity_problems(2 ** 1.95, 1.95)[0]
    assert "inverse" in perplexity_problems(_math.exp(-1.95), 1.95)[0]
    assert "the loss itself" in perplexity_problems(1.95, 1.95)[0]
    assert check_perplexity(None, 1.95) is False and "Not attempted" in capsys.readouterr().out


def good_labels(input_ids, attention_mask, prompt_lens):
    labels = input_ids.clone()
    labels[attention_mask == 0] = -100
    for b, p in enumerate(prompt_lens):
        labels[b, :p] = -100
    return labels


def test_collate_labels_checker(capsys):
    assert collate_labels_problems(good_labels) == []
    assert check_collate_labels(good_labels) is True

    def by_token_id(input_ids, attention_mask, prompt_lens):
        labels = good_labels(input_ids, attention_mask, prompt_lens)
        labels[input_ids == 50256] = -100
        return labels
    assert any("own EOS at position" in p for p in collate_labels_problems(by_token_id))

    def no_prompt_mask(input_ids, attention_mask, prompt_lens):
        labels = input_ids.clone()
        labels[attention_mask == 0] = -100
        return labels
    assert any("the prompt (positions 0–2) must be -100" in p for p in collate_labels_problems(no_prompt_mask))

    def shifted(input_ids, attention_mask, prompt_lens):
        return good_labels(input_ids, attention_mask, prompt_lens)[:, 1:]
    assert "shape" in collate_labels_problems(shifted)[0]

    def stub(input_ids, attention_mask, prompt_lens):
        raise NotImplementedError
    assert check_collate_labels(stub) is False and "Not attempted" in capsys.readouterr().out
    assert _torch.is_tensor(good_labels(_torch.zeros(1, 2, dtype=_torch.long), _torch.ones(1, 2), [1]))


# ------------------------------------------------------------------ notebook 05's checkers: specific feedback
from utils import checks  # noqa: E402


def test_param_count_names_the_tied_head_and_the_missing_layer_norm():
    from utils.memory import ModelShape

    def right(L, d, vocab_size=50257, n_positions=1024):
        return ModelShape(L, d, 1, vocab_size, n_positions).n_params
    assert checks.param_count_problems(right) == []
    untied = checks.param_count_problems(lambda L, d, vocab_size=50257, n_positions=1024: right(L, d, vocab_size, n_positions) + vocab_size * d)
    assert len(untied) == 4 and "LM head" in untied[0] and "tie" in untied[0]
    no_lnf = checks.param_count_problems(lambda L, d, vocab_size=50257, n_positions=1024: right(L, d, vocab_size, n_positions) - 2 * d)
    assert "final LayerNorm" in no_lnf[0]
    per_block = checks.param_count_problems(lambda L, d, vocab_size=50257, n_positions=1024: right(L, d, vocab_size, n_positions) - L * d * d)
    assert "per-block count is off by" in per_block[0]


def test_static_memory_feedback_names_the_part_and_the_ratio():
    def forgot_lora(n, optimizer, n_lora=0):            # trains everything even with LoRA
        b = {"adamw": 8, "adamw8bit": 2, "sgd": 0}[optimizer]
        return {"weights": 4 * (n + n_lora), "gradients": 4 * n, "optimizer": b * n}
    problems = checks.static_memory_problems(forgot_lora)
    assert problems and all(p.startswith("LoRA r=16") for p in problems)
    assert any("gradients" in p and "trainable" in p for p in problems)
    adam_as_4 = lambda n, optimizer, n_lora=0: {"weights": 4 * (n + n_lora), "gradients": 4 * (n_lora or n),
                                                "optimizer": 4 * (n_lora or n) if optimizer == "adamw" else
                                                {"adamw8bit": 2, "sgd": 0}[optimizer] * (n_lora or n)}
    assert any("0.50× the expected" in p and "m and v" in p for p in checks.static_memory_problems(adam_as_4))


def test_precision_choice_explains_the_t4():
    problems = checks.precision_choice_problems(lambda cap: "fp32" if cap is None else "bf16")
    assert any(p.startswith("T4") and "emulated" in p for p in problems)
    assert checks.precision_choice_problems(lambda cap: "fp32" if cap is None else ("bf16" if cap >= (8, 0) else "fp16")) == []


def test_lora_config_without_fan_in_fan_out_is_caught():
    from peft import LoraConfig
    problems = checks.lora_config_problems(lambda r: LoraConfig(r=r, target_modules=["c_attn", "c_proj", "c_fc"]))
    assert len(problems) == 1 and "fan_in_fan_out" in problems[0]
    problems = checks.lora_config_problems(lambda r: LoraConfig(r=r, target_modules=["c_attn"], fan_in_fan_out=True))
    assert "missing ['c_fc', 'c_proj']" in problems[0]


def test_memory_savers_needs_8bit_and_checkpointing():
    import torch
    problems = checks.memory_savers_problems(lambda model, lr: torch.optim.AdamW(model.parameters(), lr=lr))
    assert any("gradient checkpointing is off" in p for p in problems) and any("AdamW8bit" in p for p in problems)


def test_validation_loss_catches_the_mean_of_batch_means():
    import math

    import torch

    @torch.no_grad()
    def mean_of_means(model, batches):
        model.eval()
        losses = [float(model(**b).loss) for b in batches]
        return sum(losses) / len(losses), math.exp(sum(losses) / len(losses))
    problems = checks.validation_loss_problems(mean_of_means)
    assert len(problems) == 1 and "mean of the batch means" in problems[0]


def test_save_reload_catches_a_model_that_was_not_reloaded(tmp_path):
    def no_reload(model, directory, make_base):
        model.save_pretrained(directory)
        return model
    assert "load a new one" in checks.save_reload_problems(no_reload, tmp_path)[-1]

    def onto_base_without_adapter(model, directory, make_base):
        model.save_pretrained(directory)
        return make_base()
    assert "logits differ" in checks.save_reload_problems(onto_base_without_adapter, tmp_path / "b")[-1]


# ------------------------------------------------------------------ notebook 07's checkers
def _stub(*args, **kwargs):
    raise NotImplementedError("write it")


def test_bt_loss_checker():
    import torch
    import torch.nn.functional as F

    from utils.loss import bradley_terry_loss
    assert checks.bt_loss_problems(bradley_terry_loss) == []
    with pytest.raises(checks.NotAttempted, match="not implemented"):
        checks.bt_loss_problems(_stub)
    assert "swapped" in checks.bt_loss_problems(lambda c, r: bradley_terry_loss(r, c))[0]
    assert "logsigmoid" in checks.bt_loss_problems(lambda c, r: -torch.log(torch.sigmoid(c - r)).mean())[0]
    assert "summed" in checks.bt_loss_problems(lambda c, r: -F.logsigmoid(c - r).sum())[0]


def test_ppo_clip_checker():
    import torch

    from utils.loss import masked_mean, ppo_clip_loss
    assert checks.ppo_clip_problems(lambda *a: ppo_clip_loss(*a)[0]) == []
    with pytest.raises(checks.NotAttempted, match="not implemented"):
        checks.ppo_clip_problems(_stub)
    assert "sign" in checks.ppo_clip_problems(lambda *a: -ppo_clip_loss(*a)[0])[0]

    def no_mask(lp, old, adv, mask, eps):
        r = torch.exp(lp - old)
        return -torch.minimum(r * adv, r.clamp(1 - eps, 1 + eps) * adv).mean()
    assert "padding" in checks.ppo_clip_problems(no_mask)[0]

    def no_clip(lp, old, adv, mask, eps):
        return -masked_mean(torch.exp(lp - old) * adv, mask)
    assert "no clipping" in checks.ppo_clip_problems(no_clip)[0]


def test_dpo_loss_checker():
    import torch

    from utils.loss import dpo_loss
    assert checks.dpo_loss_problems(lambda *a: dpo_loss(*a)[0]) == []
    with pytest.raises(checks.NotAttempted, match="not implemented"):
        checks.dpo_loss_problems(_stub)
    no_ref = lambda pc, pr, rc, rr, beta: dpo_loss(pc, pr, torch.zeros_like(rc), torch.zeros_like(rr), beta)[0]
    assert "reference model is missing" in checks.dpo_loss_problems(no_ref)[0]
    assert "β is missing" in checks.dpo_loss_problems(lambda pc, pr, rc, rr, beta: dpo_loss(pc, pr, rc, rr, 1.0)[0])[0]


# ------------------------------------------------------------------ notebook 06's checkers
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


def test_group_norm_checker_catches_sum_of_norms():
    from utils.training import param_group

    def sum_of_norms(model):
        out = {}
        for name, p in model.named_parameters():
            out[param_group(name)] = out.get(param_group(name), 0.0) + float(p.grad.norm())
        return out
    assert any("sum of the per-tensor norms" in p for p in checks.group_norm_problems(sum_of_norms))


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
