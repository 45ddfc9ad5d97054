"""Peak memory of GPT-2 Large (774 M) training steps, measured and predicted.

    python tests/benchmarks/bench_gpt2_large_memory.py          (or: make bench)
    python tests/benchmarks/bench_gpt2_large_memory.py --only "notebook 05"   (configurations whose name contains it)
    python tests/benchmarks/bench_gpt2_large_memory.py --table    (the last run's measurements, predicted again)

Each configuration runs in its own process (a fresh allocator, so peaks do not mix) on a randomly
initialised ``utils.memory.GPT2_LARGE`` (36 layers, d = 1280, 20 heads) and random tokens, for two optimizer
steps: the second is the steady state, with the optimizer states already there. Two kinds of step:

* ``model``: batch 1, ``model(input_ids, labels=...)`` (transformers' own loss), backward,
  optimizer step, zero_grad — the single steps of notebook 05's memory table.
* ``course``: exactly what ``utils.training.train`` does per step (it calls
  ``utils.training.accumulate_gradients``): ``grad_accum`` micro-batches, each forward under
  ``dp.autocast()``, ``masked_nll(..., reduction="sum") / tokens`` outside it, backward per
  micro-batch (gradients accumulate in ``.grad``); then the loss scaler's unscale, gradient
  clipping, the optimizer built by ``configure_optimizer`` and ``zero_grad(set_to_none=True)``.
  Notebook 05's recommended full fine-tuning: batch 4 × 2 accumulated at 512 tokens, 8-bit
  AdamW, gradient checkpointing, fp16 autocast — on a CPU too: torch 2.13 autocasts (and caches
  the fp16 weight copies) on a CPU as on a GPU, and runs it here as fast as fp32.

On a GPU the peak is torch.cuda.max_memory_allocated; on a CPU it is the process's peak resident
set size, with glibc told to give every block over 128 KiB back to the system when it is freed
(MALLOC_MMAP_THRESHOLD_), so that RSS follows the live tensors instead of what the allocator
keeps. Prints the measured peak, the prediction of utils.memory.predict_training_memory (with the
process's own RSS before the model as `runtime` on a CPU), the error and the seconds.
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

_MODEL = dict(batch=1, accum=1, precision="fp32", loop="model")
CONFIGS = {  # name: the run, and predict_training_memory's arguments follow from it
    "notebook 05: 4x2 @512, 8-bit, ckpt, fp16": dict(seq=512, batch=4, accum=2, optimizer="adamw8bit", checkpointing=True,
                                                     lora=None, precision="fp16", loop="course"),
    "fp32 AdamW @256": dict(_MODEL, seq=256, optimizer="adamw", checkpointing=False, lora=None),
    "fp32 AdamW @512": dict(_MODEL, seq=512, optimizer="adamw", checkpointing=False, lora=None),
    "8-bit AdamW @512": dict(_MODEL, seq=512, optimizer="adamw8bit", checkpointing=False, lora=None),
    "8-bit AdamW + checkpointing @512": dict(_MODEL, seq=512, optimizer="adamw8bit", checkpointing=True, lora=None),
    "LoRA r=16 (AdamW) @512": dict(_MODEL, seq=512, optimizer="adamw", checkpointing=False, lora=16),
}


def child(name: str) -> None:
    import torch
    from transformers import GPT2LMHeadModel

    from utils.memory import GPT2_LARGE, measure_peak_memory
    c = CONFIGS[name]
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    import bitsandbytes  # noqa: F401  (imported before `runtime` is read, like the other libraries)
    import peft  # noqa: F401

    from utils.env import DevicePrecision
    from utils.training import accumulate_gradients, configure_optimizer
    runtime = 0 if device.type == "cuda" else measure_peak_memory(lambda: None)

    def steps():
        model = GPT2LMHeadModel(GPT2_LARGE.gpt2_config()).to(device)
        if c["checkpointing"]:
            model.gradient_checkpointing_enable()
            model.config.use_cache = False
        if c["lora"]:
            from peft import LoraConfig, get_peft_model
            model = get_peft_model(model, LoraConfig(r=c["lora"], lora_alpha=2 * c["lora"], fan_in_fan_out=True,
                                                     target_modules=["c_attn", "c_proj", "c_fc"], lora_dropout=0.0))
        model.train()
        if c["loop"] == "model":
            params = [p for p in model.parameters() if p.requires_grad]
            if c["optimizer"] == "adamw8bit":
                import bitsandbytes as bnb
                opt = bnb.optim.AdamW8bit(params, lr=1e-5)
            else:
                opt = torch.optim.AdamW(params, lr=1e-5)
            x = torch.randint(0, 50257, (c["batch"], c["seq"]), device=device)
            for _ in range(2):
                out = model(input_ids=x, labels=x)       # `out` keeps the logits alive through backward
                out.loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                del out
            return
        # The course's loop (utils.training.train), step for step.
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(c["precision"])
        dp = DevicePrecision(device, c["precision"], dtype, use_grad_scaler=c["precision"] == "fp16")
        opt = configure_optimizer(model, 1e-5, 0.1, kind=c["optimizer"])
        scaler = torch.amp.GradScaler(device.type, enabled=dp.use_grad_scaler)
        for _ in range(2):
            batches = [{"input_ids": (ids := torch.randint(0, 50257, (c["batch"], c["seq"]))),
                        "attention_mask": torch.ones_like(ids), "labels": ids.clone()} for _ in range(c["accum"])]
            accumulate_gradients(model, batches, dp, scaler)
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)

    start = time.perf_counter()
    peak = measure_peak_memory(steps, device=device.type)
    print(json.dumps({"name": name, "peak": peak, "runtime": runtime, "device": device.type,
                      "seconds": time.perf_counter() - start}))


def predict(c: dict, device: str, runtime: int) -> int:
    from utils.memory import GPT2_LARGE, predict_training_memory
    return predict_training_memory(GPT2_LARGE, seq_len=c["seq"], batch_size=c["batch"], optimizer=c["optimizer"],
                                   precision=c["precision"], lora=c["lora"], grad_checkpointing=c["checkpointing"],
                                   grad_accum=c["accum"], device=device, runtime=runtime)["total"]


RESULTS = ROOT / "build" / "bench_gpt2_large_memory.json"     # the measurements of the last run, one per configuration


def row(name: str, result: dict) -> tuple[str, float]:
    """One line of the table: measured, predicted, error (predicted / measured - 1)."""
    try:
        predicted = predict(CONFIGS[name], result["device"], result["runtime"])
    except Exception as e:                          # a prediction that fails must not lose a 20-minute measurement
        return f"{name:42s} {result['peak'] / 2**30:6.2f} GiB   prediction failed: {e!r}", float("inf")
    error = predicted / result["peak"] - 1
    return (f"{name:42s} {result['peak'] / 2**30:6.2f} GiB {predicted / 2**30:7.2f} GiB {error:+7.1%}   "
            f"({result['device']}, runtime {result['runtime'] / 2**30:.2f} GiB, {result['seconds']:.0f} s)"), error


def main(only: str | None = None) -> int:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    failed, worst, results = 0, 0.0, {}
    print(f"{'configuration':42s} {'measured':>9s} {'predicted':>10s} {'error':>7s}")
    for name in CONFIGS:
        if only and only not in name:
            continue
        out = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True, text=True, env=env)
        line = next((l for l in out.stdout.splitlines() if l.startswith("{")), None)
        if line is None:
            print(f"{name}: failed\n{out.stderr[-2000:]}")
            failed += 1
            continue
        results[name] = json.loads(line)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1))
        text, error = row(name, results[name])
        worst = max(worst, abs(error))
        print(text, flush=True)
    print(f"largest error {worst:.1%} (target: within ±10%); measurements saved to {RESULTS}")
    return 1 if failed or worst > 0.10 else 0


def table() -> int:
    """Print the table again from the saved measurements (after a change to the predictor)."""
    results = json.loads(RESULTS.read_text())
    print(f"{'configuration':42s} {'measured':>9s} {'predicted':>10s} {'error':>7s}")
    errors = []
    for name, result in results.items():
        text, error = row(name, result)
        errors.append(abs(error))
        print(text)
    print(f"largest error {max(errors):.1%} (target: within ±10%)")
    return 1 if max(errors) > 0.10 else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "--only":
        sys.exit(main(sys.argv[2]))
    elif len(sys.argv) == 2 and sys.argv[1] == "--table":
        sys.exit(table())
    else:
        sys.exit(main())
