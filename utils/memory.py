"""Memory of a training step: parameter counts, the static part of the budget, and a measurer.

``N`` = parameters, ``N_t`` = trainable parameters. The static part of a step's memory, which
does not depend on the batch:

=================  ==========================================================================
weights            4·N bytes (fp32 master weights; + 4·N_t for LoRA adapters)
gradients          4·N_t
optimizer states   AdamW 8·N_t (m and v in fp32), 8-bit AdamW 2·N_t, SGD 0
=================  ==========================================================================

Activations and logits come on top and grow with batch × sequence length (and the attention
scores with its square); how the parts add up also depends on the allocator. The full
predictor belongs to notebook 05; ``tests/benchmarks/bench_gpt2_large_memory.py`` measures
the ground truth it must match.
"""
from __future__ import annotations

import resource
from collections.abc import Callable
from dataclasses import dataclass


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

OPTIMIZER_BYTES = {"adamw": 8, "adamw8bit": 2, "sgd": 0}


def static_training_memory(config: ModelShape, optimizer: str = "adamw", lora_r: int | None = None) -> dict[str, int]:
    """Weights, gradients and optimizer states in bytes (the table above), and their ``total``."""
    if optimizer not in OPTIMIZER_BYTES:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZER_BYTES)}, not {optimizer!r}")
    n = config.n_params
    n_train = config.lora_params(lora_r) if lora_r else n
    parts = {"weights": 4 * n + (4 * n_train if lora_r else 0), "gradients": 4 * n_train,
             "optimizer": OPTIMIZER_BYTES[optimizer] * n_train}
    return {**parts, "total": sum(parts.values())}


def measure_peak_memory(fn: Callable[[], object], device: str = "cpu") -> int:
    """Run ``fn`` and return the peak memory in bytes.

    CUDA: ``torch.cuda.max_memory_allocated`` over the call (tensors only, after a reset).
    CPU: the process's peak resident set size so far — run each measurement in a fresh process.
    """
    if device == "cuda":
        import torch
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated())
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024     # Linux reports KiB
