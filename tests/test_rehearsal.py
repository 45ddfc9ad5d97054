"""Rehearsal machinery: capping, real architectures from data/configs, Hub-shaped fixtures, the URL
stand-in, FLOP counting and the runner's error classification (scripts/rehearse.py)."""
import dataclasses
import importlib.util
import json
import time

import nbformat
import pytest
import torch

from utils import rehearsal as rh
from utils.env import REPO_ROOT
from utils.models import load_gpt2_tokenizer, tiny_gpt2
from utils.training import TrainConfig


@pytest.fixture(autouse=True)
def fresh_tracker():
    rh.TRACKER.reset()
    yield
    rh.TRACKER.reset()


def _load_runner():
    spec = importlib.util.spec_from_file_location("rehearse", REPO_ROOT / "scripts" / "rehearse.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------- cap_config
def test_cap_config_nested_dict_and_trainconfig():
    cfg = dict(model="gpt2-large", max_length=512, batch_size=8, rm_steps=300, n_pairs=4000, n_eval=200,
               eval_examples=50, ppo=dict(iterations=60, epochs=4, batch=32, new_tokens=16),
               train=TrainConfig(max_steps=234, batch_size=8, warmup_steps=20, eval_every=26, max_length=512))
    before = repr(cfg)
    out = cap_config_quiet(cfg, steps=2, eval_size=8)
    assert repr(cfg) == before and out is not cfg and out["ppo"] is not cfg["ppo"]   # a new object
    assert (out["rm_steps"], out["ppo"]["iterations"], out["ppo"]["epochs"]) == (2, 2, 1)
    assert (out["n_eval"], out["eval_examples"]) == (8, 8)
    # full size everywhere else
    assert (out["model"], out["max_length"], out["batch_size"], out["n_pairs"], out["ppo"]["batch"],
            out["ppo"]["new_tokens"]) == ("gpt2-large", 512, 8, 4000, 32, 16)
    t = out["train"]
    assert isinstance(t, TrainConfig) and t.max_steps == 2 and t.batch_size == 8 and t.max_length == 512
    assert t.eval_every <= t.max_steps and t.warmup_steps < t.max_steps     # the warmup rule
    assert cfg["train"].max_steps == 234 and cfg["train"].warmup_steps == 20
    # the TrainConfig still works in the course's code
    from utils.training import lr_at
    assert [lr_at(s, t) for s in range(2)][0] > 0
    assert dataclasses.replace(t, lr=1.0).max_steps == 2


def test_cap_config_records_changes_and_leaves_small_values():
    rh.CHANGES.clear()
    out = rh.cap_config(dict(steps=80, timing_steps=1, warmup_steps=0, epochs=1), steps=2)
    assert out["timing_steps"] == 1 and out["warmup_steps"] == 0 and out["epochs"] == 1
    assert rh.CHANGES == [{"key": "steps", "original": 80, "capped": 2}]
    rh.CHANGES.clear()


def cap_config_quiet(cfg, **kw):
    return rh.cap_config(cfg, _record=False, **kw)


def test_tracker_scales_by_the_capped_values_used():
    cfg = cap_config_quiet(dict(rm_steps=300, sft_steps=60, ppo=dict(iterations=60, epochs=4),
                                train=TrainConfig(max_steps=234, eval_every=26)), steps=2)
    assert rh.TRACKER.scale(grad=True) == 1.0                      # nothing used yet
    cfg["rm_steps"]
    assert rh.TRACKER.scale(grad=True) == 150.0
    cfg["sft_steps"]                                               # a sequential loop: replaces rm_steps
    assert rh.TRACKER.scale(grad=True) == 30.0
    ppo = cfg["ppo"]
    ppo["iterations"], ppo["epochs"]                               # nested: multiply for training calls
    assert rh.TRACKER.scale(grad=True) == 120.0 and rh.TRACKER.scale(grad=False) == 30.0
    t = cfg["train"]
    assert 0 < t.max_steps and (3 % t.eval_every) >= 0             # a loop compares/computes with them
    assert rh.TRACKER.scale(grad=True) == 117.0
    assert rh.TRACKER.scale(grad=False) == rh.n_evaluations(234, 26) / rh.n_evaluations(2, 2) == 9.0


# --------------------------------------------------------------------------- models from data/configs
@pytest.mark.parametrize("name,params,layers", [("gpt2", 124_439_808, 12), ("gpt2-medium", 354_823_168, 24),
                                                ("gpt2-large", 774_030_080, 36)])
def test_rehearsal_architectures(name, params, layers, capsys):
    from utils.models import rehearsal_model
    model, tok = rehearsal_model(name, device="meta")
    c = model.config
    assert sum(p.numel() for p in model.parameters()) == params
    assert (c.n_layer, c.n_positions, c.vocab_size, c.activation_function, c.layer_norm_epsilon) == (
        layers, 1024, 50257, "gelu_new", 1e-5)
    assert c.attn_pdrop == c.resid_pdrop == c.embd_pdrop == 0.1 and len(tok) == 50257
    assert "RANDOM weights" in capsys.readouterr().out


def test_rehearsal_smollm2_is_a_llama_resized_to_the_gpt2_tokenizer(capsys):
    from transformers import AutoConfig

    from utils.models import config_path, rehearsal_model
    values = json.loads(config_path("HuggingFaceTB/SmolLM2-135M-Instruct").read_text())
    values.pop("architectures")
    config = AutoConfig.for_model(values.pop("model_type"), **values)          # as released: vocabulary 49152
    assert (config.model_type, config.hidden_size, config.intermediate_size, config.num_hidden_layers,
            config.num_attention_heads, config.num_key_value_heads, config.max_position_embeddings,
            config.tie_word_embeddings) == ("llama", 576, 1536, 30, 9, 3, 8192, True)
    model, tok = rehearsal_model("HuggingFaceTB/SmolLM2-135M-Instruct", device="meta")
    assert model.config.vocab_size == 50257 and tok.chat_template.startswith("{% for message in messages %}")
    assert "resized to the GPT-2 tokenizer's 50257" in capsys.readouterr().out
    # with its own vocabulary it has the released 134,515,008 parameters (GGUF tensor count)
    from transformers import AutoModelForCausalLM
    with torch.device("meta"):
        assert sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters()) == 134_515_008


