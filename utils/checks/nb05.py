"""Notebook 05 — GPT-2 Large, part 1: parameters, memory, precision, LoRA, validation, saving.

Each ``check_*`` prints the verdict for the learner (see :mod:`utils.checks.feedback`); each ``*_problems``
returns what is wrong, for the tests. Each ``*_reference`` is the course's answer to an exercise that has none in
``utils`` yet: the notebook's later cells use it (through ``yours_or_reference``) only while the learner's function is
still the stub. Learners see only the notebook, so a reference here gives nothing away.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import torch

from ..env import pick_device_and_precision, precision_for
from ..loss import masked_nll, n_targets
from ..masking import IGNORE_INDEX
from ..memory import (GPT2_LARGE, GPT2_MEDIUM, GPT2_SMALL, ModelShape, activation_memory, static_bytes,
                      static_training_memory)
from ..models import TINY_GPT2, tiny_model
from ..training import evaluate
from .feedback import attempt, verdict


def _gib(n: float) -> str:
    return f"{n / 2**30:.3f} GiB"


def param_count_problems(count_params) -> list[str]:
    """``count_params(n_layer, n_embd, vocab_size=50257, n_positions=1024) -> int`` for GPT-2."""
    problems = []
    for name, shape in [("GPT-2 small", GPT2_SMALL), ("GPT-2 medium", GPT2_MEDIUM), ("GPT-2 Large", GPT2_LARGE),
                        ("the tiny model", TINY_GPT2)]:
        got, problem = attempt(count_params, shape.n_layer, shape.n_embd, vocab_size=shape.vocab_size,
                             n_positions=shape.n_positions)
        if problem:
            return [problem]
        expected, L, d = shape.n_params, shape.n_layer, shape.n_embd
        if got == expected:
            continue
        diff = int(got) - expected
        V, P = shape.vocab_size, shape.n_positions
        why = {V * d: "you counted the LM head as its own matrix; GPT-2 ties it to the token embedding",
               V * d + V: "you counted the LM head as its own matrix, with a bias; GPT-2 ties it to the token embedding "
                          "and it has no bias",
               -V * d: "the token embedding (vocab_size × n_embd) is missing",
               -P * d: "the position embedding (n_positions × n_embd) is missing",
               -2 * d: "the final LayerNorm (ln_f: gain and bias, 2·n_embd) is missing",
               -13 * d * L: "biases and LayerNorm parameters are missing: each block has 13·n_embd of them",
               -9 * d * L: "the biases of the four linear layers are missing (c_attn 3d, attn c_proj d, c_fc 4d, "
                           "mlp c_proj d: 9·n_embd per block)",
               -11 * d * L - d: "every bias is missing: the linear layers' (9·n_embd per block), the LayerNorms' "
                                "(2·n_embd per block) and ln_f's (n_embd)",
               -4 * d * L: "each block's two LayerNorms (gain + bias, 4·n_embd) are missing",
               -(2 * d * d + 2 * d) * L: "c_attn is d × 3d (queries, keys and values in one matrix, bias 3d); you "
                                         "counted it as d × d",
               -(6 * d * d + 3 * d) * L: "the MLP widens to 4·n_embd: c_fc is d × 4d (bias 4d) and its c_proj 4d × d; "
                                         "you counted them as d × d"}.get(diff)
        if why is None and shape is TINY_GPT2 and diff == (50257 - V) * d + (1024 - P) * d:
            why = ("use the vocab_size and n_positions you are given: the tiny model has its own, you used GPT-2's "
                   "50,257 and 1,024")
        if why is None and diff % L == 0:
            why = (f"the per-block count is off by {diff // L:,} (a block has 12·d² + 13·d = {12 * d * d + 13 * d:,}: "
                   "c_attn d×3d, attn c_proj d×d, c_fc d×4d, mlp c_proj 4d×d, their biases, two LayerNorms)")
        problems.append(f"{name}: you counted {int(got):,}, the model has {expected:,} (off by {diff:+,}). "
                        + (why or "compare part by part: embeddings, blocks, final LayerNorm"))
    return problems


def static_memory_problems(static_memory) -> list[str]:
    """``static_memory(n_params, optimizer, n_lora=0) -> {"weights", "gradients", "optimizer"}`` in bytes."""
    n, r16 = GPT2_LARGE.n_params, GPT2_LARGE.lora_params(16)
    cases = [("fp32 AdamW", "adamw", 0), ("8-bit AdamW", "adamw8bit", 0), ("SGD", "sgd", 0),
             ("LoRA r=16 + AdamW", "adamw", r16)]
    hints = {"weights": "fp32 master weights are 4 bytes per parameter (LoRA adds its adapters on top)",
             "gradients": "one fp32 gradient (4 bytes) per *trainable* parameter",
             "optimizer": "AdamW keeps m and v in fp32 (8 bytes per trainable parameter), 8-bit AdamW 2 bytes, "
                          "SGD without momentum none"}
    problems = []
    for name, optimizer, n_lora in cases:
        got, problem = attempt(static_memory, n, optimizer, n_lora=n_lora)
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
                why = _static_memory_mistake(part, int(got[part]), n, optimizer, n_lora)
                problems.append(f"{name}, {part}: you predicted {_gib(int(got[part]))}, expected "
                                f"{_gib(expected[part])}{ratio} — {why + '; ' if why else ''}{hints[part]}")
    return problems


def _static_memory_mistake(part: str, got: int, n: int, optimizer: str, n_lora: int) -> str:
    """The likely slip behind a wrong ``static_memory`` entry, or "" when none fits."""
    trainable = n_lora or n
    if part == "weights":
        return {2 * (n + n_lora): "you counted 2-byte (fp16) weights; the master weights stay fp32 even under "
                                  "mixed precision",
                4 * n: "you left out the LoRA adapters' own weights" if n_lora else "",
                4 * n_lora: "you counted only the adapters; the frozen base weights are in memory too" if n_lora else "",
                }.get(got, "")
    if part == "gradients":
        return {4 * n: "you gave every parameter a gradient; with LoRA the base is frozen and only the adapters "
                       "train" if n_lora else "",
                2 * trainable: "you counted 2-byte (fp16) gradients; they are fp32 like the master weights",
                0: "the trained parameters do have gradients"}.get(got, "")
    state = {"adamw": 8, "adamw8bit": 2, "sgd": 0}[optimizer]
    mistakes = {}
    if n_lora:
        mistakes[state * n] = "you kept optimizer state for the frozen base too; only trainable parameters have any"
    if optimizer == "adamw":
        mistakes[4 * trainable] = "you counted one moment; AdamW keeps two (m and v), 4 bytes each"
        mistakes[16 * trainable] = "you counted 16 bytes: m and v are 8, the weights and gradients are counted apart"
    elif optimizer == "adamw8bit":
        mistakes[1 * trainable] = "you counted one byte per parameter; 8-bit AdamW keeps two 1-byte moments (m and v)"
        mistakes[8 * trainable] = "you counted fp32 moments; 8-bit AdamW stores m and v in one byte each"
    else:
        mistakes[4 * trainable] = "you counted a momentum buffer; plain SGD (no momentum) keeps no state at all"
        mistakes[8 * trainable] = "you counted Adam's two moments; plain SGD keeps no state at all"
    return mistakes.get(got, "")


def precision_choice_problems(choose_precision) -> list[str]:
    """``choose_precision(capability) -> "fp32" | "fp16" | "bf16"``; capability is (major, minor) or None (CPU)."""
    gpus = [(None, "no GPU (CPU)"), ((7, 5), "T4"), ((7, 0), "V100"), ((6, 0), "P100"), ((8, 0), "A100"),
            ((8, 9), "L4"), ((9, 0), "H100")]
    problems = []
    for capability, name in gpus:
        got, problem = attempt(choose_precision, capability)
        if problem:
            return [problem]
        expected = precision_for(capability)
        if got not in ("fp32", "fp16", "bf16"):
            return [f"{name}: you returned {got!r}; answer with one of the strings 'fp32', 'fp16', 'bf16' "
                    "(not a torch.dtype or another spelling)"]
        if got != expected:
            slip = {("fp16", "fp32"): "half precision on a CPU is slow and has no tensor cores to gain from; ",
                    ("bf16", "fp32"): "half precision on a CPU is slow and has no tensor cores to gain from; ",
                    ("fp32", "fp16"): "fp32 leaves the GPU's half-precision tensor cores idle; ",
                    ("fp32", "bf16"): "fp32 leaves the GPU's half-precision tensor cores idle; ",
                    ("fp16", "bf16"): "fp16 works here but needs a loss scaler for nothing; "}.get((got, expected), "")
            why = {"fp32": "without a GPU there is no fast half precision: train in fp32",
                   "fp16": "below compute capability 8 bf16 is emulated (slow) even where "
                           "torch.cuda.is_bf16_supported() says True: use fp16 autocast with a loss scaler",
                   "bf16": "from compute capability 8 (Ampere) on, bf16 runs natively and needs no loss scaler"}[expected]
            problems.append(f"{name} (capability {capability}): you chose {got!r}, expected {expected!r} — {slip}{why}")
    return problems


def lora_config_problems(make_lora_config) -> list[str]:
    """``make_lora_config(r) -> peft.LoraConfig`` for GPT-2's Conv1D layers."""
    from peft import LoraConfig, get_peft_model     # here, not at the top: importing peft loads bitsandbytes,
                                                    # which prints warnings in notebooks 01–04 that import checks
    config, problem = attempt(make_lora_config, 4)
    if problem:
        return [problem]
    if not isinstance(config, LoraConfig):
        return [f"return a peft.LoraConfig, not {type(config).__name__}"]
    problems = []
    wanted = {"c_attn", "c_proj", "c_fc"}
    if not isinstance(config.target_modules, str):      # a string is a regular expression: the count below judges it
        targets = set(config.target_modules or [])
        if targets != wanted:
            missing, extra = sorted(wanted - targets), sorted(targets - wanted)
            llama = sorted(targets & {"q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj", "gate_proj"})
            problems.append("target_modules should be exactly c_attn, c_proj, c_fc (GPT-2's Conv1D layers; c_proj "
                            f"matches both the attention and the MLP projection); missing {missing}, extra {extra}"
                            + (f" — {llama} are LLaMA's layer names: GPT-2 computes q, k and v in one c_attn"
                               if llama else ""))
            if not targets & wanted:
                problems.append("none of GPT-2's layers is adapted: get_peft_model would fail or train nothing")
    if not config.fan_in_fan_out:
        problems.append("set fan_in_fan_out=True: GPT-2's Conv1D stores its weight as (in, out), the transpose "
                        "of nn.Linear, and LoRA must know to merge it that way")
    if config.r != 4:
        problems.append(f"use the rank you were given: make_lora_config(4) returned r={config.r}")
    if getattr(config, "bias", "none") != "none":
        problems.append(f"bias={config.bias!r} makes biases trainable too; LoRA trains only its A and B matrices "
                        "(bias='none', the default)")
    if getattr(config, "modules_to_save", None):
        problems.append(f"modules_to_save={config.modules_to_save} trains full copies of those modules; leave it out")
    if problems:
        return problems
    shape = TINY_GPT2
    model = tiny_model()
    try:
        peft_model = get_peft_model(model, config)
    except Exception as e:  # noqa: BLE001 — e.g. a regular expression that matches no layer
        return [f"get_peft_model failed with your config: {type(e).__name__}: {e}"]
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    if trainable != shape.lora_params(4):
        problems.append(f"the tiny model gets {trainable:,} trainable parameters, expected {shape.lora_params(4):,} "
                        "(r·(in + out) per adapted layer, nothing else trainable)")
    return problems


