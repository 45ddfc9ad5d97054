"""Tests of the checkers for notebook 05: specific feedback on the memory and LoRA exercises."""

from utils import checks


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


# --------------------------------------------------------------------------- predict, then measure
def _right_memory(shape, B, S):
    return sum(checks.forward_end_parts(shape, B, S).values()) / 2**30


def _formula_memory(shape, B, S):
    """What a learner writes from section 2's tables (the CPU fp32 per-block formula): within the tolerance."""
    N, L, d, a, V = shape.n_params, shape.n_layer, shape.n_embd, shape.n_head, shape.vocab_size
    return (4 * N + 2 * N + L * (120 * B * S * d + 12 * B * a * S * S) + 4 * B * S * V) / 2**30


def test_memory_prediction_accepts_the_formula_and_the_exact_count():
    assert checks.memory_prediction_problems(_right_memory) == []
    assert checks.memory_prediction_problems(_formula_memory) == []


def _with(change):
    def predict(shape, B, S):
        from utils.memory import activation_memory
        N = shape.n_params
        parts = {"weights": 4 * N, "optimizer": 2 * N, "activations": activation_memory(shape, seq_len=S, batch_size=B)}
        return change(parts, shape, B, S)
    return predict


import pytest  # noqa: E402


@pytest.mark.parametrize("mistake,change", [
    ("left out the optimizer state", lambda p, sh, B, S: (p["weights"] + p["activations"]) / 2**30),
    ("fp16 weights", lambda p, sh, B, S: (p["weights"] / 2 + p["optimizer"] + p["activations"]) / 2**30),
    ("added the gradients", lambda p, sh, B, S: (2 * p["weights"] + p["optimizer"] + p["activations"]) / 2**30),
    ("AdamW's fp32 moments", lambda p, sh, B, S: (p["weights"] + 4 * p["optimizer"] + p["activations"]) / 2**30),
    ("left out the activations", lambda p, sh, B, S: (p["weights"] + p["optimizer"]) / 2**30),
    ("log-probabilities", lambda p, sh, B, S: (sum(p.values()) - 4 * B * S * sh.vocab_size) / 2**30),
    ("activations in 2 bytes", lambda p, sh, B, S: (p["weights"] + p["optimizer"] + p["activations"] / 2) / 2**30),
    ("10⁹ (GB)", lambda p, sh, B, S: sum(p.values()) / 1e9),
    ("not bytes", lambda p, sh, B, S: float(sum(p.values()))),
    ("not MiB", lambda p, sh, B, S: sum(p.values()) / 2**20),
])
def test_memory_prediction_names_each_likely_mistake(mistake, change):
    problems = checks.memory_prediction_problems(_with(change))
    assert problems and any(mistake in p for p in problems), problems


def test_memory_prediction_names_a_forgotten_batch_and_one_block():
    from utils.memory import activation_memory
    one_seq = _with(lambda p, sh, B, S: (p["weights"] + p["optimizer"] + activation_memory(sh, seq_len=S)) / 2**30)
    assert any("one sequence" in p for p in checks.memory_prediction_problems(one_seq))
    one_block = _with(lambda p, sh, B, S: (p["weights"] + p["optimizer"] + 120 * B * S * sh.n_embd
                                           + 12 * B * sh.n_head * S * S + 4 * B * S * sh.vocab_size) / 2**30)
    assert any("one block" in p for p in checks.memory_prediction_problems(one_block))


def test_memory_prediction_against_a_measurement_states_the_tolerance():
    from utils.memory import GPT2_LARGE
    measured = dict(shape=GPT2_LARGE, batch_size=1, seq_len=128, bytes=int(_right_memory(GPT2_LARGE, 1, 128) * 2**30 * 0.97))
    assert checks.memory_prediction_problems(_formula_memory, measured) == []       # a GPU's −3 %: still right
    wrong = _with(lambda p, sh, B, S: (p["weights"] + p["activations"]) / 2**30)
    problems = checks.memory_prediction_problems(wrong, measured)
    assert len(problems) == 1 and "measured" in problems[0] and "±5%" in problems[0] and "optimizer state" in problems[0]
    with pytest.raises(checks.NotAttempted):
        checks.memory_prediction_problems(lambda *a: (_ for _ in ()).throw(NotImplementedError("nudge")), measured)


def test_references_pass_their_own_checkers(tmp_path):
    """The fallbacks the notebook uses for a skipped stub are right answers."""
    assert checks.param_count_problems(checks.count_params_reference) == []
    assert checks.static_memory_problems(checks.static_memory_reference) == []
    assert checks.lora_config_problems(checks.lora_config_reference) == []
    assert checks.memory_savers_problems(checks.add_memory_savers_reference) == []
    assert checks.validation_loss_problems(checks.validation_loss_reference) == []
    assert checks.save_reload_problems(checks.save_and_reload_reference, tmp_path) == []
