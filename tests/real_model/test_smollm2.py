"""Real pretrained weights, offline: SmolLM2-135M-Instruct as a judge, a template oracle and a model to tune.

Every threshold here is about held-out data (records the model is not trained on in the test), so it tests
learning, not memorising. Measured values are in the README ("Real model, offline").
"""
import copy
import math

import pytest
import torch

from utils.chat import encode_conversation, render
from utils.data import load_records
from utils.env import REPO_ROOT, seed_everything
from utils.evaluate import judge_by_yes_no
from utils.loss import bradley_terry_loss
from utils.training import TrainConfig, train

#: SmolLM2's chat template inserts this system message when a conversation has none.
SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def instruction_text(record: dict) -> str:
    return record["instruction"] + (f"\n\n{record['input']}" if record["input"] else "")


def judge_rows(records):
    """Each record judged twice: with its own reference as the answer, and with the next record's (wrong) one."""
    right = [{"instruction": instruction_text(r), "reference": r["output"], "answer": r["output"]} for r in records]
    wrong = [dict(row, answer=records[(i + 1) % len(records)]["output"]) for i, row in enumerate(right)]
    return right, wrong


def chat_example(record: dict, answer: str, tok) -> dict:
    """One user turn (the instruction) and one assistant turn (``answer``), labels on the answer only."""
    return encode_conversation([{"role": "user", "content": instruction_text(record)},
                                {"role": "assistant", "content": answer}], tok)


def lora_copy(model):
    """A copy of ``model`` with rank-8 LoRA adapters on the attention's query and value projections."""
    from peft import LoraConfig, get_peft_model
    return get_peft_model(copy.deepcopy(model), LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                           target_modules=["q_proj", "v_proj"]))


def above_chance(n: int) -> float:
    """Accuracy two standard errors above a coin flip on n pairs."""
    return 0.5 + 2 * math.sqrt(0.25 / n)


def test_judge_scores_the_reference_above_a_wrong_answer(smol, held_out):
    """A 135 M model cannot reliably write a score (28 of 40 replies held no number here), so the offline judge reads
    P(Yes)/(P(Yes)+P(No)). It must prefer the reference to another record's answer clearly above chance."""
    model, tok = smol
    right, wrong = judge_rows(held_out[:60])
    a, b = judge_by_yes_no(model, tok, right, progress=False), judge_by_yes_no(model, tok, wrong, progress=False)
    share = sum((x > y) + 0.5 * (x == y) for x, y in zip(a, b)) / len(a)
    print(f"\njudge: reference above a wrong answer in {share:.1%} of {len(a)} held-out records")
    assert share > above_chance(len(a)), f"the judge preferred the reference in only {share:.0%} of 60 cases"


def test_batched_left_padded_answers_equal_one_at_a_time(smol):
    """Left padding must not change a real (position-sensitive) model's greedy answers."""
    from utils.evaluate import generate_answers
    model, tok = smol
    texts = ["What is the capital of France?", "Give three tips for staying healthy, please.", "Hi"]
    prompts = [tok.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True, tokenize=True,
                                       return_dict=True)["input_ids"] for t in texts]
    assert len({len(p) for p in prompts}) == 3                     # different lengths: real padding
    batched = generate_answers(model, tok, prompts, max_new_tokens=16, batch_size=3, progress=False)
    single = [generate_answers(model, tok, [p], max_new_tokens=16, progress=False)[0] for p in prompts]
    assert [b["ids"] for b in batched] == [s["ids"] for s in single]
    assert "Paris" in batched[0]["text"]


def test_course_chatml_render_equals_smollm2s_own_template(smol):
    """The course's hand-written ChatML `render` (notebook 03) produces exactly the ids of SmolLM2's template."""
    _, tok = smol
    assert SMOLLM2_SYSTEM in tok.chat_template
    records = []
    for name in ("sharegpt_fastchat_dummy_conversation.first200.json", "oasst_message_trees.first50.jsonl"):
        records += load_records(REPO_ROOT / "data" / "realdata" / name, errors="collect")[0][:25]
    for rec in records:
        msgs = rec["messages"]
        ours = msgs if msgs[0]["role"] == "system" else [{"role": "system", "content": SMOLLM2_SYSTEM}] + msgs
        theirs = tok.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"]
        assert render(ours, tok)[0] == theirs, rec["id"]


