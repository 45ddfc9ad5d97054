"""Memory of a training step: parameter counts, the static part of the budget, and a measurer.

``N`` = parameters, ``N_t`` = trainable parameters. The static part of a step's memory, which
does not depend on the batch:

=================  ==========================================================================
weights            4·N bytes (fp32 master weights; + 4·N_t for LoRA adapters)
gradients          4·N_t
optimizer states   AdamW 8·N_t (m and v in fp32), 8-bit AdamW 2·N_t, SGD 0
=================  ==========================================================================

Activations and logits come on top and grow with batch × sequence length (and, on a CPU, the
attention scores with its square). Under fp16/bf16 autocast, torch also keeps an fp16 copy of
every trainable weight it has cast until the autocast block exits (2 bytes per parameter, which
gradient checkpointing does not save), and with gradient accumulation the first micro-batch's
gradients stay alive through the next one. :func:`predict_training_memory` adds everything up
for one step of ``utils.training.train`` — on a CPU (measured) or a T4-class GPU (the formulas
with the CUDA kernels' documented behaviour: memory-efficient attention, bool dropout masks,
CUDA's autocast op lists); ``tests/benchmarks/bench_gpt2_large_memory.py`` measures the ground
truth it must match. :func:`available_memory` says what a CUDA device can still give (the
driver's free memory plus what PyTorch's caching allocator holds unused) and
:func:`require_fits` compares the two.

Introduced in notebook 05 (the GPT-2 Large budget); notebook 06 measures saved tensors with it.
"""
from __future__ import annotations

import contextlib
import resource
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import GPT2Config


@dataclass(frozen=True)
class ModelShape:
    """A GPT-2 architecture in five numbers: what memory and FLOPs depend on, and what builds its config."""

    n_layer: int
    n_embd: int
    n_head: int
    vocab_size: int = 50257
    n_positions: int = 1024

    def gpt2_config(self, **overrides) -> GPT2Config:
        """The transformers ``GPT2Config`` of this shape; ``overrides`` add or replace fields (token ids, dropout...)."""
        values = dict(n_layer=self.n_layer, n_embd=self.n_embd, n_head=self.n_head, vocab_size=self.vocab_size,
                      n_positions=self.n_positions)
        return GPT2Config(**{**values, **overrides})

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


def static_bytes(n_params: int, optimizer: str = "adamw", n_lora: int = 0) -> dict[str, int]:
    """Weights, gradients and optimizer states in bytes for ``n_params`` fp32 weights; with ``n_lora`` > 0 only that
    many adapter parameters (held on top of the frozen model) train."""
    if optimizer not in OPTIMIZER_BYTES:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZER_BYTES)}, not {optimizer!r}")
    n_train = n_lora or n_params
    return {"weights": 4 * (n_params + n_lora), "gradients": 4 * n_train, "optimizer": OPTIMIZER_BYTES[optimizer] * n_train}


def static_training_memory(config: ModelShape, optimizer: str = "adamw", lora_r: int | None = None) -> dict[str, int]:
    """Weights, gradients and optimizer states in bytes (the table above), and their ``total``."""
    parts = static_bytes(config.n_params, optimizer, config.lora_params(lora_r) if lora_r else 0)
    return {**parts, "total": sum(parts.values())}


