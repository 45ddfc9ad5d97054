"""utils.training.train: the course's loop (notebooks 04–06) and its helpers."""
import math

import pytest
import torch

from utils.env import pick_device_and_precision
from utils.masking import build_labels, pad_collate
from utils.models import tiny_gpt2
from utils.training import (TrainConfig, accumulate_gradients, configure_optimizer, eval_batches, evaluate,
                            latest_checkpoint, lr_at, micro_batch, train)


def examples(tok, n=12):
    out = []
    for i in range(n):
        ids, labels = build_labels(tok(f"### Instruction:\nSay the number {i} in words.\n\n### Response:\n")["input_ids"],
                                   tok(f"The number is {i}" + "!" * (i % 4))["input_ids"], tok.eos_token_id)
        out.append({"input_ids": ids, "labels": labels})
    return out


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def test_train_same_seed_same_history(tok):
    cfg = TrainConfig(max_steps=6, batch_size=4, lr=3e-3, warmup_steps=2, seed=3)
    h1 = train(tiny_gpt2(tok, seed=0), examples(tok), cfg, progress=False)
    h2 = train(tiny_gpt2(tok, seed=0), examples(tok), cfg, progress=False)
    assert h1["loss"] == h2["loss"] and h1["grad_norm"] == h2["grad_norm"]
    assert h1["loss"][-1] < h1["loss"][0]
    assert len(h1["loss"]) == 6 and h1["step"] == [1, 2, 3, 4, 5, 6]


def test_interrupt_and_resume_equals_uninterrupted_run(tok, tmp_path):
    data = examples(tok)
    cfg = TrainConfig(max_steps=8, batch_size=4, grad_accum=2, lr=3e-3, warmup_steps=2, seed=1,
                      checkpoint_every=3, checkpoint_dir=str(tmp_path / "ckpt"))
    straight = tiny_gpt2(tok, seed=0)
    h_straight = train(straight, data, TrainConfig(**{**cfg.__dict__, "checkpoint_every": None}), progress=False)

    first = tiny_gpt2(tok, seed=0)
    train(first, data, cfg, stop_at_step=5, progress=False)          # "disconnect" after step 5; last checkpoint: 3
    assert latest_checkpoint(cfg.checkpoint_dir).name == "step_000003"
    resumed = tiny_gpt2(tok, seed=42)                                # a fresh process: different weights
    h_resumed = train(resumed, data, cfg, resume=True, progress=False)
    assert h_resumed["step"] == list(range(1, 9))
    assert h_resumed["loss"] == pytest.approx(h_straight["loss"], abs=1e-6)
    for a, b in zip(params(straight), params(resumed)):
        assert (a - b).abs().max() <= 1e-6


def test_accumulating_four_micro_batches_equals_one_batch_of_four(tok):
    dp = pick_device_and_precision("cpu")
    data = examples(tok, n=4)                                        # different lengths → different token counts
    model = tiny_gpt2(tok, seed=0).eval()                            # eval: no dropout, so both paths see the same net
    cfg = TrainConfig(max_steps=1, batch_size=4)
    whole = micro_batch(data, 0, cfg)
    loss_whole = accumulate_gradients(model, [whole], dp)
    grads_whole = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    from utils.masking import pad_collate
    parts = [pad_collate([data[i]]) for i in whole_order(data, whole)]
    loss_parts = accumulate_gradients(model, parts, dp)
    assert loss_parts == pytest.approx(loss_whole, abs=1e-6)
    for g1, p in zip(grads_whole, model.parameters()):
        assert (g1 - p.grad).abs().max() <= 1e-6


def whole_order(data, batch):
    """Indices of `data` in the order they appear in a collated batch."""
    rows = [r[: int(m.sum())].tolist() for r, m in zip(batch["input_ids"], batch["attention_mask"])]
    return [next(i for i, ex in enumerate(data) if ex["input_ids"] == row) for row in rows]


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(max_steps=11, lr=1.0, min_lr=0.1, warmup_steps=2)
    lrs = [lr_at(s, cfg) for s in range(11)]
    assert lrs[:2] == [0.5, 1.0]                                     # linear warmup
    assert lrs[2] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))             # then never increases
    assert lrs[6] == pytest.approx(0.1 + 0.5 * (1 + math.cos(math.pi * 0.5)) * 0.9)


def test_weight_decay_only_on_matrices(tok):
    model = tiny_gpt2(tok)
    opt = configure_optimizer(model, lr=1e-3, weight_decay=0.1)
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decayed["params"]) and all(p.dim() < 2 for p in plain["params"])
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))


def test_validation_and_micro_batch_order(tok):
    data = examples(tok)
    cfg = TrainConfig(max_steps=4, batch_size=4, lr=3e-3, eval_every=2, seed=0)
    h = train(tiny_gpt2(tok), data, cfg, val_examples=data[:4], progress=False)
    assert h["val_step"] == [0, 2, 4] and h["val_ppl"] == pytest.approx([math.exp(v) for v in h["val_loss"]])
    assert h["val_loss"][0] == pytest.approx(evaluate(tiny_gpt2(tok), [pad_collate(data[:4])], pick_device_and_precision("cpu")))
    # an epoch covers each example once, in a seeded order
    first_epoch = [micro_batch(data, k, cfg) for k in range(3)]
    seen = sorted(tuple(r[: int(m.sum())].tolist()) for b in first_epoch for r, m in zip(b["input_ids"], b["attention_mask"]))
    assert seen == sorted(tuple(e["input_ids"]) for e in data)


