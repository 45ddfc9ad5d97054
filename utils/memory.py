"""Memory of a training step: parameter counts, the static part of the budget, and a measurer.

``N`` = parameters, ``N_t`` = trainable parameters. The static part of a step's memory, which
does not depend on the batch:

=================  ==========================================================================
weights            4·N bytes (fp32 master weights; + 4·N_t for LoRA adapters)
gradients          4·N_t
optimizer states   AdamW 8·N_t (m and v in fp32), 8-bit AdamW 2·N_t, SGD 0
=================  ==========================================================================

Activations and logits come on top and grow with batch × sequence length (and the attention
scores with its square). :func:`predict_training_memory` adds everything up for one step;
``tests/benchmarks/bench_gpt2_large_memory.py`` measures the ground truth it must match.
"""
from __future__ import annotations

import contextlib
import resource
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ModelShape:
    n_layer: int
    n_embd: int
    n_head: int
    vocab_size: int = 50257
    n_positions: int = 1024

    @property
    def n_params(self) -> int:
        """GPT-2 parameter count: embeddings + L·(12d² + 13d) + final LayerNorm (LM head tied)."""
        d = self.n_embd
        return self.vocab_size * d + self.n_positions * d + self.n_layer * (12 * d * d + 13 * d) + 2 * d

    def lora_params(self, r: int) -> int:
        """LoRA on c_attn (d→3d), attn c_proj (d→d), c_fc (d→4d), mlp c_proj (4d→d): r·(in+out) each."""
        d = self.n_embd
        return self.n_layer * r * ((d + 3 * d) + (d + d) + (d + 4 * d) + (4 * d + d))


GPT2_SMALL = ModelShape(12, 768, 12)
GPT2_MEDIUM = ModelShape(24, 1024, 16)
GPT2_LARGE = ModelShape(36, 1280, 20)

OPTIMIZER_BYTES = {"adamw": 8, "adamw8bit": 2, "sgd": 0}   # state bytes per trainable parameter
PRECISIONS = ("fp32", "fp16", "bf16")                       # fp16/bf16 = autocast, fp32 master weights


def static_training_memory(config: ModelShape, optimizer: str = "adamw", lora_r: int | None = None) -> dict[str, int]:
    """Weights, gradients and optimizer states in bytes (the table above), and their ``total``."""
    if optimizer not in OPTIMIZER_BYTES:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZER_BYTES)}, not {optimizer!r}")
    n = config.n_params
    n_train = config.lora_params(lora_r) if lora_r else n
    parts = {"weights": 4 * n + (4 * n_train if lora_r else 0), "gradients": 4 * n_train,
             "optimizer": OPTIMIZER_BYTES[optimizer] * n_train}
    return {**parts, "total": sum(parts.values())}