def memory_savers_problems(add_memory_savers) -> list[str]:
    """``add_memory_savers(model, lr) -> optimizer``: gradient checkpointing on, 8-bit AdamW returned."""
    model = tiny_model()
    optimizer, problem = attempt(add_memory_savers, model, 1e-3)
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
    if optimizer is None:
        problems.append("you returned nothing: build bitsandbytes' 8-bit AdamW (bnb.optim.AdamW8bit) over the "
                        "trainable parameters and return it")
        return problems
    if not eight_bit:
        kind = ("a 32-bit bitsandbytes optimizer (optim_bits=32): its states are as large as torch's"
                if type(optimizer).__module__.startswith("bitsandbytes") else type(optimizer).__name__)
        problems.append(f"return bitsandbytes' 8-bit AdamW (bnb.optim.AdamW8bit), not {kind}")
        return problems
    if type(optimizer).__name__ not in ("AdamW8bit", "PagedAdamW8bit"):
        problems.append(f"{type(optimizer).__name__} is not AdamW: use bnb.optim.AdamW8bit (decoupled weight decay)")
    lrs = sorted({g["lr"] for g in optimizer.param_groups})
    if lrs != [1e-3]:
        problems.append(f"use the learning rate you were given: add_memory_savers(model, 1e-3) made an optimizer "
                        f"with lr {lrs if len(lrs) > 1 else lrs[0]}")
    covered = {id(p) for g in optimizer.param_groups for p in g["params"]}
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in covered]
    if missing:
        problems.append(f"{len(missing)} trainable parameter(s) are not in the optimizer (first: {missing[0]})")
    return problems