def test_8bit_adamw_and_frozen_parameters(tok):
    import bitsandbytes as bnb
    model = tiny_gpt2(tok)
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("transformer.h.1")      # train one block only
    opt = configure_optimizer(model, lr=1e-3, weight_decay=0.1, kind="adamw8bit")
    assert isinstance(opt, bnb.optim.AdamW8bit)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert in_opt == {id(p) for p in model.parameters() if p.requires_grad}
    with pytest.raises(ValueError, match="adamw8bit"):
        configure_optimizer(model, lr=1e-3, weight_decay=0.1, kind="lion")
    h = train(model, examples(tok), TrainConfig(max_steps=6, batch_size=4, lr=3e-3, optimizer="adamw8bit"), progress=False)
    assert h["loss"][-1] < h["loss"][0]


def test_param_groups_and_grad_norms(tok):
    from peft import LoraConfig, get_peft_model

    from utils.training import grad_norms_by_group, model_part, update_ratios
    assert model_part("transformer.h.3.attn.c_attn.weight") == "block 3 attention"
    assert model_part("transformer.h.3.ln_2.bias") == "block 3 MLP"
    assert model_part("base_model.model.transformer.h.0.mlp.c_fc.lora_A.default.weight") == "block 0 MLP"
    assert model_part("transformer.wte.weight") == "embeddings" and model_part("transformer.ln_f.weight") == "final LN"
    model = tiny_gpt2(tok)
    data = examples(tok)
    batch = pad_collate(data[:4])
    model(**batch).loss.backward()
    norms = grad_norms_by_group(model)
    assert list(norms) == ["embeddings", "block 0 attention", "block 0 MLP", "block 1 attention", "block 1 MLP", "final LN"]
    total = math.sqrt(sum(v * v for v in norms.values()))
    assert total == pytest.approx(float(torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))), rel=1e-5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.001)                                            # every weight moves by 0.1 %
    assert all(r == pytest.approx(1e-3, rel=1e-3) for r in update_ratios(before, model).values())
    lora = get_peft_model(tiny_gpt2(tok), LoraConfig(r=2, target_modules=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True))
    lora(**batch).loss.backward()
    assert "embeddings" not in grad_norms_by_group(lora)              # frozen: no gradient


def test_on_grads_sees_clipped_gradients_before_the_step(tok):
    seen = []

    def record(step, model, loss):
        norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters() if p.grad is not None))
        seen.append((step, norm, loss))
    cfg = TrainConfig(max_steps=3, batch_size=4, lr=3e-3, grad_clip=0.01)
    h = train(tiny_gpt2(tok), examples(tok), cfg, progress=False, on_grads=record)
    assert [s for s, _, _ in seen] == [1, 2, 3] and all(n == pytest.approx(0.01, rel=1e-4) for _, n, _ in seen)
    assert [l for _, _, l in seen] == h["loss"] and all(g > 0.01 for g in h["grad_norm"])   # history: before clipping


def test_flops_per_token():
    from utils.memory import GPT2_LARGE
    from utils.training import flops_per_token
    assert flops_per_token(GPT2_LARGE.n_params, 36, 1024, 1280) == 6 * 774_030_080 + 6 * 36 * 1024 * 1280


@pytest.mark.parametrize("bad", [float("nan"), 0.0, -1.0])
def test_a_nan_or_nonpositive_clip_threshold_is_refused(tok, bad):
    """A threshold computed as the median of a run with an fp16 overflow is NaN; clipping to NaN would make
    every weight NaN. train() must refuse it before touching the model."""
    model = tiny_gpt2(tok)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match="grad_clip"):
        train(model, examples(tok), TrainConfig(max_steps=2, batch_size=4, grad_clip=bad), progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_eval_batches_cover_every_example_once_in_order(tok):
    data = examples(tok, n=10)
    batches = eval_batches(data, 4, pad_token_id=tok.eos_token_id)
    assert [b["input_ids"].shape[0] for b in batches] == [4, 4, 2]          # the remainder is kept, not dropped
    rows = [r[r != -100].tolist() for b in batches for r in b["labels"]]
    assert rows == [[t for t in e["labels"] if t != -100] for e in data]


def test_report_to_tensorboard_logs_every_step(tmp_path, monkeypatch):
    """Off by default; COURSE_REPORT_TO or TrainConfig.report_to switches TensorBoard on, one point per step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from utils.env import report_to
    from utils.masking import build_labels
    from utils.models import load_gpt2_tokenizer, tiny_gpt2
    from utils.training import TrainConfig, train
    monkeypatch.delenv("COURSE_REPORT_TO", raising=False)
    assert report_to() == []
    monkeypatch.setenv("COURSE_REPORT_TO", "tensorboard")
    assert report_to() == ["tensorboard"]
    monkeypatch.setenv("COURSE_REPORT_TO", "wandb")
    with pytest.raises(ValueError, match="wandb"):
        report_to()
    monkeypatch.delenv("COURSE_REPORT_TO")
    tok = load_gpt2_tokenizer()
    examples = [dict(zip(("input_ids", "labels"), build_labels(tok(f"Q{i}:")["input_ids"], tok(f" A{i}")["input_ids"],
                                                                tok.eos_token_id))) for i in range(8)]
    cfg = TrainConfig(max_steps=3, batch_size=4, lr=1e-3, eval_every=3, report_to=("tensorboard",), log_dir=str(tmp_path))
    history = train(tiny_gpt2(tok), examples, cfg, val_examples=examples[:4], progress=False)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx(history["loss"])
    assert [e.step for e in events.Scalars("val/loss")] == [3]
    assert len(list(tmp_path.iterdir())) == 1                       # one event file
    plain = TrainConfig(max_steps=1, batch_size=4, lr=1e-3, log_dir=str(tmp_path / "off"))
    train(tiny_gpt2(tok), examples, plain, progress=False)
    assert not (tmp_path / "off").exists()                           # nothing asked for, nothing written