def test_load_model_in_rehearsal_builds_gpt2_seeded_and_missing_config_is_named(rehearsal_env, capsys):
    from utils.models import load_model_and_tokenizer, load_reward_model
    a, tok = load_model_and_tokenizer("gpt2", fast=False)
    b, _ = load_model_and_tokenizer("gpt2", fast=False)
    assert a.config.n_layer == 12 and not a.training
    assert torch.equal(a.transformer.h[0].attn.c_attn.weight, b.transformer.h[0].attn.c_attn.weight)
    rm = load_reward_model("gpt2", tok)
    assert rm.config.num_labels == 1 and rm.config.pad_token_id == 50256 and rm.config.n_layer == 12
    assert "REHEARSAL" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match=r"data/configs/gpt2-xl\.json"):
        load_model_and_tokenizer("gpt2-xl", fast=False)


# --------------------------------------------------------------------------- fixtures
# --------------------------------------------------------------------------- FLOPs
@pytest.fixture
def counter():
    c = rh.FlopCounter(rh.UseTracker()).install()
    yield c
    c.uninstall()


def _matmul_weights(model):
    from transformers.pytorch_utils import Conv1D
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (torch.nn.Linear, Conv1D)))


def _expected_forward(model, tokens, context):
    n = _matmul_weights(model)
    c = model.config
    return 2 * n * tokens + 2 * c.n_layer * context * c.n_embd * tokens


def test_flop_counter_training_step_is_6N_plus_attention(counter):
    tok = load_gpt2_tokenizer()
    model = tiny_gpt2(tok).train()
    ids = torch.randint(0, 50257, (2, 16))
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids)   # GPT2Model inside: counted once
    out.loss.backward()
    assert _matmul_weights(model) == 2 * (64 * 192 + 64 * 64 + 64 * 256 + 256 * 64) + 64 * 50257
    assert counter.calls == 1
    assert counter.flops == pytest.approx(3 * _expected_forward(model, 32, 16))
    counter.reset()
    with torch.no_grad():
        model(input_ids=ids)
    assert counter.flops == pytest.approx(_expected_forward(model, 32, 16))