# ---------------------------------------------------------------------------------------------
# The predictor
# ---------------------------------------------------------------------------------------------
# Activations: the tensors autograd saves for the backward pass, counted tensor by tensor with
# torch.autograd.graph.saved_tensors_hooks on transformers' GPT-2 (tests/test_memory.py counts
# them again on a CPU and must agree to the byte). Per block, with B = batch, S = seq_len,
# d = n_embd, a = n_head, r = LoRA rank (bytes):
#
#   device="cpu"  fp32            120·B·S·d + 12·B·a·S² + 16·B·S
#                 fp16 autocast    70·B·S·d + 12·B·a·S² +  8·B·S + 24·d² + 8·d   (fp16 copies of the weights)
#   device="cuda" fp32            114·B·S·d + 4·B·a·S + 16·B·S (+ 4·B·S² with padding)
#                 fp16 autocast    86·B·S·d + 4·B·a·S + 16·B·S + 24·d² (+ 2·B·S² with padding)
#   LoRA adds                      16·r·B·S            (the r-wide output of each of the four lora_A)
#   gradient checkpointing         4·B·S·d             (only the block's input; the rest is recomputed)
#
# CPU, fp32: 120·B·S·d is thirty fp32 tensors of shape (B, S, d): the two layer-norm inputs, the
# inputs of the four Conv1D (the MLP's is 4d wide), q, k, v (copies the math path of
# scaled_dot_product_attention makes), four 4d-wide intermediates of GPT-2's tanh-GELU and two
# dropout masks (a CPU dropout keeps its mask as a float tensor of the input's dtype).
# 12·B·a·S² is three (B, a, S, S) fp32 tensors of the attention: its probabilities before and
# after dropout, and the dropout mask — the S² term that makes long sequences expensive. GPT-2 in
# transformers 5 always calls scaled_dot_product_attention (attn_implementation "sdpa" is the
# default and GPT-2 supports it; it falls back to "eager" only when asked to), and PyTorch picks
# the kernel: on a CPU its flash kernel does not take dropout, so training runs the math path
# above; under CPU autocast that path computes in fp32 and the LM head's input, the Conv1D
# inputs and the GELU are fp16, the layer norms and the residual stream stay fp32.
#
# CUDA (a T4: compute capability 7.5; assumptions, not measured here — the course has no GPU):
# * attention: flash attention needs compute capability ≥ 8, so SDPA takes the memory-efficient
#   kernel (it takes dropout and a mask). It stores no S×S tensor: it keeps q, k, v (views of
#   c_attn's output, 3·B·S·d elements), its output (which c_proj then saves, the same storage)
#   and a logsumexp, B·a·S fp32 (S rounded up to 32). Dropout inside the kernel is regenerated
#   from the RNG seed in backward. With padding (B > 1), the boolean mask is turned into an
#   additive (B, 1, S, S) bias in the compute dtype per call, which the kernel keeps: 4·B·S² or
#   2·B·S² per block (a single sequence has no padding, and transformers then passes no mask).
# * dropout: CUDA's fused dropout (at::native_dropout) keeps a bool mask, 1 byte per element
#   (two per block, after the attention's and the MLP's c_proj; one after the embeddings).
# * fp16 autocast (CUDA's op lists, aten/src/ATen/autocast_mode.h): layer_norm, pow, softmax and
#   log_softmax run in fp32. GPT-2's GELU is 0.5·x·(1 + tanh(√(2/π)(x + 0.044715·x³))) with
#   torch.pow, so from the fp16 c_fc output on it becomes fp32: it saves the fp32 copy of x
#   (16·B·S·d), tanh's output (16), 0.5·x in fp16 (8) and 1 + tanh (16), and c_proj saves an fp16
#   copy of its fp32 input (8): 56 + 8 instead of the CPU's 32 + 8.
#   fp32:  4 + 4 (layer-norm inputs) + 4 + 4 (c_fc, c_attn inputs) + 12 (q, k, v) + 4 (attention
#          output) + 64 + 16 (GELU, MLP c_proj input) + 1 + 1 (masks) = 114
#   fp16:  4 + 4 + 2 + 2 + 6 + 2 + 56 + 8 + 1 + 1 = 86
# Outside the blocks: the embeddings (CPU 12·B·S·d fp32, 10·B·S·d under autocast; CUDA 9 and 7:
# a bool mask; nothing when they are frozen), the loss's log-softmax, 4·B·S·V, the largest single
# tensor of all, and under autocast the LM head's fp16 copy of the tied embedding, 2·V·d.
#
# The peak of a training step: the course's loop (utils.training.accumulate_gradients): forward
# under autocast, the loss (log-softmax in fp32) after autocast has exited, backward per
# micro-batch, gradients accumulating in .grad; steady state (optimizer states exist from the
# first step on). It is the largest of four moments:
#
#   peak = runtime + weights + optimizer + max(
#       kept + activations − log_probs + autocast_cache + logits_out·(1 + previous),  # end of forward
#       kept + activations + logits_out + 8·B·S·V,                           # log-softmax's backward
#       kept + activations + logits_out + first_gradients,                   # the LM head's backward
#       kept + activations − log_probs − head_copy + logits_out + one_block  # last block, recomputed
#            + (first_gradients if nothing is kept),                         #   (checkpointing only)
#       gradients + optimizer_step)                                          # optimizer.step()
#
# kept = 4·N_t with gradient accumulation (grad_accum > 1): the first micro-batch's fp32
# gradients stay alive through the next micro-batch's forward and backward; 0 otherwise. So do
# the previous micro-batch's logits until the next forward returns (previous = 1 with
# accumulation: the loop's `logits` variable is only rebound then; measured on a CPU: the end of
# the second forward holds 2·B·S·V + 4·N_t more than the first's).
# logits_out = the logits, 4·B·S·V (fp32) or 2·B·S·V (fp16): the training loop holds them until
# its backward is over. 8·B·S·V = the gradients of the log-probabilities and of the fp32 logits,
# alive together with the log-probabilities while log_softmax's backward runs (measured on a CPU:
# 16·B·S·V in all in fp32, 14·B·S·V under fp16 autocast). first_gradients = the tied embedding's
# gradient, the first large one backward writes: 4·V·d (+ 2·V·d for its fp16 version under
# autocast), 0 when it is frozen. The recomputed last block replaces the log-probabilities and
# the head's weight copy, which are gone by then.
# autocast_cache: under autocast torch casts each fp32 weight that requires grad once and keeps
# the copy in a cache until the outermost autocast block exits (at::autocast::cached_cast in
# aten/src/ATen/autocast_mode.cpp; torch 2.13 does it on a CPU too — measured: leaving autocast
# frees exactly 2 bytes × the Conv1D weights and biases with checkpointing). Without
# checkpointing the weights' copies are saved for backward anyway (they are in the activations);
# with it they are not, so at the end of the forward pass the cache holds L·(24·d² + 18·d) bytes
# the activations do not count (the biases' 18·d per block always). LoRA: the adapters' copies,
# 2·N_t (the frozen weights are not cached; they are cast at every call).
# optimizer_step = the update's temporaries, which differ by device:
#   CUDA  AdamW: torch's foreach update computes √v for every tensor at once: 4·N_t.
#         8-bit AdamW: bitsandbytes' fused kernel updates in place: 0.
#   CPU   AdamW: one tensor at a time, √v and its scaled copy: 8·n_max (n_max = the largest trainable
#         tensor, the 50257×d embedding in full fine-tuning).
#         8-bit AdamW: bitsandbytes' CPU kernel dequantizes m and v of one tensor to fp32 and makes
#         three more fp32 temporaries: 20·n_max.
# (The loss scaler's unscale_ and clip_grad_norm_ work in place.)
# runtime = what the process holds before the model exists: CUDA's context (not counted by
# max_memory_allocated) or, on a CPU, the interpreter and libraries.