def validation_loss_problems(validation_loss) -> list[str]:
    """``validation_loss(model, batches) -> (loss per supervised token, perplexity)``."""
    # A wide initialisation makes the batches' mean losses differ by about a nat (at GPT-2's 0.02 every token costs
    # ≈ ln 50257 and any weighting gives nearly the same number): a wrong weighting then shows plainly.
    model = tiny_model(replace(TINY_GPT2, n_layer=1, n_embd=32), initializer_range=0.5)
    g = torch.Generator().manual_seed(1)
    batches = []
    for n_batch, length, supervised in [(2, 24, 20), (3, 16, 2), (1, 8, 5)]:   # very different token counts
        ids = torch.randint(0, 50257, (n_batch, length), generator=g)
        labels = ids.clone()
        labels[:, : length - supervised] = IGNORE_INDEX
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    model.train()
    got, problem = attempt(validation_loss, model, batches)
    if problem and "OverflowError" in problem:
        return [f"{problem} — exp(loss) overflows only for a loss in the hundreds: is yours a sum of token losses "
                "rather than the mean per supervised token?"]
    if problem:
        return [problem]
    expected = evaluate(model, batches, pick_device_and_precision("cpu"))
    try:
        loss, ppl = float(got[0]), float(got[1])
    except (TypeError, IndexError, ValueError, RuntimeError):
        return [f"return a pair (loss, perplexity), not {got!r}"]
    problems = []
    if any(isinstance(x, torch.Tensor) and x.requires_grad for x in got[:2]):
        problems.append("your loss still carries the autograd graph: evaluate under torch.no_grad() (nothing is "
                        "trained here, and the graph holds every activation) and return plain floats")
    if abs(loss - expected) > 1e-4:
        problems.append(_validation_loss_mistake(validation_loss, model, batches, loss, expected))
    if loss < 700 and abs(ppl - math.exp(loss)) > 1e-3 * math.exp(loss):    # (exp overflows above ≈ 709)
        why = (" — that is 2^loss; the loss is in nats (natural log), so its perplexity is e^loss"
               if abs(ppl - 2 ** loss) < 1e-3 * 2 ** loss else "")
        problems.append(f"perplexity is exp(loss): exp({loss:.4f}) = {math.exp(loss):.3f}, you returned {ppl:.3f}{why}")
    return problems


