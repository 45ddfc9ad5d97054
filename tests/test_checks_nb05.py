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


# =========================================================================== the likely wrong answers, per exercise
# Each entry: (the phrase the feedback must contain — it names the mistake, the wrong answer a learner is likely to
# give). The reference answers pass (test_references_pass_their_own_checkers, and the solution notebook).

def _gpt2_count(*, wpe=True, wte=True, head=False, head_bias=False, ln_f=True, linear_bias=True, ln_block=True,
                ln_bias=True, qkv=3, mlp=4, fixed_sizes=False):
    """count_params written part by part, as a learner does; each keyword turns one part wrong."""
    def count_params(n_layer, n_embd, vocab_size=50257, n_positions=1024):
        d, V, P = n_embd, vocab_size, n_positions
        if fixed_sizes:                                  # GPT-2's numbers, not the arguments
            V, P = 50257, 1024
        lb, nb = (1 if linear_bias else 0), (2 if ln_bias else 1)
        block = (d * qkv * d + lb * qkv * d) + (d * d + lb * d) + (d * mlp * d + lb * mlp * d) + (mlp * d * d + lb * d)
        block += 2 * nb * d if ln_block else 0
        total = V * d * wte + P * d * wpe + n_layer * block + (nb * d if ln_f else 0)
        return total + (V * d if head else 0) + (V if head_bias else 0)
    return count_params


def test_the_part_by_part_count_is_right():
    assert checks.param_count_problems(_gpt2_count()) == []


@pytest.mark.parametrize("named,wrong", [
    ("position embedding (n_positions × n_embd) is missing", _gpt2_count(wpe=False)),
    ("token embedding (vocab_size × n_embd) is missing", _gpt2_count(wte=False)),
    ("you counted the LM head as its own matrix; GPT-2 ties it", _gpt2_count(head=True)),
    ("it has no bias", _gpt2_count(head=True, head_bias=True)),
    ("final LayerNorm (ln_f", _gpt2_count(ln_f=False)),
    ("biases of the four linear layers are missing", _gpt2_count(linear_bias=False)),
    ("every bias is missing", _gpt2_count(linear_bias=False, ln_bias=False)),
    ("each block's two LayerNorms", _gpt2_count(ln_block=False)),
    ("c_attn is d × 3d", _gpt2_count(qkv=1)),
    ("the MLP widens to 4·n_embd", _gpt2_count(mlp=1)),
    ("use the vocab_size and n_positions you are given", _gpt2_count(fixed_sizes=True)),
])
def test_param_count_names_each_likely_mistake(named, wrong):
    problems = checks.param_count_problems(wrong)
    assert problems and all(named in p for p in problems), problems


def _static(*, weight_bytes=4, lora_weights=True, grad_bytes=4, grads_for_all=False, state=None, state_for_all=False):
    """static_memory with one slip: bytes per weight/gradient, what is trainable, the optimizer's bytes."""
    state = {"adamw": 8, "adamw8bit": 2, "sgd": 0, **(state or {})}

    def static_memory(n_params, optimizer, n_lora=0):
        trainable = n_lora or n_params
        return {"weights": weight_bytes * (n_params + (n_lora if lora_weights else 0)),
                "gradients": grad_bytes * (n_params if grads_for_all else trainable),
                "optimizer": state[optimizer] * (n_params if state_for_all else trainable)}
    return static_memory


def test_the_static_memory_helper_is_right():
    assert checks.static_memory_problems(_static()) == []


@pytest.mark.parametrize("named,wrong", [
    ("you gave every parameter a gradient; with LoRA the base is frozen", _static(grads_for_all=True)),
    ("you kept optimizer state for the frozen base too", _static(state_for_all=True)),
    ("you left out the LoRA adapters' own weights", _static(lora_weights=False)),
    ("you counted 2-byte (fp16) weights", _static(weight_bytes=2)),
    ("you counted 2-byte (fp16) gradients", _static(grad_bytes=2)),
    ("you counted one moment; AdamW keeps two (m and v)", _static(state={"adamw": 4})),
    ("8-bit AdamW keeps two 1-byte moments", _static(state={"adamw8bit": 1})),
    ("plain SGD (no momentum) keeps no state", _static(state={"sgd": 4})),
])
def test_static_memory_names_each_likely_mistake(named, wrong):
    problems = checks.static_memory_problems(wrong)
    assert problems and any(named in p for p in problems), problems


