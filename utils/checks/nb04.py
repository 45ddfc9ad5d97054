"""Notebook 04 — instruction tuning GPT-2: perplexity and the labels of a padded batch.

Each ``check_*`` prints the verdict for the learner (see :mod:`utils.checks.feedback`); each ``*_problems``
returns what is wrong, for the tests.
"""
from __future__ import annotations

import math

import torch

from ..masking import IGNORE_INDEX, build_labels, pad_collate
from .feedback import NotAttempted, require_answer, verdict


def perplexity_problems(value, loss: float) -> list[str]:
    """Problems with a learner's perplexity for a mean per-token NLL ``loss`` (natural log)."""
    require_answer(value, "replace `None` with your perplexity.")
    try:
        value = float(value)
    except (TypeError, ValueError):
        return [f"expected a number, got {type(value).__name__}"]
    expected = math.exp(loss)
    if math.isclose(value, expected, rel_tol=1e-4):
        return []
    if math.isclose(value, 2 ** loss, rel_tol=1e-4):
        return [f"you used 2**loss = {value:.4g}; the loss is in nats (natural log), so PP = e**loss = {expected:.4g}"]
    if math.isclose(value, math.exp(-loss), rel_tol=1e-4):
        return ["you used exp(-loss): that is the geometric-mean probability of a token, PP is its inverse"]
    if math.isclose(value, loss, rel_tol=1e-4):
        return ["that is the loss itself; perplexity is exp(loss)"]
    return [f"{value:.4g} is not exp({loss:.4f}) = {expected:.4g}"]


def collate_labels_problems(make_labels) -> list[str]:
    """Problems with a learner's ``make_labels(input_ids, attention_mask, prompt_lens) -> labels``.

    The batch is right-padded with EOS (= the pad id, 50256) and every sequence ends with its
    own EOS, so masking "every EOS" is wrong: only padding is.
    """
    EOS = 50256
    pairs = [([11, 12, 13], [21, 22]), ([31], [41, 42, 43, 44]), ([51, 52], [61])]
    examples = [dict(zip(("input_ids", "labels"), build_labels(p, r, EOS))) for p, r in pairs]
    batch = pad_collate(examples, pad_token_id=EOS)
    prompt_lens = [len(p) for p, _ in pairs]
    try:
        got = make_labels(batch["input_ids"].clone(), batch["attention_mask"].clone(), list(prompt_lens))
    except NotImplementedError:
        raise NotAttempted("write make_labels and run this cell again.") from None
    except Exception as err:  # noqa: BLE001
        return [f"your function raised {type(err).__name__}: {err}"]
    got = torch.as_tensor(got)
    want = batch["labels"]
    if got.shape != want.shape:
        return [f"labels should have the batch's shape {tuple(want.shape)}, got {tuple(got.shape)}"]
    problems = []
    for b, (p, r) in enumerate(pairs):
        n, eos_pos = len(p) + len(r) + 1, len(p) + len(r)
        row, ref = got[b].tolist(), want[b].tolist()
        if any(row[t] != IGNORE_INDEX for t in range(len(p))):
            problems.append(f"row {b}: the prompt (positions 0–{len(p) - 1}) must be -100")
        if row[eos_pos] == IGNORE_INDEX:
            problems.append(f"row {b}: the sequence's own EOS at position {eos_pos} is masked — mask padding "
                            "by the attention mask, not by the token id (pad = EOS here)")
        if any(row[t] != IGNORE_INDEX for t in range(n, len(row))):
            problems.append(f"row {b}: padding positions {n}–{len(row) - 1} must be -100")
        if row[len(p):eos_pos] != ref[len(p):eos_pos]:
            problems.append(f"row {b}: response positions {len(p)}–{eos_pos - 1} should keep their ids {ref[len(p):eos_pos]}")
    if not problems and got.tolist() != want.tolist():
        problems.append("labels differ from the expected ones; keep them aligned with input_ids (no shift)")
    return problems


def check_perplexity(value, loss: float) -> bool:
    """Print feedback on notebook 04's perplexity exercise (PP = e^loss); True when right."""
    return verdict(perplexity_problems, value, loss,
                   success=lambda: f"✅ Correct: PP = e^{loss:.4f} = {float(value):.4g}.")


def check_collate_labels(make_labels) -> bool:
    """Print feedback on notebook 04's collate exercise (prompt and padding masked, each EOS kept); True when right."""
    return verdict(collate_labels_problems, make_labels,
                   success="✅ Correct: prompt and padding masked, each sequence's own EOS kept.")