def _validation_loss_mistake(validation_loss, model, batches, loss: float, expected: float) -> str:
    """What the wrong ``loss`` most likely comes from: each candidate recomputes one likely slip (dropout off)."""
    model.eval()
    means, sums, n_sup, n_all, n_seq, sums_all, n_mask = [], [], [], [], [], [], []
    with torch.no_grad():
        for b in batches:
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            sums.append(float(masked_nll(logits, b["labels"], reduction="sum")))
            n_sup.append(n_targets(b["labels"]))
            means.append(sums[-1] / n_sup[-1])
            sums_all.append(float(masked_nll(logits, b["input_ids"], reduction="sum")))
            n_all.append(n_targets(b["input_ids"]))
            n_seq.append(len(b["input_ids"]))
            n_mask.append(int(b["attention_mask"].sum()))
    candidates = [
        (sum(means) / len(means),
         f"your loss {loss:.4f} is the mean of the batch means; weight each batch by its supervised tokens (sum of "
         f"token losses / all tokens) to get {expected:.4f}"),
        (sum(m * k for m, k in zip(means, n_seq)) / sum(n_seq),
         f"your loss {loss:.4f} weights each batch by its number of sequences; weight by supervised tokens (sum of "
         f"token losses / all supervised tokens) to get {expected:.4f}"),
        (sum(sums) / sum(n_all),
         f"your loss {loss:.4f} divides by every token, not by the supervised ones: count only positions whose label "
         f"is not −100 (they get {expected:.4f})"),
        (sum(sums) / sum(n_mask),
         f"your loss {loss:.4f} divides by every token of the attention mask, not by the supervised ones: count only "
         f"the positions whose label is not −100 (they get {expected:.4f})"),
        (sum(sums_all) / sum(n_all),
         f"your loss {loss:.4f} includes the positions labelled −100 (the prompt): score only the supervised tokens, "
         f"pass the labels, not the input ids ({expected:.4f})"),
        (sum(sums), f"your loss {loss:.4f} is the sum of the token losses; divide by the number of supervised tokens "
                    f"({expected:.4f})"),
        (sum(means), f"your loss {loss:.4f} is the sum of the batch means; divide the token losses' sum by the number "
                     f"of supervised tokens ({expected:.4f})"),
    ]
    for value, why in candidates:
        if abs(loss - value) < 1e-4:
            return why
    model.train()                                    # as the learner's function found it
    with torch.random.fork_rng(devices=[]):          # the learner's random state stays as it was
        again, _ = attempt(validation_loss, model, batches)
    try:
        again = float(again[0])
    except (TypeError, IndexError, ValueError, RuntimeError):
        again = loss
    model.eval()
    if abs(again - loss) > 1e-6:
        return (f"your loss {loss:.4f} changes from call to call ({again:.4f} the next time): dropout is on — call "
                f"model.eval() first (then it is {expected:.4f}; dropout is for training only)")
    return (f"your loss {loss:.4f} differs from the loss per supervised token {expected:.4f} (by {loss - expected:+.4f}); "
            "use model.eval(), sum the token losses of every batch (labels −100 ignored) and divide by the number of "
            "supervised tokens")