def _bf16_from(threshold):
    return lambda cap: "fp32" if cap is None else ("bf16" if cap >= threshold else "fp16")


@pytest.mark.parametrize("named,wrong", [
    ("emulated", lambda cap: "fp32" if cap is None else "bf16"),                # bf16 on every GPU (T4 too)
    ("emulated", _bf16_from((7, 0))),                                           # the threshold one generation early
    ("half precision on a CPU is slow", lambda cap: "fp16" if cap is None or cap < (8, 0) else "bf16"),
    ("needs a loss scaler for nothing", lambda cap: "fp32" if cap is None else "fp16"),   # fp16 on every GPU
    ("tensor cores idle", lambda cap: "fp32"),                                  # fp32 everywhere, to be safe
    ("not a torch.dtype", lambda cap: __import__("torch").float32 if cap is None else __import__("torch").bfloat16),
    ("one of the strings", lambda cap: "float32" if cap is None else "bfloat16"),
])
def test_precision_choice_names_each_likely_mistake(named, wrong):
    assert checks.precision_choice_problems(_bf16_from((8, 0))) == []
    problems = checks.precision_choice_problems(wrong)
    assert problems and any(named in p for p in problems), problems


def _lora(**kw):
    def make_lora_config(r):
        from peft import LoraConfig
        args = dict(r=r, lora_alpha=2 * r, target_modules=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True)
        args.update({k: (v(r) if callable(v) else v) for k, v in kw.items()})
        return LoraConfig(**args)
    return make_lora_config


def test_lora_config_accepts_a_regular_expression_for_the_targets():
    assert checks.lora_config_problems(_lora()) == []
    assert checks.lora_config_problems(_lora(target_modules=r".*\.(c_attn|c_proj|c_fc)")) == []


@pytest.mark.parametrize("named,wrong", [
    ("set fan_in_fan_out=True", _lora(fan_in_fan_out=False)),
    ("missing ['c_fc', 'c_proj']", _lora(target_modules=["c_attn"])),                    # attention only
    ("LLaMA's layer names", _lora(target_modules=["q_proj", "v_proj"])),                 # a LLaMA recipe
    ("extra ['lm_head']", _lora(target_modules=["c_attn", "c_proj", "c_fc", "lm_head"])),
    ("use the rank you were given", _lora(r=8)),                                         # the recipe's r, not r
    ("bias='all' makes biases trainable", _lora(bias="all")),
    ("modules_to_save", _lora(modules_to_save=["lm_head"])),
])
def test_lora_config_names_each_likely_mistake(named, wrong):
    problems = checks.lora_config_problems(wrong)
    assert problems and any(named in p for p in problems), problems


def _savers(*, checkpointing=True, cache_off=True, optimizer="8bit", lr=None, params="all", return_it=True):
    def add_memory_savers(model, lr_given):
        import bitsandbytes as bnb
        import torch
        if checkpointing == "no call":
            model.gradient_checkpointing_enable                  # noqa: B018 — the parentheses forgotten
        elif checkpointing:
            model.gradient_checkpointing_enable()
        if cache_off:
            model.config.use_cache = False
        chosen = (model.transformer.h.parameters() if params == "blocks" else
                  [p for p in model.parameters() if p.requires_grad])
        make = {"8bit": bnb.optim.AdamW8bit, "32bit": bnb.optim.AdamW, "torch": torch.optim.AdamW}[optimizer]
        opt = make(chosen, lr=lr if lr is not None else lr_given)
        return opt if return_it else None
    return add_memory_savers


@pytest.mark.parametrize("named,wrong", [
    ("gradient checkpointing is off", _savers(checkpointing=False)),
    ("gradient checkpointing is off", _savers(checkpointing="no call")),
    ("use_cache = False", _savers(cache_off=False)),
    ("not AdamW", _savers(optimizer="torch")),                                           # torch's 32-bit AdamW
    ("32-bit bitsandbytes optimizer", _savers(optimizer="32bit")),                       # bnb.optim.AdamW: 32 bits
    ("you returned nothing", _savers(return_it=False)),
    ("use the learning rate you were given", _savers(lr=1e-5)),
    ("not in the optimizer", _savers(params="blocks")),                                  # embeddings, ln_f left out
])
def test_memory_savers_names_each_likely_mistake(named, wrong):
    assert checks.memory_savers_problems(_savers()) == []
    problems = checks.memory_savers_problems(wrong)
    assert problems and any(named in p for p in problems), problems