def test_lora_sft_lowers_held_out_response_loss(smol, held_out):
    """A few dozen LoRA steps with the course's loop lower the loss on answers it never trained on."""
    model, tok = smol
    train_set = [chat_example(r, r["output"], tok) for r in held_out[:48]]
    val_set = [chat_example(r, r["output"], tok) for r in held_out[400:424]]
    seed_everything(0)
    lora = lora_copy(model)
    cfg = TrainConfig(max_steps=24, batch_size=4, lr=1e-3, warmup_steps=2, weight_decay=0.0, eval_every=24,
                      pad_token_id=tok.pad_token_id, max_length=256)
    history = train(lora, train_set, cfg, val_examples=val_set, device="cpu", progress=False)
    before, after = history["val_loss"][0], history["val_loss"][-1]
    print(f"\nLoRA SFT, 24 steps: held-out response loss {before:.3f} → {after:.3f}")
    assert after < before - 0.1, f"held-out response loss {before:.3f} → {after:.3f}"


@torch.no_grad()
def last_hidden(model, tok, texts, batch_size=16):
    """The final hidden state at each text's last token (the position a reward head reads)."""
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i:i + batch_size], return_tensors="pt", padding=True)
        h = model(**enc, output_hidden_states=True).hidden_states[-1]
        last = enc["attention_mask"].sum(1) - 1                       # right padding: the last real token
        out.append(h[torch.arange(h.shape[0]), last])
    return torch.cat(out)


def test_bradley_terry_head_on_the_backbone_beats_chance(smol, preference_pairs):
    """A linear reward head on the frozen backbone, trained with the Bradley–Terry loss on 96 pairs, ranks
    held-out pairs (chosen = polite, rejected = rude answer to the same prompt) above chance."""
    model, tok = smol

    def texts(pairs, side):
        return [tok.apply_chat_template([{"role": "user", "content": instruction_text(p)},
                                         {"role": "assistant", "content": p[side]}], tokenize=False) for p in pairs]
    train_pairs, test_pairs = preference_pairs[:96], preference_pairs[400:496]
    feats = {name: (last_hidden(model, tok, texts(pairs, "chosen")), last_hidden(model, tok, texts(pairs, "rejected")))
             for name, pairs in (("train", train_pairs), ("test", test_pairs))}
    mean = torch.cat(feats["train"]).mean(0)
    std = torch.cat(feats["train"]).std(0) + 1e-6
    head = torch.nn.Linear(mean.numel(), 1)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    (c, r) = feats["train"]
    for _ in range(200):
        loss = bradley_terry_loss(head((c - mean) / std).squeeze(-1), head((r - mean) / std).squeeze(-1))
        opt.zero_grad(); loss.backward(); opt.step()
    c, r = feats["test"]
    with torch.no_grad():
        accuracy = float((head((c - mean) / std) > head((r - mean) / std)).float().mean())
    print(f"\nBradley–Terry head: held-out pair accuracy {accuracy:.3f} on {len(test_pairs)} pairs")
    assert accuracy > above_chance(len(test_pairs)), f"held-out pair accuracy {accuracy:.2f}"


def test_dpo_steps_raise_held_out_preference_accuracy(smol, preference_pairs):
    """DPO with LoRA, the reference = the frozen instruct model: after a few steps the implicit reward
    β·(log π − log π_ref) ranks held-out chosen answers above rejected ones (at step 0 every pair ties: 0.5)."""
    from utils.loss import dpo_loss, sequence_logprobs
    from utils.masking import pad_collate
    model, tok = smol

    def batch(pairs, side):
        return pad_collate([chat_example(p, p[side], tok) for p in pairs], pad_token_id=tok.pad_token_id)

    def logps(m, b):
        return sequence_logprobs(m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits, b["labels"])

    seed_everything(0)
    policy = lora_copy(model)
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=5e-4)
    train_pairs, test_pairs = preference_pairs[:64], preference_pairs[400:448]
    for step in range(16):
        chunk = train_pairs[4 * step:4 * step + 4]
        c, r = batch(chunk, "chosen"), batch(chunk, "rejected")
        with torch.no_grad():
            ref_c, ref_r = logps(model, c), logps(model, r)
        loss, _, _ = dpo_loss(logps(policy, c), logps(policy, r), ref_c, ref_r, beta=0.1)
        opt.zero_grad(); loss.backward(); opt.step()
    wins = 0.0
    with torch.no_grad():
        for i in range(0, len(test_pairs), 8):
            c, r = batch(test_pairs[i:i + 8], "chosen"), batch(test_pairs[i:i + 8], "rejected")
            _, rc, rr = dpo_loss(logps(policy, c), logps(policy, r), logps(model, c), logps(model, r), beta=0.1)
            wins += float((rc > rr).sum() + 0.5 * (rc == rr).sum())
    accuracy = wins / len(test_pairs)
    print(f"\nDPO, 16 steps: held-out implicit-reward accuracy {accuracy:.3f} on {len(test_pairs)} pairs (0.5 at step 0)")
    assert accuracy > above_chance(len(test_pairs)), f"held-out DPO reward accuracy {accuracy:.2f}"