def save_reload_problems(save_and_reload, tmp_dir) -> list[str]:
    """``save_and_reload(peft_model, directory, make_base) -> reloaded model`` with the same logits."""
    from peft import LoraConfig, get_peft_model     # lazily, as in lora_config_problems
    make_base = tiny_model

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
    reloaded, problem = attempt(save_and_reload, model, directory, make_base)
    if problem:
        return [problem]
    problems = []
    files = sorted(p.name for p in directory.glob("*")) if directory.exists() else []
    if "adapter_model.safetensors" not in files:
        whole = (" — model.safetensors is the whole model (merged or the base's own save_pretrained): save only the "
                 "adapters, with the PeftModel's save_pretrained" if any(f.startswith("model") and
                                                                          f.endswith(".safetensors") for f in files)
                 else "")
        problems.append(f"{directory} should hold adapter_model.safetensors (model.save_pretrained writes it); "
                        f"found {files or 'nothing'}{whole}")
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
        with torch.no_grad():
            bare = make_base().eval()(input_ids=x).logits
        why = ""
        if float((after - bare).abs().max()) <= 1e-5:
            from peft import PeftModel
            why = (" — its adapters are new ones, not the saved ones (get_peft_model makes fresh adapters whose B = 0 "
                   "changes nothing)" if isinstance(reloaded, PeftModel) else " — it is the base model without the "
                   "adapters")
        problems.append(f"the reloaded model's logits differ by up to {diff:.3g}{why}: load the adapter onto a fresh "
                        "base model with PeftModel.from_pretrained(make_base(), directory)")
    return problems


