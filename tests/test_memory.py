import pytest
import torch

from utils.memory import (GPT2_LARGE, GPT2_MEDIUM, GPT2_SMALL, ModelShape, measure_peak_memory,
                          static_training_memory)
from utils.models import TINY_GPT2


@pytest.mark.parametrize("shape", [GPT2_SMALL, GPT2_MEDIUM, GPT2_LARGE, TINY_GPT2])
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
    shape = TINY_GPT2
    model = GPT2LMHeadModel(TINY_GPT2.gpt2_config())
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


def _saved_tensor_bytes(shape, *, seq_len, batch_size, precision, lora_r, grad_checkpointing):
    """Count what autograd really saves for backward, on the real transformers GPT-2 of that shape."""
    import contextlib

    from transformers import GPT2Config, GPT2LMHeadModel

    from utils.memory import saved_tensor_bytes
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=shape.n_layer, n_embd=shape.n_embd, n_head=shape.n_head,
                                       n_positions=shape.n_positions))
    if grad_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if lora_r:
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=lora_r, target_modules=["c_attn", "c_proj", "c_fc"],
                                                 fan_in_fan_out=True, lora_dropout=0.0))
    model.train()
    x = torch.randint(0, shape.vocab_size, (batch_size, seq_len))
    amp = torch.autocast("cpu", dtype=torch.float16) if precision == "fp16" else contextlib.nullcontext()
    return saved_tensor_bytes(model, autocast=amp, input_ids=x, labels=x)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("lora_r", [None, 8])
@pytest.mark.parametrize("grad_checkpointing", [False, True])
@pytest.mark.parametrize("shape,seq_len,batch_size", [(TINY_GPT2, 64, 1),
                                                       (ModelShape(3, 128, 4, n_positions=256), 96, 2)])
def test_activation_formula_matches_what_autograd_saves(shape, seq_len, batch_size, precision, lora_r, grad_checkpointing):
    from utils.memory import activation_memory
    counted = _saved_tensor_bytes(shape, seq_len=seq_len, batch_size=batch_size, precision=precision, lora_r=lora_r,
                                  grad_checkpointing=grad_checkpointing)
    predicted = activation_memory(shape, seq_len=seq_len, batch_size=batch_size, precision=precision, lora_r=lora_r,
                                  grad_checkpointing=grad_checkpointing)
    assert abs(predicted - counted) <= 4096 + 1e-3 * counted, (predicted, counted)   # a few small stats tensors


def test_attention_term_grows_with_the_square_of_the_sequence():
    from utils.memory import activation_memory
    small = ModelShape(1, 64, 4, vocab_size=1)                     # a 1-token vocabulary hides the loss term
    grow = [activation_memory(small, seq_len=s) for s in (128, 256, 512)]
    linear = [120 * s * 64 + 12 * s * 64 + 16 * s + 4 * s for s in (128, 256, 512)]
    quadratic = [g - l for g, l in zip(grow, linear)]
    assert quadratic[1] == 4 * quadratic[0] and quadratic[2] == 16 * quadratic[0]


def test_predicted_peak_is_the_larger_of_backward_and_optimizer_step():
    from utils.memory import predict_training_memory
    gib = 2**30
    full = predict_training_memory(GPT2_LARGE, seq_len=512, optimizer="adamw", device="cuda")
    parts = {k: full[k] for k in ("weights", "gradients", "optimizer", "activations", "logits", "runtime")}
    assert full["total"] < sum(parts.values())                    # activations are gone before the step
    n, V, d = GPT2_LARGE.n_params, GPT2_LARGE.vocab_size, GPT2_LARGE.n_embd
    backward = full["activations"] + full["logits"] + 4 * V * d
    step = 4 * n + 4 * n                                           # gradients + √v for every tensor
    assert full["total"] == 4 * n + 8 * n + max(backward, step)
    eight = predict_training_memory(GPT2_LARGE, seq_len=512, optimizer="adamw8bit", device="cuda")
    ckpt = predict_training_memory(GPT2_LARGE, seq_len=512, optimizer="adamw8bit", grad_checkpointing=True, device="cuda")
    lora = predict_training_memory(GPT2_LARGE, seq_len=512, lora=16, device="cuda")
    assert full["total"] > 14 * gib > eight["total"] > ckpt["total"]          # each trick saves memory
    assert ckpt["activations"] < full["activations"] / 10
    assert lora["gradients"] == 4 * GPT2_LARGE.lora_params(16) and lora["total"] < full["total"] / 1.5
    assert predict_training_memory(GPT2_LARGE, seq_len=512, runtime=gib)["total"] == full["total"] + gib
    with pytest.raises(ValueError, match="precision"):
        predict_training_memory(GPT2_LARGE, seq_len=512, precision="fp8")
    with pytest.raises(ValueError, match="device"):
        predict_training_memory(GPT2_LARGE, seq_len=512, device="tpu")


