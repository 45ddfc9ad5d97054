"""Throughput of SFT batching: naive random batches vs length-grouped batches.

    python tests/benchmarks/bench_sft_throughput.py        (or: make bench)

Same model (the tiny GPT-2 on CPU; the real GPT-2 when a GPU is present), same examples (the
200-record Stanford Alpaca sample in the [BOS, I, SEP, Y, EOS] format, truncated to 256
tokens; its lengths range from 21 to over 256 tokens), each seen exactly once, so both runs train on the same supervised tokens. Measures
forward + backward time of three plans — naive random batches, length-grouped batches, and
packed rows (examples concatenated with restarting position ids, so they cannot attend to each
other) — and reports real (non-padding) tokens per second, the padding waste of each and the
ratio packed / naive. Targets: ratio >= 1.8 and waste <= 5 % for packed.
"""
from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from utils.chat import GPT2_SFT, encode_instruction  # noqa: E402
from utils.data import load_records  # noqa: E402
from utils.loss import masked_nll, n_targets  # noqa: E402
from utils.masking import (collate_packed, length_grouped_batches, pack_examples, pad_collate,  # noqa: E402
                           padding_waste, real_tokens)
from utils.models import load_gpt2_tokenizer, tiny_gpt2  # noqa: E402

BATCH, MAX_LEN, REPEATS = 8, 256, 3


def forward(model, b):
    if "position_ids" in b:   # packed: restarting position ids, no attention mask, no cache
        return model(input_ids=b["input_ids"], position_ids=b["position_ids"], use_cache=False).logits
    return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits


def run(model, batches, device) -> float:
    """Seconds for one forward + backward over every batch."""
    start = time.perf_counter()
    for b in batches:
        b = {k: v.to(device) for k, v in b.items()}
        loss = masked_nll(forward(model, b), b["labels"])
        loss.backward()
        model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> int:
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tok = load_gpt2_tokenizer()
    if device.type == "cuda":
        from transformers import GPT2LMHeadModel
        model = GPT2LMHeadModel.from_pretrained("gpt2").to(device)
    else:
        model = tiny_gpt2(tok, seed=0)
    model.train()
    records = load_records(ROOT / "data" / "realdata" / "alpaca_data.first200.json")
    examples = [encode_instruction(r, tok, GPT2_SFT) for r in records]
    lengths = [min(len(e["input_ids"]), MAX_LEN) for e in examples]

    order = list(range(len(examples)))
    random.Random(0).shuffle(order)
    plans = {
        "naive (random batches)": [pad_collate([examples[i] for i in order[k:k + BATCH]], max_length=MAX_LEN)
                                   for k in range(0, len(order), BATCH)],
        "length-grouped": [pad_collate([examples[i] for i in idx], max_length=MAX_LEN)
                           for idx in length_grouped_batches(lengths, BATCH, seed=0)],
    }
    rows = pack_examples(examples, MAX_LEN)             # rows of up to MAX_LEN tokens, examples kept apart
    per_batch = max(1, round(BATCH * sum(lengths) / len(lengths) / MAX_LEN))   # about as many tokens per batch
    plans["packed"] = [collate_packed(rows[k:k + per_batch]) for k in range(0, len(rows), per_batch)]
    results = {}
    for name, batches in plans.items():
        run(model, batches[:2], device)                                  # warm-up
        seconds = min(run(model, batches, device) for _ in range(REPEATS))
        real = sum(real_tokens(b) for b in batches)
        results[name] = dict(seconds=seconds, tokens_per_s=real / seconds, waste=padding_waste(batches),
                             supervised=sum(n_targets(b["labels"]) for b in batches))
    naive, packed = results["naive (random batches)"], results["packed"]
    assert len({r["supervised"] for r in results.values()}) == 1, "every plan must train on the same tokens"
    print(f"device: {device.type}; {len(examples)} examples, batch {BATCH} examples (packed: {per_batch} rows of "
          f"≤ {MAX_LEN} tokens), {naive['supervised']} supervised tokens in every plan; best of {REPEATS}")
    for name, r in results.items():
        print(f"  {name:24s} {r['tokens_per_s']:9.0f} real tokens/s   padding waste {r['waste']:6.1%}   "
              f"{r['seconds']:.2f} s   ×{r['tokens_per_s'] / naive['tokens_per_s']:.2f}")
    ratio = packed["tokens_per_s"] / naive["tokens_per_s"]
    ok = ratio >= 1.8 and packed["waste"] <= 0.05
    print(f"ratio packed / naive: {ratio:.2f}  (target ≥ 1.8 with waste ≤ 5 %: {'met' if ok else 'NOT met'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