def check_param_count(count_params) -> bool:
    """Print feedback on notebook 05's parameter count (GPT-2 small, medium, Large and the tiny model); True when right."""
    return verdict(param_count_problems, count_params,
                   success="✅ Your count matches sum(p.numel()) for GPT-2 small, medium, Large and the tiny model.")


def check_static_memory(static_memory) -> bool:
    """Print feedback on notebook 05's static memory (weights, gradients, optimizer states in bytes); True when right."""
    return verdict(static_memory_problems, static_memory,
                   success="✅ Weights, gradients and optimizer states agree with utils.memory for all four configurations.")


def check_precision_choice(choose_precision) -> bool:
    """Print feedback on notebook 05's precision choice per GPU (fp32 / fp16 / bf16); True when right."""
    return verdict(precision_choice_problems, choose_precision,
                   success="✅ fp32 on CPU, fp16 mixed precision below compute capability 8 (T4), bf16 from 8 on.")


def check_lora_config(make_lora_config) -> bool:
    """Print feedback on notebook 05's LoRA config for GPT-2's Conv1D layers; True when right."""
    return verdict(lora_config_problems, make_lora_config,
                   success=f"✅ LoRA on c_attn, c_proj, c_fc with fan_in_fan_out=True. GPT-2 Large at r=16 trains "
                   f"{GPT2_LARGE.lora_params(16):,} parameters ({GPT2_LARGE.lora_params(16) / GPT2_LARGE.n_params:.2%}).")


def check_memory_savers(add_memory_savers) -> bool:
    """Print feedback on notebook 05's memory savers (gradient checkpointing, 8-bit AdamW); True when right."""
    return verdict(memory_savers_problems, add_memory_savers,
                   success="✅ Gradient checkpointing on, the cache off, and 8-bit AdamW over every trainable parameter.")


def check_validation_loss(validation_loss) -> bool:
    """Print feedback on notebook 05's validation loss (per supervised token) and perplexity; True when right."""
    return verdict(validation_loss_problems, validation_loss,
                   success="✅ Loss per supervised token over all batches, and its perplexity.")


def check_save_reload(save_and_reload, tmp_dir) -> bool:
    """Print feedback on notebook 05's adapter save and reload (safetensors, identical logits); True when right."""
    return verdict(save_reload_problems, save_and_reload, tmp_dir,
                   success="✅ Adapters saved as safetensors and reloaded onto a fresh base model: identical logits.")



# =========================================================================== references (used only for a skipped stub)
def count_params_reference(n_layer: int, n_embd: int, vocab_size: int = 50257, n_positions: int = 1024) -> int:
    """Exercise 1's answer: GPT-2's parameter count (``utils.memory.ModelShape.n_params``; heads do not matter)."""
    return ModelShape(n_layer, n_embd, 1, vocab_size, n_positions).n_params


#: Exercise 2's answer: fp32 weights, gradients and optimizer states in bytes.
static_memory_reference = static_bytes