def _validation(*, eval_mode=True, no_grad=True, labels="labels", count="supervised", reduce="tokens", ppl=None):
    """validation_loss with one slip; the defaults give the right answer."""
    import math

    import torch

    from utils.loss import masked_nll, n_targets

    def validation_loss(model, batches):
        if eval_mode:
            model.eval()
        total, n, means, seqs = 0.0, 0, [], []
        with torch.set_grad_enabled(not no_grad):
            for b in batches:
                logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
                token_sum = masked_nll(logits, b[labels], reduction="sum")
                k = {"supervised": n_targets(b[labels]), "mask": int(b["attention_mask"].sum())}[count]
                total, n = total + token_sum, n + k
                means.append(token_sum / n_targets(b[labels]))
                seqs.append(len(b["input_ids"]))
        loss = {"tokens": total / n, "batch means": sum(means) / len(means), "sum": total,
                "sequences": sum(m * s for m, s in zip(means, seqs)) / sum(seqs)}[reduce]
        if no_grad:
            loss = float(loss)
        return loss, (ppl or math.exp)(float(loss))
    return validation_loss


def test_the_validation_helper_is_right():
    assert checks.validation_loss_problems(_validation()) == []


@pytest.mark.parametrize("named,wrong", [
    ("mean of the batch means", _validation(reduce="batch means")),
    ("weights each batch by its number of sequences", _validation(reduce="sequences")),
    ("divides by every token of the attention mask", _validation(count="mask")),
    ("includes the positions labelled −100", _validation(labels="input_ids")),           # labels=input_ids
    ("is the sum of the token losses", _validation(reduce="sum", ppl=lambda x: float("inf"))),
    ("a sum of token losses rather than the mean", _validation(reduce="sum")),      # math.exp(sum) overflows
    ("dropout is on — call model.eval()", _validation(eval_mode=False)),
    ("that is 2^loss", _validation(ppl=lambda x: 2 ** x)),
    ("carries the autograd graph", _validation(no_grad=False)),
])
def test_validation_loss_names_each_likely_mistake(named, wrong):
    problems = checks.validation_loss_problems(wrong)
    assert problems and any(named in p for p in problems), problems


def _reload(kind):
    def save_and_reload(model, directory, make_base):
        from pathlib import Path

        import torch
        from peft import PeftModel, get_peft_model
        from transformers import GPT2LMHeadModel
        if kind == "same model":
            model.save_pretrained(directory)
            return model
        if kind == "base only":                          # saved, but the adapters never loaded
            model.save_pretrained(directory)
            return make_base()
        if kind == "fresh adapters":                     # same config, new (untrained) adapters
            model.save_pretrained(directory)
            return get_peft_model(make_base(), model.peft_config["default"])
        if kind == "pickle":                             # torch.save of the state dict
            Path(directory).mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), Path(directory) / "adapter.pt")
            fresh = get_peft_model(make_base(), model.peft_config["default"])
            fresh.load_state_dict(torch.load(Path(directory) / "adapter.pt"))
            return fresh
        if kind == "bin":
            model.save_pretrained(directory, safe_serialization=False)
            return PeftModel.from_pretrained(make_base(), directory)
        if kind == "merged":                             # the whole fine-tuned model, adapters merged in
            model.merge_and_unload().save_pretrained(directory)
            return GPT2LMHeadModel.from_pretrained(directory)
        raise ValueError(kind)
    return save_and_reload


@pytest.mark.parametrize("named,kind", [
    ("load a new one from the directory", "same model"),
    ("it is the base model without the adapters", "base only"),
    ("its adapters are new ones", "fresh adapters"),
    ("not pickle files", "pickle"),
    ("not pickle files", "bin"),
    ("model.safetensors is the whole model", "merged"),
])
def test_save_reload_names_each_likely_mistake(named, kind, tmp_path):
    problems = checks.save_reload_problems(_reload(kind), tmp_path)
    assert problems and any(named in p for p in problems), problems
