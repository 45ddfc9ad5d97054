"""The smallest useful supervised fine-tuning loop (notebook 01).

Notebook 01 writes this loop inline first; its check cell asserts that the inline loop and
:func:`train_sft` give the same losses, step for step.
"""
from __future__ import annotations

import torch
from tqdm.auto import trange

from .env import seed_everything
from .loss import masked_nll


def train_sft(model: torch.nn.Module, batch: dict[str, torch.Tensor], *, steps: int, lr: float,
              weight_decay: float = 0.0, seed: int = 0, progress: bool = True) -> list[float]:
    """Full-batch AdamW on the masked response loss; returns the loss of every step.

    Args:
        model: a causal LM already on the batch's device; it is trained in place and left in
            eval mode.
        batch: ``input_ids``, ``attention_mask``, ``labels``, each ``(B, T)``
            (see :func:`utils.masking.pad_collate`).
        seed: seeds every RNG first (dropout), so the same call gives the same losses.
    """
    seed_everything(seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    for _ in trange(steps, desc="training", disable=not progress):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = masked_nll(logits, batch["labels"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses
