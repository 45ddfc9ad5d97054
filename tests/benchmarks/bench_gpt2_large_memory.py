"""Peak memory of one GPT-2 Large (774 M) training step, measured and predicted.

    python tests/benchmarks/bench_gpt2_large_memory.py          (or: make bench)

Each configuration runs in its own process (a fresh allocator, so peaks do not mix): a randomly
initialised GPT2Config(n_layer=36, n_embd=1280, n_head=20), batch 1, two training steps (forward,
backward, optimizer step, zero_grad) on random tokens: the second step is the steady state, with
the optimizer states already there. On a GPU the peak is torch.cuda.max_memory_allocated; on a
CPU it is the process's peak resident set size, with glibc told to give every block over 128 KiB
back to the system when it is freed (MALLOC_MMAP_THRESHOLD_), so that RSS follows the live
tensors instead of what the allocator keeps. Prints the measured peak, the prediction of
utils.memory.predict_training_memory (with the process's own RSS before the model as `runtime`
on a CPU) and the error.
"""
from __future__ import annotations

import json
import os
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
    if optimizer == "adamw8bit" or rank:
        import bitsandbytes  # noqa: F401  (imported before `runtime` is read, like the other libraries)
        import peft  # noqa: F401
    runtime = 0 if device.type == "cuda" else measure_peak_memory(lambda: None)

    def steps():
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
        for _ in range(2):
            out = model(input_ids=x, labels=x)       # `out` keeps the logits alive through backward
            out.loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            del out

    start = time.perf_counter()
    peak = measure_peak_memory(steps, device=device.type)
    print(json.dumps({"name": name, "peak": peak, "runtime": runtime, "device": device.type,
                      "seconds": time.perf_counter() - start}))


def main() -> int:
    from utils.memory import GPT2_LARGE, predict_training_memory
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    failed, worst = 0, 0.0
    print(f"{'configuration':34s} {'measured':>9s} {'predicted':>10s} {'error':>7s}")
    for name, (seq, optimizer, checkpointing, rank) in CONFIGS.items():
        out = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True, text=True, env=env)
        line = next((l for l in out.stdout.splitlines() if l.startswith("{")), None)
        if line is None:
            print(f"{name}: failed\n{out.stderr[-2000:]}")
            failed += 1
            continue
        result = json.loads(line)
        predicted = predict_training_memory(GPT2_LARGE, seq_len=seq, batch_size=1, optimizer=optimizer, precision="fp32",
                                            lora=rank, grad_checkpointing=checkpointing, device=result["device"],
                                            runtime=result["runtime"])["total"]
        error = predicted / result["peak"] - 1
        worst = max(worst, abs(error))
        print(f"{name:34s} {result['peak'] / 2**30:6.2f} GiB {predicted / 2**30:7.2f} GiB {error:+7.1%}   "
              f"({result['device']}, runtime {result['runtime'] / 2**30:.2f} GiB, {result['seconds']:.0f} s)", flush=True)
    print(f"largest error {worst:.1%} (target: within ±10%)")
    return 1 if failed or worst > 0.10 else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        sys.exit(main())