def test_flop_counter_custom_wrapper_lora_and_checkpointing(counter):
    tok = load_gpt2_tokenizer()
    lm = tiny_gpt2(tok)

    class ValueModel(torch.nn.Module):                     # notebook 07's shape: a GPT2Model inside a plain Module
        def __init__(self):
            super().__init__()
            self.body, self.head = lm.transformer, torch.nn.Linear(64, 1)

        def forward(self, ids):
            return self.head(self.body(input_ids=ids).last_hidden_state)

    ids = torch.randint(0, 50257, (1, 8))
    ValueModel()(ids).sum().backward()
    body_n = _matmul_weights(lm.transformer)
    assert counter.calls == 1 and counter.flops == pytest.approx(3 * (2 * body_n * 8 + 2 * 2 * 8 * 64 * 8))

    from peft import LoraConfig, get_peft_model
    counter.reset()
    lora = get_peft_model(tiny_gpt2(tok), LoraConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True))
    lora(input_ids=ids).logits.sum().backward()
    inner = lora.base_model.model
    assert counter.calls == 1 and counter.flops == pytest.approx(2 * _expected_forward(inner, 8, 8))

    counter.reset()
    ckpt = tiny_gpt2(tok).train()
    ckpt.gradient_checkpointing_enable()
    ckpt(input_ids=ids).logits.sum().backward()
    assert counter.flops == pytest.approx(4 * _expected_forward(ckpt, 8, 8))


def test_flop_counter_generation_and_scaling(counter):
    tok = load_gpt2_tokenizer()
    model = tiny_gpt2(tok)
    ids = torch.randint(0, 50257, (1, 5))
    model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert counter.calls == 4                                  # prefill + 3 one-token decode steps
    counter.reset()
    cfg = cap_config_quiet(dict(steps=20), steps=2)
    counter.tracker = rh.TRACKER
    cfg["steps"]
    with torch.no_grad():
        model(input_ids=ids)
    assert counter.flops_uncapped == pytest.approx(10 * counter.flops)


# --------------------------------------------------------------------------- the runner
def test_runner_reports_assertions_and_fails_on_other_errors(tmp_path, monkeypatch):
    runner = _load_runner()
    monkeypatch.delenv("COURSE_FAST", raising=False)
    monkeypatch.setenv("COURSE_REHEARSAL", "1")
    cells = [nbformat.v4.new_code_cell("CFG = dict(steps=50, lr=1.0)\nif False:\n    CFG.update(steps=3)"),
             nbformat.v4.new_code_cell("assert CFG['steps'] == 2, 'capped'\nx = 1"),
             nbformat.v4.new_code_cell("assert x == 2, 'held-out loss did not fall'"),
             nbformat.v4.new_code_cell("y = x + 1\nprint(y)")]
    nb = nbformat.v4.new_notebook(cells=cells)
    rec = runner.rehearse(tmp_path / "99_synthetic.ipynb", tmp_path / "out", 60, nb=nb)
    assert rec["status"] == "ok" and rec["injected"] == 1
    assert rec["checks"] == [{"cell": 3, "message": "held-out loss did not fall"}]
    assert rec["changes"] == [{"key": "steps", "original": 50, "capped": 2}] and rec["peak_bytes"] > 0
    assert (tmp_path / "out" / "99_synthetic.ipynb").is_file()

    cells = [nbformat.v4.new_code_cell("CFG = dict(max_steps=10)"),
             nbformat.v4.new_code_cell("import torch\ntorch.zeros(2, 3) @ torch.zeros(2, 3)"),
             nbformat.v4.new_code_cell("print('never runs')")]
    rec = runner.rehearse(tmp_path / "98_broken.ipynb", tmp_path / "out", 60, nb=nbformat.v4.new_notebook(cells=cells))
    assert rec["status"] == "FAILED" and rec["error"].startswith("cell 2: RuntimeError") and len(rec["cells"]) == 3
    text = runner.report([rec], "test", 1.0)
    assert "98_broken.ipynb | FAILED" in text and "projection" in text