# ---------------------------------------------------------------------------------------------
# The predictor
# ---------------------------------------------------------------------------------------------
# Activations: the tensors autograd saves for the backward pass, counted tensor by tensor with
# torch.autograd.graph.saved_tensors_hooks on transformers' GPT-2 (tests/test_memory.py counts
# them again and must agree to the byte). Per block, with B = batch, S = seq_len, d = n_embd,
# a = n_head, r = LoRA rank (bytes):
#
#   fp32                      120·B·S·d + 12·B·a·S² + 16·B·S
#   fp16 autocast              70·B·S·d + 12·B·a·S² +  8·B·S + 24·d² + 8·d   (fp16 copies of the weights)
#   LoRA adds                  16·r·B·S            (the r-wide output of each of the four lora_A)
#   gradient checkpointing     4·B·S·d             (only the block's input; the rest is recomputed)
#
# 120·B·S·d is thirty fp32 tensors of shape (B, S, d): layer-norm inputs, the q/k/v projections,
# the MLP's 4d-wide hidden state and the intermediates of GPT-2's tanh-GELU, dropout masks.
# 12·B·a·S² is three (B, a, S, S) tensors of the attention: its probabilities before and after
# dropout, and the dropout mask — the S² term that makes long sequences expensive.
# Outside the blocks: the embeddings (12·B·S·d fp32, 10·B·S·d + 2·V·d under autocast; nothing
# when they are frozen), and the loss's log-softmax, 4·B·S·V, the largest single tensor of all.
#
# The peak of a training step (steady state: optimizer states exist from the first step on):
#
#   peak = runtime + weights + optimizer + max(activations + logits + first gradients,   # start of backward
#                                              gradients + optimizer_step)               # optimizer.step()
#
# logits = the logits and their gradient, alive together when backward starts: 2·4·B·S·V (fp32) or
# (2 + 4)·B·S·V (fp16 logits, fp32 gradient of the up-cast); first gradients = the tied embedding's
# gradient, the first one backward writes (4·V·d, 0 when frozen). optimizer_step = the update's
# temporaries, which differ by device:
#   CUDA  AdamW: torch's foreach update computes √v for every tensor at once: 4·N_t.
#         8-bit AdamW: bitsandbytes' fused kernel updates in place: 0.
#   CPU   AdamW: one tensor at a time, √v and its scaled copy: 8·n_max (n_max = the largest trainable
#         tensor, the 50257×d embedding in full fine-tuning).
#         8-bit AdamW: bitsandbytes' CPU kernel dequantizes m and v of one tensor to fp32 and makes
#         three more fp32 temporaries: 20·n_max.
# runtime = what the process holds before the model exists: CUDA's context (not counted by
# max_memory_allocated) or, on a CPU, the interpreter and libraries.
#
# Attention here is PyTorch's math path, the one GPT-2 takes with attention dropout on a CPU.
# On a GPU, scaled_dot_product_attention may pick a fused kernel that never stores the S×S
# tensors, so there the prediction is an upper bound.


def activation_memory(config: ModelShape, *, seq_len: int, batch_size: int = 1, precision: str = "fp32",
                      lora_r: int | None = None, grad_checkpointing: bool = False) -> int:
    """Bytes autograd saves for backward during one forward pass (the table above)."""
    B, S, d, a, V, L = batch_size, seq_len, config.n_embd, config.n_head, config.vocab_size, config.n_layer
    amp = precision != "fp32"
    if grad_checkpointing:
        block = 4 * B * S * d                        # the block's input; the rest is recomputed in backward
        weight_copies = 0                            # ... and so are the fp16 copies of its weights
    elif amp:
        block = 70 * B * S * d + 12 * B * a * S * S + 8 * B * S
        weight_copies = 24 * d * d + 8 * d
    else:
        block = 120 * B * S * d + 12 * B * a * S * S + 16 * B * S
        weight_copies = 0
    if lora_r and not grad_checkpointing:
        block += 16 * lora_r * B * S
    if lora_r:                                       # frozen embeddings save nothing ...
        embeddings = 8 * B * S * d if grad_checkpointing else 0   # ... but the first checkpoint keeps its input
    else:
        embeddings = 10 * B * S * d if amp else 12 * B * S * d
    head_copy = 2 * V * d if amp else 0              # the fp16 copy of the tied embedding used as LM head
    log_softmax = 4 * B * S * V                      # the loss's log-probabilities, always fp32
    return L * (block + weight_copies) + embeddings + head_copy + log_softmax


def one_block_memory(config: ModelShape, *, seq_len: int, batch_size: int = 1, precision: str = "fp32",
                     lora_r: int | None = None) -> int:
    """Activations of a single block: what gradient checkpointing recomputes at a time in backward."""
    one = ModelShape(1, config.n_embd, config.n_head, config.vocab_size, config.n_positions)
    full = activation_memory(one, seq_len=seq_len, batch_size=batch_size, precision=precision, lora_r=lora_r)
    outside = activation_memory(ModelShape(0, config.n_embd, config.n_head, config.vocab_size, config.n_positions),
                                seq_len=seq_len, batch_size=batch_size, precision=precision, lora_r=lora_r)
    return full - outside


