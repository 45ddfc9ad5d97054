import pytest
import torch

from utils.memory import (GPT2_LARGE, GPT2_MEDIUM, GPT2_SMALL, ModelShape, measure_peak_memory,
                          static_training_memory)


@pytest.mark.parametrize("shape", [GPT2_SMALL, GPT2_MEDIUM, GPT2_LARGE, ModelShape(2, 64, 2, n_positions=256)])
def test_parameter_count_matches_the_model(shape):
    from transformers import GPT2Config, GPT2LMHeadModel
    with torch.device("meta"):                      # shapes only, no memory
        model = GPT2LMHeadModel(GPT2Config(n_layer=shape.n_layer, n_embd=shape.n_embd, n_head=shape.n_head,
                                           n_positions=shape.n_positions))
    assert shape.n_params == sum(p.numel() for p in model.parameters())


def test_gpt2_large_is_774M():
    assert round(GPT2_LARGE.n_params / 1e6) == 774


def test_lora_parameter_count_matches_peft():
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel
    shape = ModelShape(2, 64, 2, n_positions=256)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=2, n_positions=256))
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert shape.lora_params(4) == trainable


def test_static_memory_follows_the_formulas():
    n = GPT2_LARGE.n_params
    full = static_training_memory(GPT2_LARGE, "adamw")
    assert (full["weights"], full["gradients"], full["optimizer"]) == (4 * n, 4 * n, 8 * n)
    assert round(full["total"] / 2**30, 1) == 11.5                    # the ≈ 11.5 GiB of fp32 AdamW
    assert full["total"] - static_training_memory(GPT2_LARGE, "adamw8bit")["total"] == 6 * n
    lora = static_training_memory(GPT2_LARGE, "adamw", lora_r=16)
    r = GPT2_LARGE.lora_params(16)
    assert lora == {"weights": 4 * n + 4 * r, "gradients": 4 * r, "optimizer": 8 * r, "total": 4 * n + 16 * r}
    with pytest.raises(ValueError, match="optimizer must be one of"):
        static_training_memory(GPT2_LARGE, "lion")


def test_measure_peak_memory_on_cpu_sees_an_allocation():
    before = measure_peak_memory(lambda: None)
    after = measure_peak_memory(lambda: torch.ones(64 * 2**20 // 4 + before // 4, dtype=torch.float32).sum())
    assert after >= before + 60 * 2**20