def lora_config_reference(r: int):
    """Exercise 4's answer: LoRA on GPT-2's Conv1D layers (α = 2r, dropout 0.05)."""
    from peft import LoraConfig
    return LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.05, target_modules=["c_attn", "c_proj", "c_fc"],
                      fan_in_fan_out=True, task_type="CAUSAL_LM")


def add_memory_savers_reference(model, lr: float):
    """Exercise 5's answer: checkpointing on, the cache off, 8-bit AdamW over the trainable parameters."""
    from bitsandbytes.optim import AdamW8bit
    model.gradient_checkpointing_enable()
    model.config.use_cache = False
    return AdamW8bit([p for p in model.parameters() if p.requires_grad], lr=lr)


def validation_loss_reference(model, batches) -> tuple[float, float]:
    """Exercise 6's answer: ``utils.training.evaluate`` (loss per supervised token) and its perplexity."""
    loss = evaluate(model, batches, pick_device_and_precision(next(model.parameters()).device))
    return loss, math.exp(loss)


def save_and_reload_reference(model, directory, make_base):
    """Exercise 7's answer: save the adapters (safetensors), load them onto a fresh base model."""
    from peft import PeftModel
    model.save_pretrained(directory)
    return PeftModel.from_pretrained(make_base(), directory)


# =========================================================================== predict, then measure
MEMORY_TOLERANCE = 0.05            # a right prediction is within 5 % of the reference (and of the measurement)
PREDICTION_CASES = [("the tiny model, 2 sequences × 128 tokens", TINY_GPT2, 2, 128),
                    ("GPT-2 Large, 1 × 128 tokens", GPT2_LARGE, 1, 128),
                    ("GPT-2 Large, 4 × 512 tokens", GPT2_LARGE, 4, 512)]


def forward_end_parts(shape: ModelShape, batch_size: int, seq_len: int) -> dict[str, int]:
    """Bytes alive at the end of the forward pass of a steady-state training step: fp32 weights, 8-bit AdamW's
    m and v (2 bytes per parameter; they exist from the first step on), the activations autograd saved (fp32, CPU
    kernels: ``utils.memory.activation_memory``) — and no gradients (``zero_grad(set_to_none=True)`` freed them)."""
    return {"weights": 4 * shape.n_params, "optimizer": 2 * shape.n_params,
            "activations": activation_memory(shape, seq_len=seq_len, batch_size=batch_size)}


def _likely_mistakes(shape: ModelShape, B: int, S: int) -> list[tuple[str, float]]:
    """(what went wrong, the GiB that mistake gives) for the wrong predictions learners make most."""
    parts = forward_end_parts(shape, B, S)
    N, L, d, a, V = shape.n_params, shape.n_layer, shape.n_embd, shape.n_head, shape.vocab_size
    W, O, A = parts["weights"], parts["optimizer"], parts["activations"]
    log_probs, scores = 4 * B * S * V, L * 12 * B * a * S * S
    one_block = A - (L - 1) * (120 * B * S * d + 12 * B * a * S * S + 16 * B * S)
    right = W + O + A
    g = 2 ** 30
    return [
        ("you left out the optimizer state: 8-bit AdamW keeps m and v in 8 bits each, 2 bytes per parameter", (W + A) / g),
        ("you counted fp16 weights (2 bytes each); this model trains in fp32 — 4 bytes per weight "
         "(mixed precision also keeps fp32 master weights)", (2 * N + O + A) / g),
        ("you added the gradients (4 bytes per parameter): at the end of the forward pass there are none — "
         "zero_grad(set_to_none=True) freed the last step's, and backward has not made new ones yet", (right + 4 * N) / g),
        ("you counted AdamW's fp32 moments (8 bytes per parameter); 8-bit AdamW stores 2", (W + 8 * N + A) / g),
        ("you left out the activations — what autograd saves for backward (section 2: 120·B·S·d + 12·B·a·S² per "
         "block, plus the log-probabilities)", (W + O) / g),
        ("you left out the loss's log-probabilities, 4·B·S·V bytes — with a 50,257-token vocabulary often the "
         "largest single activation", (right - log_probs) / g),
        ("you left out the attention probabilities' 12·B·a·S² per block (the S² term)", (right - scores) / g),
        ("you counted the activations of one block; there are n_layer of them", (W + O + one_block) / g),
        ("you counted the activations in 2 bytes; this run is fp32 (no autocast): 4 bytes each", (W + O + A / 2) / g),
        ("you computed the activations for one sequence; the batch has B of them",
         (W + O + activation_memory(shape, seq_len=S, batch_size=1)) / g if B > 1 else float("nan")),
        ("you divided by 10⁹ (GB); a GiB is 2³⁰ = 1,073,741,824 bytes", right / 1e9),
        ("return GiB, not bytes", float(right)),
        ("return GiB, not MiB", right / 2 ** 20),
    ]