def test_require_fits_refuses_with_the_numbers():
    from utils.memory import MemoryBudgetError, predict_training_memory, require_fits
    gib = 2**30
    plan = predict_training_memory(GPT2_LARGE, seq_len=512, optimizer="adamw", device="cuda")
    with pytest.raises(MemoryBudgetError, match=r"14\.42 GiB .* 13\.05 GiB can be used \(90% of 14\.50 GiB free\)"):
        require_fits(plan, int(14.5 * gib), what="fp32 AdamW")
    require_fits(predict_training_memory(GPT2_LARGE, seq_len=512, optimizer="adamw8bit", grad_checkpointing=True,
                                         device="cuda"), int(14.5 * gib))
    require_fits(plan, None)                                    # CPU: nothing to compare with


def test_saved_tensor_and_optimizer_state_measurers():
    from transformers import GPT2Config, GPT2LMHeadModel

    from utils.memory import activation_memory, optimizer_state_bytes, saved_tensor_bytes
    shape = TINY_GPT2
    torch.manual_seed(0)
    model = GPT2LMHeadModel(TINY_GPT2.gpt2_config()).train()
    x = torch.randint(0, 50257, (1, 32))
    assert abs(saved_tensor_bytes(model, input_ids=x, labels=x) - activation_memory(shape, seq_len=32)) < 4096
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    assert optimizer_state_bytes(opt) == 0                      # states are created by the first step
    model(input_ids=x, labels=x).loss.backward()
    opt.step()
    n = sum(p.numel() for p in model.parameters())
    assert 8 * n <= optimizer_state_bytes(opt) <= 8 * n + 4 * 100   # m and v, plus a scalar step per tensor


def test_available_memory_counts_what_the_caching_allocator_holds_unused(monkeypatch):
    """After a measured step PyTorch keeps ~7 GiB cached: the driver calls it used, PyTorch reuses it."""
    from utils.memory import available_memory, require_fits
    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * gib, 15 * gib))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 9 * gib)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 2 * gib)
    assert available_memory("cuda") == 2 * gib + (9 - 2) * gib
    require_fits({"total": 7 * gib}, available_memory("cuda:0"))       # 7 ≤ 0.9 × 9: fits
    assert available_memory("cpu") is None


def test_gradient_accumulation_keeps_the_first_micro_batchs_gradients():
    from utils.memory import predict_training_memory
    n, r = GPT2_LARGE.n_params, GPT2_LARGE.lora_params(16)
    # LoRA, fp32: backward is the peak either way, so accumulation adds exactly the adapters' gradients.
    one = predict_training_memory(GPT2_LARGE, seq_len=512, lora=16, device="cuda")
    two = predict_training_memory(GPT2_LARGE, seq_len=512, lora=16, device="cuda", grad_accum=2)
    assert two["total"] - one["total"] == 4 * r
    assert predict_training_memory(GPT2_LARGE, seq_len=512, lora=16, device="cuda", grad_accum=8) == two
    # Full fine-tuning, 8-bit + checkpointing: without accumulation the gradients peak alone at the step;
    # with it they are there while the next micro-batch's activations, logits and autocast cache are.
    kw = dict(seq_len=512, batch_size=4, optimizer="adamw8bit", precision="fp16", grad_checkpointing=True, device="cuda")
    one, two = predict_training_memory(GPT2_LARGE, **kw), predict_training_memory(GPT2_LARGE, **kw, grad_accum=2)
    static = one["weights"] + one["optimizer"]
    assert one["total"] == static + 4 * n                                  # optimizer.step(): weights, states, gradients
    logits_out, log_probs = 2 * 4 * 512 * 50257, 4 * 4 * 512 * 50257
    # the end of the second forward, still inside autocast: the first micro-batch's gradients and logits, the
    # checkpoints, the LM head's input and weight copy, the fp16 copies of all other weights, the new logits
    cache = GPT2_LARGE.n_layer * (24 * 1280**2 + 18 * 1280)
    assert one["autocast_cache"] == cache
    forward_end = 4 * n + logits_out + _checkpointed(kw) - log_probs + cache + logits_out
    assert two["total"] == static + forward_end
    assert two["total"] - one["total"] > one["autocast_cache"]            # the cache comes on top of the gradients
    with pytest.raises(ValueError, match="grad_accum"):
        predict_training_memory(GPT2_LARGE, seq_len=512, grad_accum=0)


def _checkpointed(kw):
    from utils.memory import activation_memory
    return activation_memory(GPT2_LARGE, seq_len=kw["seq_len"], batch_size=kw["batch_size"], precision=kw["precision"],
                             grad_checkpointing=True, device=kw["device"])


