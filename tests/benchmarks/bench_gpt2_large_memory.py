"""Peak memory of one GPT-2 Large (774 M) training step, measured and predicted.

    python tests/benchmarks/bench_gpt2_large_memory.py          (or: make bench)

Each configuration runs in its own process (a fresh allocator, so peaks do not mix): a randomly
initialised GPT2Config(n_layer=36, n_embd=1280, n_head=20), batch 1, one forward + backward +
optimizer step on random tokens. On a GPU the peak is torch.cuda.max_memory_allocated; on a CPU
it is the process's peak resident set size. Prints the measured peak next to the static part
(weights + gradients + optimizer states, utils.memory.static_training_memory); the rest is
activations, logits, the runtime and what the allocator keeps.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

CONFIGS = {  # name: (seq_len, optimizer, grad_checkpointing, lora rank)
    "fp32 AdamW @256": (256, "adamw", False, None),
    "fp32 AdamW @512": (512, "adamw", False, None),
    "8-bit AdamW @512": (512, "adamw8bit", False, None),
    "8-bit AdamW + checkpointing @512": (512, "adamw8bit", True, None),
    "LoRA r=16 (AdamW) @512": (512, "adamw", False, 16),
}


def child(name: str) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from utils.memory import measure_peak_memory
    seq, optimizer, checkpointing, rank = CONFIGS[name]
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def step():
        model = GPT2LMHeadModel(GPT2Config(n_layer=36, n_embd=1280, n_head=20)).to(device)
        if checkpointing:
            model.gradient_checkpointing_enable()
            model.config.use_cache = False
        if rank:
            from peft import LoraConfig, get_peft_model
            model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["c_attn", "c_proj", "c_fc"],
                                                     fan_in_fan_out=True, lora_dropout=0.0))
        params = [p for p in model.parameters() if p.requires_grad]
        if optimizer == "adamw8bit":
            import bitsandbytes as bnb
            opt = bnb.optim.AdamW8bit(params, lr=1e-5)
        else:
            opt = torch.optim.AdamW(params, lr=1e-5)
        x = torch.randint(0, 50257, (1, seq), device=device)
        model.train()
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()

    start = time.perf_counter()
    peak = measure_peak_memory(step, device=device.type)
    print(json.dumps({"name": name, "peak": peak, "device": device.type, "seconds": time.perf_counter() - start}))


def main() -> int:
    from utils.memory import GPT2_LARGE, static_training_memory
    failed = 0
    for name, (seq, optimizer, checkpointing, rank) in CONFIGS.items():
        out = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True, text=True)
        line = next((l for l in out.stdout.splitlines() if l.startswith("{")), None)
        if line is None:
            print(f"{name}: failed\n{out.stderr[-2000:]}")
            failed += 1
            continue
        result = json.loads(line)
        static = static_training_memory(GPT2_LARGE, optimizer, rank)["total"]
        print(f"{name:34s} measured peak {result['peak'] / 2**30:6.2f} GiB   static part {static / 2**30:6.2f} GiB   "
              f"rest {(result['peak'] - static) / 2**30:5.2f} GiB   ({result['device']}, {result['seconds']:.0f} s)",
              flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        sys.exit(main())