def diagnose_memory(got: float, shape: ModelShape, B: int, S: int) -> str:
    """The likely mistake behind a prediction of ``got`` GiB, or a generic pointer when none fits."""
    parts = forward_end_parts(shape, B, S)
    fits = [why for why, v in _likely_mistakes(shape, B, S) if v == v and v > 0 and abs(got / v - 1) < 0.015]
    if fits:                                   # some slips give the same number (no optimizer state = fp16 weights)
        return "; or ".join(fits)
    return ("no single slip explains it; add up the parts one by one (weights, optimizer state, activations; the "
            f"right ones here are {', '.join(f'{k} {_gib(v)}' for k, v in parts.items())})")


def memory_prediction_problems(predict_memory, measured: dict | None = None) -> list[str]:
    """``predict_memory(shape, batch_size, seq_len) -> GiB`` alive at the end of a training step's forward pass
    (fp32 weights, 8-bit AdamW, no checkpointing, no gradients yet).

    Without ``measured``: compared with :func:`forward_end_parts` on :data:`PREDICTION_CASES`. With
    ``measured = {"shape", "batch_size", "seq_len", "bytes"}`` (what the notebook measured): compared with that."""
    if measured is not None:
        cases = [(f"this notebook's measurement ({measured['batch_size']} × {measured['seq_len']} tokens)",
                  measured["shape"], measured["batch_size"], measured["seq_len"], measured["bytes"] / 2 ** 30)]
    else:
        cases = [(name, shape, B, S, sum(forward_end_parts(shape, B, S).values()) / 2 ** 30)
                 for name, shape, B, S in PREDICTION_CASES]
    problems = []
    for name, shape, B, S, expected in cases:
        got, problem = attempt(predict_memory, shape, B, S)
        if problem:
            return [problem]
        try:
            got = float(got)
        except (TypeError, ValueError):
            return [f"return one number, the GiB, not {type(got).__name__}"]
        if not math.isfinite(got) or abs(got / expected - 1) > MEMORY_TOLERANCE:
            problems.append(f"{name}: you predicted {got:.4g} GiB, {'measured' if measured else 'expected'} "
                            f"{expected:.4g} GiB (tolerance ±{MEMORY_TOLERANCE:.0%}) — {diagnose_memory(got, shape, B, S)}")
    return problems


def check_memory_prediction(predict_memory, measured: dict | None = None) -> bool:
    """Print feedback on notebook 05's memory prediction (against the formula, or against ``measured``); True when right."""
    if measured is None:
        success = ("✅ Weights, 8-bit AdamW's state and the activations: your predictions agree with the formula for "
                   "the tiny model and GPT-2 Large. The notebook measures one below.")
    else:
        def success():
            got = float(predict_memory(measured["shape"], measured["batch_size"], measured["seq_len"]))
            return (f"✅ Predicted {got:.4g} GiB, measured {measured['bytes'] / 2**30:.4g} GiB "
                    f"({got / (measured['bytes'] / 2**30) - 1:+.1%}; tolerance ±{MEMORY_TOLERANCE:.0%}).")
    return verdict(memory_prediction_problems, predict_memory, measured, success=success)