def activation_memory(config: ModelShape, *, seq_len: int, batch_size: int = 1, precision: str = "fp32",
                      lora_r: int | None = None, grad_checkpointing: bool = False, device: str = "cpu") -> int:
    """Bytes autograd saves for backward during one forward pass and the loss (the table above).

    ``device="cpu"`` is what tests/test_memory.py counts; ``device="cuda"`` assumes a GPU below
    compute capability 8 (a T4: memory-efficient attention, bool dropout masks, CUDA autocast).
    """
    B, S, d, a, V, L = batch_size, seq_len, config.n_embd, config.n_head, config.vocab_size, config.n_layer
    amp = precision != "fp32"
    cuda = _check_device(device) == "cuda"
    lse = 4 * B * a * (-(-S // 32) * 32)             # memory-efficient attention's logsumexp, fp32, S rounded up to 32
    padding_bias = (2 if amp else 4) * B * S * S if B > 1 else 0   # the padding mask as an additive bias, kept per block
    if grad_checkpointing:
        block = 4 * B * S * d                        # the block's input; the rest is recomputed in backward
        weight_copies = 0                            # ... and so are the fp16 copies of its weights
    elif cuda and amp:
        block = 86 * B * S * d + lse + padding_bias + 16 * B * S   # fp32 GELU and layer norms; no S×S tensors
        weight_copies = 24 * d * d                   # the fp16 copies of the four Conv1D weights (12·d² parameters)
    elif cuda:
        block = 114 * B * S * d + lse + padding_bias + 16 * B * S  # 120 − 6: two dropout masks of 1 byte, not 4
        weight_copies = 0
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
    elif cuda:                                       # a bool dropout mask + ln_f's input + the LM head's input
        embeddings = 7 * B * S * d if amp else 9 * B * S * d
    else:
        embeddings = 10 * B * S * d if amp else 12 * B * S * d
    head_copy = 2 * V * d if amp else 0              # the fp16 copy of the tied embedding used as LM head
    log_softmax = 4 * B * S * V                      # the loss's log-probabilities, always fp32
    return L * (block + weight_copies) + embeddings + head_copy + log_softmax


def one_block_memory(config: ModelShape, *, seq_len: int, batch_size: int = 1, precision: str = "fp32",
                     lora_r: int | None = None, device: str = "cpu") -> int:
    """Activations of a single block: what gradient checkpointing recomputes at a time in backward."""
    one = ModelShape(1, config.n_embd, config.n_head, config.vocab_size, config.n_positions)
    zero = ModelShape(0, config.n_embd, config.n_head, config.vocab_size, config.n_positions)
    kw = dict(seq_len=seq_len, batch_size=batch_size, precision=precision, lora_r=lora_r, device=device)
    return activation_memory(one, **kw) - activation_memory(zero, **kw)


def _check_device(device: str) -> str:
    if device not in ("cuda", "cpu"):
        raise ValueError(f"device must be 'cuda' or 'cpu', not {device!r}")
    return device


def predict_training_memory(config: ModelShape, *, seq_len: int, batch_size: int = 1, optimizer: str = "adamw",
                            precision: str = "fp32", lora: int | None = None, grad_checkpointing: bool = False,
                            device: str = "cuda", runtime: int = 0, grad_accum: int = 1) -> dict[str, int]:
    """Predicted peak memory of a training step of ``utils.training.train``, in bytes, part by part.

    ``lora`` is the LoRA rank on ``c_attn, c_proj, c_fc`` (None = full fine-tuning), ``device``
    ``"cuda"`` (a T4-class GPU: see the assumptions above) or ``"cpu"`` (activations, dropout
    masks and the optimizers' temporaries differ), ``runtime`` what the process holds before the
    model exists, ``grad_accum`` the micro-batches per optimizer step (``batch_size`` each): with
    more than one, the first micro-batch's gradients are alive during the next one's forward and
    backward (see the formulas above). Returns ``weights, gradients, optimizer, activations,
    logits, autocast_cache, runtime`` and ``total`` (the peak, which is not their plain sum:
    activations are gone by the time ``optimizer.step()`` runs, the cache by the time backward starts).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    _check_device(device)
    if int(grad_accum) != grad_accum or grad_accum < 1:
        raise ValueError(f"grad_accum must be a positive integer, not {grad_accum!r}")
    static = static_training_memory(config, optimizer, lora)
    B, S, V, d, L = batch_size, seq_len, config.vocab_size, config.n_embd, config.n_layer
    amp = precision != "fp32"
    kw = dict(seq_len=S, batch_size=B, precision=precision, lora_r=lora, device=device)
    acts = activation_memory(config, grad_checkpointing=grad_checkpointing, **kw)
    one_block = one_block_memory(config, **kw) if grad_checkpointing else 0
    log_probs = 4 * B * S * V                        # in `acts`: saved by log_softmax, released by its backward
    head_copy = 2 * V * d if amp else 0              # in `acts`: the LM head's fp16 weight, released by its backward
    logits_out = (2 if amp else 4) * B * S * V       # the logits, held by the loop until its backward is over
    grad_buffers = 8 * B * S * V                     # gradients of the log-probs and of the fp32 logits
    first_gradients = 0 if lora else (6 if amp else 4) * V * d   # the embedding's gradient (+ its fp16 version)
    trainable = static["gradients"] // 4
    kept = static["gradients"] if grad_accum > 1 else 0          # the previous micro-batches' gradients
    if not amp:
        cache = 0
    elif lora:
        cache = 2 * trainable                        # only the adapters (requires_grad leaves) are cached
    else:                                            # biases always; weights only when checkpointing drops them
        cache = L * ((24 * d * d if grad_checkpointing else 0) + 18 * d)
    largest = lora * 4 * d if lora else V * d        # lora_A of c_fc's output side / the embedding
    optimizer_step = {("cuda", "adamw"): 4 * trainable, ("cuda", "adamw8bit"): 0,
                      ("cpu", "adamw"): 8 * largest, ("cpu", "adamw8bit"): 20 * largest}.get((device, optimizer), 0)
    moments = {
        "forward end": kept + acts - log_probs + cache + logits_out * (2 if grad_accum > 1 else 1),
        "log-softmax backward": kept + acts + logits_out + grad_buffers,
        "LM head backward": kept + acts + logits_out + first_gradients,
        "optimizer step": static["gradients"] + optimizer_step,
    }
    if grad_checkpointing:
        moments["last block recomputed"] = (kept + acts - log_probs - head_copy + logits_out + one_block
                                            + (0 if kept else first_gradients))
    total = runtime + static["weights"] + static["optimizer"] + max(moments.values())
    return {"weights": static["weights"], "gradients": static["gradients"], "optimizer": static["optimizer"],
            "activations": acts + one_block, "logits": logits_out + grad_buffers, "autocast_cache": cache,
            "runtime": runtime, "total": total}


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
    """Bytes held in the optimizer's state tensors (after at least one step: states are created lazily).

    A tensor shared between parameters is counted once: bitsandbytes' 8-bit optimizers give every parameter a
    reference to the same two 256-entry quantisation maps (``qmap1``/``qmap2``), which are one allocation."""
    seen, total = set(), 0
    for state in optimizer.state.values():
        for v in state.values():
            if torch.is_tensor(v) and (key := (v.data_ptr(), v.dtype, v.numel())) not in seen:
                seen.add(key)
                total += v.numel() * v.element_size()
    return total


class MemoryBudgetError(RuntimeError):
    """A configuration is predicted not to fit in the memory available."""


def available_memory(device: str | torch.device) -> int | None:
    """Bytes a new tensor can still get on a CUDA device; None elsewhere (no hard limit we can read).

    ``torch.cuda.mem_get_info`` reports the driver's free memory, and to the driver the blocks
    PyTorch's caching allocator holds but no tensor uses (``memory_reserved - memory_allocated``:
    what a finished step leaves behind, often gigabytes) are *used*. PyTorch hands those blocks to
    the next tensors before it asks the driver for more, so they are available too::

        available = free (driver) + reserved - allocated (this process's cache)

    (Fragmentation can keep a large tensor out of a cached pool of small blocks: that is what
    :func:`require_fits`'s margin is for.)
    """
    device = torch.device(device)
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    cached_unused = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(free + cached_unused)


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