@pytest.mark.parametrize("grad_checkpointing", [True, False])
def test_autocast_cache_term_is_what_leaving_autocast_frees(grad_checkpointing):
    """Track every fp16 copy autocast makes of a parameter; count those alive at the end of forward and after."""
    import weakref

    from torch.utils._python_dispatch import TorchDispatchMode
    from transformers import GPT2Config, GPT2LMHeadModel

    from utils.memory import predict_training_memory
    shape = TINY_GPT2
    torch.manual_seed(0)
    model = GPT2LMHeadModel(TINY_GPT2.gpt2_config()).train()
    if grad_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    params = {p.data_ptr() for p in model.parameters()}
    copies = []

    class TrackCopies(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is torch.ops.aten._to_copy.default and args[0].data_ptr() in params:
                copies.append(weakref.ref(out))
            return out

    def alive():
        return sum(t.untyped_storage().nbytes() for t in (r() for r in copies) if t is not None)

    x = torch.randint(0, 50257, (1, 32))
    with torch.autocast("cpu", dtype=torch.float16):
        with TrackCopies():
            logits = model(input_ids=x).logits
        at_forward_end = alive()
    freed_on_exit = at_forward_end - alive()
    predicted = predict_training_memory(shape, seq_len=32, precision="fp16", grad_checkpointing=grad_checkpointing,
                                        device="cpu")["autocast_cache"]
    assert freed_on_exit == predicted, (freed_on_exit, predicted)
    assert at_forward_end >= 2 * (shape.n_params - 256 * 64 - 2 * 2 * 2 * 64 - 2 * 64) * grad_checkpointing
    del logits


def test_cuda_branch_drops_the_attention_square_and_shrinks_the_dropout_masks():
    from utils.memory import activation_memory
    small = ModelShape(1, 64, 4, vocab_size=1)                     # a 1-token vocabulary hides the loss term
    for precision in ("fp32", "fp16"):
        cuda = [activation_memory(small, seq_len=s, precision=precision, device="cuda") for s in (128, 256, 512)]
        assert cuda[1] - cuda[0] == (cuda[2] - cuda[1]) / 2           # linear in S: no S×S tensor is stored
    cpu = activation_memory(small, seq_len=256)
    cuda = activation_memory(small, seq_len=256, device="cuda")
    # per block: 12·a·S² (three S×S tensors) and q, k, v copies go; two 4-byte masks become 1-byte; logsumexp comes;
    # outside: the embeddings' mask, 4 → 1 byte
    assert cpu - cuda == 12 * 4 * 256**2 + 6 * 256 * 64 - 4 * 4 * 256 + 3 * 256 * 64
    # fp16 autocast on CUDA: the GELU runs in fp32 (torch.pow is on autocast's fp32 list), +24·B·S·d
    amp = [activation_memory(small, seq_len=256, precision="fp16", device=dev) for dev in ("cpu", "cuda")]
    assert amp[0] - amp[1] == 12 * 4 * 256**2 + 8 * 256 - 4 * 4 * 256 - 16 * 256 + 8 * 64 + (6 + 2 - 24) * 256 * 64 \
        + 3 * 256 * 64
    # padding (batch > 1): the mask becomes an additive S×S bias per block, kept by the kernel
    two = activation_memory(small, seq_len=256, batch_size=2, device="cuda")
    assert two - 2 * cuda == 4 * 2 * 256**2
    with pytest.raises(ValueError, match="device"):
        activation_memory(small, seq_len=256, device="tpu")


def test_logits_and_their_gradients_follow_the_measured_16_and_14_bytes_per_logit():
    """While log_softmax's backward runs: the logits, the log-probs, their gradient and the logits' fp32 gradient.

    Measured on a CPU (peak RSS of one micro-batch of utils.training's loop, a 1-block d=64 GPT-2, batch 4 × 512):
    16.5·B·S·V bytes in fp32, 14.4·B·S·V under fp16 autocast, the small rest being the block's activations.
    """
    from utils.memory import predict_training_memory
    B, S, V, d = 4, 512, 50257, 8
    tiny = ModelShape(0, d, 1, vocab_size=V)                       # no block: nothing but embeddings and the loss
    for precision, per_logit, embeddings, head_copy in (("fp32", 16, 12, 0), ("fp16", 14, 10, 2 * V * d)):
        p = predict_training_memory(tiny, seq_len=S, batch_size=B, precision=precision, device="cpu", optimizer="sgd")
        assert p["total"] - p["weights"] - embeddings * B * S * d - head_copy == per_logit * B * S * V


def test_optimizer_state_bytes_counts_shared_8bit_maps_once():
    """bitsandbytes gives every parameter the same two 256-entry quantisation maps: one allocation, counted once."""
    import bitsandbytes as bnb
    from utils.memory import optimizer_state_bytes
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.Linear(256, 256))
    opt = bnb.optim.AdamW8bit(model.parameters(), lr=1e-3, min_8bit_size=1)
    model(torch.randn(4, 256)).sum().backward()
    opt.step()
    states = list(opt.state.values())
    assert states[0]["qmap1"].data_ptr() == states[1]["qmap1"].data_ptr()           # shared, as bitsandbytes does
    per_param = sum(s["state1"].numel() + s["state2"].numel() + 4 * (s["absmax1"].numel() + s["absmax2"].numel())
                    for s in states)
    assert optimizer_state_bytes(opt) == per_param + 2 * 256 * 4                      # + qmap1, qmap2 once