def predict_training_memory(config: ModelShape, *, seq_len: int, batch_size: int = 1, optimizer: str = "adamw",
                            precision: str = "fp32", lora: int | None = None, grad_checkpointing: bool = False,
                            device: str = "cuda", runtime: int = 0) -> dict[str, int]:
    """Predicted peak memory of a training step, in bytes, part by part.

    ``lora`` is the LoRA rank on ``c_attn, c_proj, c_fc`` (None = full fine-tuning), ``device``
    ``"cuda"`` or ``"cpu"`` (the optimizers' temporaries differ), ``runtime`` what the process
    holds before the model exists (see the formulas above). Returns ``weights,
    gradients, optimizer, activations, logits, runtime`` and ``total`` (the peak, which is not
    their plain sum: activations are gone by the time ``optimizer.step()`` runs).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    static = static_training_memory(config, optimizer, lora)
    B, S, V, d = batch_size, seq_len, config.vocab_size, config.n_embd
    acts = activation_memory(config, seq_len=S, batch_size=B, precision=precision, lora_r=lora,
                             grad_checkpointing=grad_checkpointing)
    if grad_checkpointing:
        acts += one_block_memory(config, seq_len=S, batch_size=B, precision=precision, lora_r=lora)
    logits = (2 + 4) * B * S * V if precision != "fp32" else 2 * 4 * B * S * V
    first_gradients = 0 if lora else 4 * V * d
    if device not in ("cuda", "cpu"):
        raise ValueError(f"device must be 'cuda' or 'cpu', not {device!r}")
    trainable = config.lora_params(lora) if lora else config.n_params
    largest = lora * 4 * d if lora else V * d       # lora_A of c_fc's output side / the embedding
    optimizer_step = {("cuda", "adamw"): 4 * trainable, ("cuda", "adamw8bit"): 0,
                      ("cpu", "adamw"): 8 * largest, ("cpu", "adamw8bit"): 20 * largest}.get((device, optimizer), 0)
    backward_start = acts + logits + first_gradients
    step = static["gradients"] + optimizer_step
    total = runtime + static["weights"] + static["optimizer"] + max(backward_start, step)
    return {"weights": static["weights"], "gradients": static["gradients"], "optimizer": static["optimizer"],
            "activations": acts, "logits": logits, "runtime": runtime, "total": total}


def measure_peak_memory(fn: Callable[[], object], device: str = "cpu") -> int:
    """Run ``fn`` and return the peak memory in bytes.

    CUDA: ``torch.cuda.max_memory_allocated`` over the call (tensors only, after a reset).
    CPU: the process's peak resident set size so far — run each measurement in a fresh process.
    """
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated())
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024     # Linux reports KiB


def saved_tensor_bytes(model: torch.nn.Module, autocast: contextlib.AbstractContextManager | None = None,
                       **inputs) -> int:
    """Bytes of the tensors autograd saves for backward in one ``model(**inputs)`` call.

    Each saved tensor's storage is counted once; the parameters themselves are not counted (they
    exist anyway). This is the "activations" line of the budget, measured exactly on any device.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), (autocast or contextlib.nullcontext()):
        model(**inputs)
    return sum(n for ptr, n in saved.items() if ptr not in params)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held in the optimizer's state tensors (after at least one step: states are created lazily)."""
    return sum(v.numel() * v.element_size() for state in optimizer.state.values()
               for v in state.values() if torch.is_tensor(v))


class MemoryBudgetError(RuntimeError):
    """A configuration is predicted not to fit in the memory available."""


def available_memory(device: str | torch.device) -> int | None:
    """Free bytes on a CUDA device (after CUDA's own context), None elsewhere (no hard limit we can read)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def require_fits(prediction: dict[str, int], available: int | None, what: str = "this configuration",
                 margin: float = 0.9) -> None:
    """Raise :class:`MemoryBudgetError` if ``prediction["total"]`` exceeds ``margin`` × ``available``.

    The margin leaves room for the allocator's fragmentation and what the prediction leaves out.
    ``available=None`` (a CPU) always passes.
    """
    if available is None:
        return
    need, have = prediction["total"], margin * available
    if need > have:
        parts = ", ".join(f"{k} {v / 2**30:.2f}" for k, v in prediction.items() if k != "total" and v)
        raise MemoryBudgetError(
            f"{what} is predicted to need {need / 2**30:.2f} GiB at its peak ({parts} GiB), but only "
            f"{have / 2**30:.2f} GiB can be used ({margin:.0%} of {available / 2**30:.2f} GiB free). "
            "Use 8-bit AdamW, gradient checkpointing, LoRA or shorter sequences (section 2's table).")
