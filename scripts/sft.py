"""The course's SFT recipe (notebook 04) as a script that runs unchanged on one device or under ``accelerate launch``.

    python scripts/sft.py --data data/realdata/llms_from_scratch_instruction_data.first200.json --max-steps 100
    accelerate launch --multi_gpu --num_processes 2 scripts/sft.py --config my_run.yaml      # data parallel (DDP)
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 scripts/sft.py --fast   # the same on CPUs (gloo)
    accelerate launch --config_file configs/accelerate/fsdp.yaml scripts/sft.py ...         # sharded (FSDP)

Options come from the command line or from a small YAML file (``--config``; flags given on the command line win).
The recipe is notebook 04's: records → ``[BOS, I, SEP, Y, EOS]`` with the prompt masked (``utils.chat.encode_instruction``),
AdamW with decay on matrices only, warmup + cosine (``utils.training.lr_at``), gradient clipping, the loss per
supervised token.

What changes with several processes, and how this script keeps the result the same:

- **global batch** = ``batch_size`` × processes × ``grad_accum``. ``--batch-size`` is per process, so adding GPUs with
  the same flags makes the global batch larger (scale the learning rate or the accumulation to match).
- every step, all processes take **their slice of the same global batch** (``utils.training.micro_batch`` with the
  global size), so N processes see exactly the examples one process with the whole batch would see;
- the loss is the sum of token losses **over the whole global step** divided by the global number of supervised
  tokens (an all-reduce of the counts), so a process with shorter answers does not weigh more. DDP averages
  gradients over processes, hence the factor ``num_processes`` in the loss each process back-propagates.
- dropout draws its random masks per process, so runs with different process counts agree exactly only with
  ``--dropout 0``; with dropout they agree in distribution, like two runs with different seeds.

``tests/test_sft_script.py`` launches it with 2 CPU processes (gloo) on the tiny model and checks that the loss
curve equals a 1-process run with the same global batch. The FSDP config shards parameters, gradients and AdamW's
state across GPUs (what lets a model larger than one GPU's memory train); it needs GPUs and is not run here.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@dataclass
class SFTArgs:
    data: str = "data/realdata/llms_from_scratch_instruction_data.first200.json"   # a records file (utils.data formats)
    model: str = "gpt2"              # a Hub id; with --fast the tiny random GPT-2 instead
    fast: bool = False
    n_train: int | None = None       # use only the first n records
    max_steps: int = 100
    batch_size: int = 8              # per process and micro-batch
    grad_accum: int = 1
    lr: float = 5e-5
    min_lr: float = 0.0
    warmup_steps: int = 0
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    max_length: int = 512
    seed: int = 0
    dropout: float | None = None     # set every dropout layer to this (None: the model's own, 0.1 for GPT-2)
    output_dir: str | None = None    # save the model and tokenizer here at the end (safetensors)
    log_file: str | None = None      # one JSON line per step: step, loss, lr, tokens, seconds
    report_to: str = "none"          # "tensorboard" or "trackio" (through accelerate's trackers); off by default


def parse_args(argv: list[str] | None = None) -> SFTArgs:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML file with any of the options below (command-line flags win)")
    for f in fields(SFTArgs):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            parser.add_argument(flag, action="store_true", default=None)
        else:
            kind = {"int": int, "float": float}.get(f.type.split(" ")[0], str)
            parser.add_argument(flag, type=kind, default=None)
    ns = parser.parse_args(argv)
    values = {}
    if ns.config:
        import yaml
        values = yaml.safe_load(Path(ns.config).read_text()) or {}
        unknown = set(values) - {f.name for f in fields(SFTArgs)}
        if unknown:
            parser.error(f"unknown option(s) in {ns.config}: {sorted(unknown)}")
    values.update({k: v for k, v in vars(ns).items() if k != "config" and v is not None})
    return SFTArgs(**values)


def load_examples(args: SFTArgs, tokenizer) -> list[dict]:
    from utils.chat import GPT2_SFT, encode_instruction
    from utils.data import load_records
    path = Path(args.data) if Path(args.data).is_absolute() else ROOT / args.data
    records = load_records(path)[:args.n_train]
    return [encode_instruction(r, tokenizer, GPT2_SFT) for r in records]


def main(argv: list[str] | None = None) -> list[float]:
    import torch
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    from utils.env import seed_everything
    from utils.loss import masked_nll, n_targets
    from utils.models import load_model_and_tokenizer
    from utils.training import TrainConfig, configure_optimizer, lr_at, micro_batch

    args = parse_args(argv)
    accelerator = Accelerator(log_with=None if args.report_to == "none" else args.report_to,
                              project_dir=args.output_dir or str(ROOT / "build" / "sft"))
    world, rank = accelerator.num_processes, accelerator.process_index
    seed_everything(args.seed)
    model, tok = load_model_and_tokenizer(args.model, fast=args.fast)
    if args.dropout is not None:
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = args.dropout
    examples = load_examples(args, tok)
    # The global micro-batch: every process builds the same one and keeps its own slice of it.
    global_cfg = TrainConfig(max_steps=args.max_steps, batch_size=args.batch_size * world, lr=args.lr,
                             min_lr=args.min_lr, warmup_steps=args.warmup_steps, seed=args.seed,
                             pad_token_id=tok.eos_token_id, max_length=args.max_length)
    if len(examples) < global_cfg.batch_size:
        raise SystemExit(f"{len(examples)} examples cannot fill a global batch of {global_cfg.batch_size} "
                         f"({args.batch_size} per process × {world} processes)")
    model.train()
    model = accelerator.prepare(model)                 # FSDP wants the model wrapped before the optimizer exists
    optimizer = accelerator.prepare(configure_optimizer(model, args.lr, args.weight_decay))
    if args.report_to != "none":
        accelerator.init_trackers("sft", config={f.name: getattr(args, f.name) for f in fields(SFTArgs)})
    if accelerator.is_main_process:
        print(f"{len(examples)} examples · {world} process(es) × batch {args.batch_size} × accumulation "
              f"{args.grad_accum} = global batch {args.batch_size * world * args.grad_accum} · device {accelerator.device}")

    losses, start = [], time.perf_counter()
    log = open(args.log_file, "w") if args.log_file and accelerator.is_main_process else None
    for step in tqdm(range(args.max_steps), desc="sft", disable=not accelerator.is_main_process):
        lr = lr_at(step, global_cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batches = []
        for j in range(args.grad_accum):
            full = micro_batch(examples, step * args.grad_accum + j, global_cfg)
            batches.append({k: v[rank * args.batch_size:(rank + 1) * args.batch_size].to(accelerator.device)
                            for k, v in full.items()})
        local = torch.tensor(float(sum(n_targets(b["labels"]) for b in batches)), device=accelerator.device)
        total = accelerator.reduce(local, reduction="sum").item()          # supervised tokens in the global step
        loss_sum = torch.zeros((), device=accelerator.device)
        for b in batches:
            with accelerator.autocast():
                logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            token_losses = masked_nll(logits, b["labels"], reduction="sum")
            accelerator.backward(token_losses * world / max(total, 1.0))    # DDP divides by world: undo it
            loss_sum += token_losses.detach()
        accelerator.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss = (accelerator.reduce(loss_sum, reduction="sum") / max(total, 1.0)).item()
        if not math.isfinite(loss):
            raise SystemExit(f"step {step + 1}: the loss is {loss}; lower --lr or check the data")
        losses.append(loss)
        row = {"step": step + 1, "loss": loss, "lr": lr, "tokens": int(total), "seconds": time.perf_counter() - start}
        if args.report_to != "none":
            accelerator.log({"train/loss": loss, "train/lr": lr}, step=step + 1)
        if log:
            log.write(json.dumps(row) + "\n")
            log.flush()
    if log:
        log.close()
    accelerator.wait_for_everyone()
    if args.output_dir:
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.save_pretrained(args.output_dir, is_main_process=accelerator.is_main_process,
                                  save_function=accelerator.save, state_dict=accelerator.get_state_dict(model))
        if accelerator.is_main_process:
            tok.save_pretrained(args.output_dir)
    if accelerator.is_main_process:
        print(f"loss {losses[0]:.4f} → {losses[-1]:.4f} in {args.max_steps} steps, {time.perf_counter() - start:.1f} s")
    accelerator.end_training()
    if torch.distributed.is_initialized():
        # Tear the process group down while every process is still alive and in step: left to interpreter exit,
        # a gloo group can hang there now and then (pytorch/pytorch#75097), after all the work is done.
        accelerator.wait_for_everyone()
        torch.distributed.destroy_process_group()
    return losses


if __name__ == "__main__":
    main()
