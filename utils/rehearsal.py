"""Rehearsal: run a notebook's FULL configuration offline, at real size, with loops capped.

``make rehearse`` (``COURSE_REHEARSAL=1``, ``COURSE_FAST`` unset, offline) executes every notebook with
what a learner gets in Colab — the real architectures (random weights, :func:`utils.models.rehearsal_model`),
Hub-shaped datasets with the Hub's columns, feature types and row counts (built here from the samples in
``data/realdata/``), full sequence lengths and batch sizes — but only a few optimisation steps per loop.
It proves shapes, memory and time; it says nothing about what a model learns (the weights are random).

Pieces:

- :func:`cap_config` — the runner's injected cell ``CFG = cap_config(CFG)``: step counts → ``REHEARSAL_STEPS``,
  epochs → 1, evaluation sizes → ``REHEARSAL_EVAL`` ; every capped value is a :class:`CappedInt` that tells
  the :data:`TRACKER` when a cell uses it, so the cell's counted FLOPs can be scaled back to the uncapped run.
- :mod:`utils.rehearsal_data` — the Hub-shaped datasets and the URL stand-in a rehearsal reads instead of the network.
- :class:`FlopCounter` — counts the FLOPs of every outermost ``PreTrainedModel`` call and projects T4 time.

Used by ``make rehearse`` (``scripts/rehearse.py``), not by a lesson: no notebook imports it directly.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
from typing import Any

#: T4 dense fp16 tensor-core peak, NVIDIA T4 datasheet ("Mixed Precision (FP16/FP32) 65 TFLOPS").
T4_PEAK_FLOPS = 65e12
#: Model FLOPs utilisation assumed for the projection (see :func:`projection_assumptions`).
T4_MFU = float(os.environ.get("REHEARSAL_MFU", "0.25"))
#: Fixed cost of one forward call in eager PyTorch on a GPU (kernel launches, Python, ``generate`` bookkeeping):
#: ``CALL_OVERHEAD_S + LAYER_OVERHEAD_S * n_layer`` seconds, times 3 when a backward pass follows.
CALL_OVERHEAD_S = 2e-3
LAYER_OVERHEAD_S = 0.25e-3


def rehearsal_steps() -> int:
    """Optimisation steps a capped loop runs (``REHEARSAL_STEPS``, default 2)."""
    return max(1, int(os.environ.get("REHEARSAL_STEPS", "2")))


def rehearsal_eval_size() -> int:
    """Size an evaluation/generation set is capped to (``REHEARSAL_EVAL``, default 8)."""
    return max(1, int(os.environ.get("REHEARSAL_EVAL", "8")))


# =========================================================================== capping the configuration
def key_kind(key: str) -> str | None:
    """What a CFG key means under the course's convention: ``"steps"`` (an optimisation-step count:
    ``max_steps``, ``steps``, ``iterations``, ``*_steps``), ``"warmup"`` (``warmup_steps``/``warmup``),
    ``"epochs"``, ``"eval_every"``, ``"eval_size"`` (``eval_examples``, ``n_eval*``) or None (left alone)."""
    if key in ("warmup_steps", "warmup"):
        return "warmup"
    if key in ("max_steps", "steps", "iterations") or key.endswith("_steps"):
        return "steps"
    if key == "epochs":
        return "epochs"
    if key == "eval_every":
        return "eval_every"
    if key == "eval_examples" or key.startswith("n_eval"):
        return "eval_size"
    return None


def _plain(value: int) -> int:
    """The plain int of ``value`` without reporting a use (``int(capped)`` would report one)."""
    return int.__int__(value)


class CappedInt(int):
    """An int that was capped by :func:`cap_config`. It remembers where it came from (``path``), its
    original value and its kind, and reports to :data:`TRACKER` whenever code compares it or computes
    with it (the ways a loop uses its bound), so that FLOPs can be attributed to the capped loop."""

    def __new__(cls, value: int, path: tuple = (), original: int = 0, kind: str = "steps"):
        value = _plain(value)
        self = super().__new__(cls, value)
        self.capped, self.path, self.original, self.kind = value, tuple(path), _plain(original), kind
        return self

    def __reduce__(self):
        return (CappedInt, (self.capped, self.path, self.original, self.kind))

    def _use(self):
        TRACKER.use(self)

    def __repr__(self):
        return int.__repr__(self)

    __hash__ = int.__hash__


def _tracked(name):
    base = getattr(int, name)

    def method(self, *args):
        self._use()
        return base(self, *args)
    method.__name__ = name
    return method


for _name in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__add__", "__radd__", "__sub__",
              "__rsub__", "__mul__", "__rmul__", "__floordiv__", "__rfloordiv__", "__truediv__", "__rtruediv__",
              "__mod__", "__rmod__", "__index__", "__int__", "__float__", "__bool__"):
    setattr(CappedInt, _name, _tracked(_name))


class TrackedDict(dict):
    """A configuration dict whose capped entries report to :data:`TRACKER` when read."""

    def __getitem__(self, key):
        value = dict.__getitem__(self, key)
        if isinstance(value, CappedInt):
            TRACKER.use(value)
        return value

    def get(self, key, default=None):
        return self[key] if key in self else default


#: What :func:`cap_config` changed, as ``{"key": "a.b", "original": …, "capped": …}`` (for the report).
CHANGES: list[dict] = []


def _capped_value(kind: str, value: Any, steps: int, eval_size: int, step_cap: int | None) -> Any:
    if not isinstance(value, int) or isinstance(value, bool):
        return value
    if kind == "steps":
        return min(value, steps)
    if kind == "epochs":
        return min(value, 1)
    if kind == "eval_every":
        return min(value, step_cap if step_cap is not None else steps)
    if kind == "eval_size":
        return min(value, eval_size)
    if kind == "warmup":                  # must stay below the capped step count
        bound = step_cap if step_cap is not None else steps
        return min(value, max(bound - 1, 0))
    return value


def cap_config(cfg: Any, *, steps: int | None = None, eval_size: int | None = None, _path: tuple = (),
               _record: bool = True) -> Any:
    """A copy of ``cfg`` with its loops capped for a rehearsal (the original is not modified).

    Walks nested dicts and dataclasses (``dataclasses.replace``, e.g. :class:`utils.training.TrainConfig`).
    Keys are read by :func:`key_kind`: step counts → ``steps`` (``REHEARSAL_STEPS``, default 2), ``epochs`` → 1,
    ``eval_every`` → at most the capped step count, ``warmup_steps`` → below it, evaluation sizes →
    ``eval_size`` (``REHEARSAL_EVAL``, default 8). Everything else (data sizes, sequence lengths, batch sizes,
    model names) stays at full size. Capped ints are :class:`CappedInt`; dicts become :class:`TrackedDict`.
    Every change is appended to :data:`CHANGES` and printed in one line.
    """
    steps = rehearsal_steps() if steps is None else steps
    eval_size = rehearsal_eval_size() if eval_size is None else eval_size
    changes: list[dict] = []

    def cap_fields(items: dict, path: tuple) -> dict:
        out = {}
        step_values = [min(_plain(v), steps) for k, v in items.items()
                       if isinstance(k, str) and key_kind(k) == "steps" and isinstance(v, int) and not isinstance(v, bool)]
        step_cap = min(step_values) if step_values else None
        for key, value in items.items():
            kind = key_kind(key) if isinstance(key, str) else None
            here = path + (key,)
            if kind is not None and isinstance(value, int) and not isinstance(value, bool):
                original = value.original if isinstance(value, CappedInt) else _plain(value)
                new = _capped_value(kind, _plain(value), steps, eval_size, step_cap)
                out[key] = CappedInt(new, here, original, kind)
                if new != _plain(value):
                    changes.append({"key": ".".join(map(str, here)), "original": original, "capped": new})
            else:
                out[key] = walk(value, here)
        return out

    def walk(obj: Any, path: tuple) -> Any:
        if isinstance(obj, dict):
            return TrackedDict(cap_fields(obj, path))
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}
            capped = cap_fields(fields, path)
            return dataclasses.replace(obj, **{k: v for k, v in capped.items() if v is not fields[k]})
        return obj

    out = walk(cfg, _path)
    if _record:
        CHANGES.extend(changes)
        if changes:
            print("REHEARSAL: loops capped (original → capped): "
                  + ", ".join(f"{c['key']} {c['original']} → {c['capped']}" for c in changes))
        else:
            print("REHEARSAL: no step counts found to cap in this configuration")
    return out


# =========================================================================== which capped loop is running
def n_evaluations(steps: int, every: int) -> int:
    """How many times :func:`utils.training.train` evaluates: every ``every`` steps and at the last step."""
    if not every:
        return 0
    return steps // every + (1 if steps % every else 0)


class UseTracker:
    """Which capped values the current cell has used, and so by how much its FLOPs scale up.

    A use of a capped value from a different group (its parent dict/dataclass; a top-level key is its own
    group) starts a new *segment*: ``rm_steps`` then ``sft_steps`` in one cell are sequential loops, while
    ``ppo.iterations`` then ``ppo.epochs`` (one group) are nested and multiply. A call's scale is read when
    the call happens (see :meth:`scale`).
    """

    def __init__(self):
        self.reset()

    def reset(self):
        self.group: tuple | None = None
        self.active: dict[tuple, CappedInt] = {}
        self.used: dict[str, tuple[int, int]] = {}

    def use(self, value: CappedInt):
        self.used[".".join(map(str, value.path))] = (value.original, value.capped)
        if value.kind == "warmup" or value.original == value.capped:
            return
        group = value.path[:-1] if len(value.path) > 1 else value.path
        if group != self.group:
            self.group, self.active = group, {}
        self.active[value.path] = value

    def scale(self, grad: bool) -> float:
        """Uncapped/capped work for a call made now. Training calls (``grad``) scale with the product of
        the active step counts and epochs; inference calls with the step counts (rollouts, reference
        log-probs: once per iteration, not per epoch), or with the number of evaluations when an
        ``eval_every`` is active, times the ratio of capped evaluation sizes."""
        def ratio(kind):
            r = 1.0
            for v in self.active.values():
                if v.kind == kind and v.capped > 0:
                    r *= v.original / v.capped
            return r
        if grad:
            return ratio("steps") * ratio("epochs")
        every = [v for v in self.active.values() if v.kind == "eval_every"]
        steps = [v for v in self.active.values() if v.kind == "steps"]
        if every and steps:
            s, e = steps[0], every[0]
            capped = n_evaluations(s.capped, e.capped)
            return (n_evaluations(s.original, e.original) / capped if capped else 1.0) * ratio("eval_size")
        return ratio("steps") * ratio("eval_size")


TRACKER = UseTracker()


# =========================================================================== counting FLOPs
def _matmul_params(model) -> tuple[int, int, int, int]:
    """(weights of every Linear/Conv1D, of those trainable, of the output embedding (LM head), n_layer)."""
    import torch
    from transformers.pytorch_utils import Conv1D
    total = trainable = 0
    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, Conv1D)):
            total += m.weight.numel()
            trainable += m.weight.numel() if m.weight.requires_grad else 0
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    head_params = head.weight.numel() if isinstance(head, torch.nn.Linear) else 0
    cfg = getattr(model, "config", None)
    n_layer = getattr(cfg, "n_layer", None) or getattr(cfg, "num_hidden_layers", 0) or 0
    return total, trainable, head_params, n_layer


def forward_flops(n_matmul: int, n_head_params: int, n_layer: int, d_model: int, tokens: int, context: int,
                  logit_tokens: int | None = None) -> float:
    """Forward FLOPs of one call (Kaplan et al. 2020, table 1): ``2·N`` per token for the weight matrices
    plus ``2·n_layer·n_ctx·d`` per token for attention, ``n_ctx`` being the attended length. The LM head's
    share is counted for ``logit_tokens`` positions only (``generate`` computes logits for the last one)."""
    logit_tokens = tokens if logit_tokens is None else logit_tokens
    return (2.0 * (n_matmul - n_head_params) * tokens + 2.0 * n_head_params * logit_tokens
            + 2.0 * n_layer * context * d_model * tokens)


class FlopCounter:
    """Counts the FLOPs of every outermost ``transformers.PreTrainedModel`` call (a ``GPT2Model`` inside a
    ``GPT2LMHeadModel``, or inside a custom value model, is not counted twice) and projects T4 seconds.

    Per call: forward FLOPs (:func:`forward_flops`) × 3 when gradients flow to the weights (backward ≈ 2×
    forward), × 2 when only adapters train (LoRA: gradients for activations, not for the frozen matrices),
    + 1 forward when gradient checkpointing recomputes it. Projected seconds = FLOPs / (peak × MFU) + the
    per-call overhead, both multiplied by :meth:`UseTracker.scale` at the time of the call.
    """

    def __init__(self, tracker: UseTracker = TRACKER):
        self.tracker = tracker
        self._depth = threading.local()
        self._orig_call = None
        self.reset()

    def reset(self):
        self.flops = 0.0              # counted here (capped run)
        self.flops_uncapped = 0.0     # scaled to the uncapped run
        self.seconds_t4 = 0.0         # projected T4 seconds of the uncapped run
        self.calls = 0

    # --- installing
    def install(self):
        from transformers import PreTrainedModel
        if self._orig_call is not None:
            return self
        counter = self
        self._orig_call = PreTrainedModel.__call__

        def __call__(model, *args, **kwargs):
            depth = getattr(counter._depth, "value", 0)
            if depth:
                return counter._orig_call(model, *args, **kwargs)
            counter._depth.value = 1
            try:
                out = counter._orig_call(model, *args, **kwargs)
                counter.record(model, args, kwargs)
                return out
            finally:
                counter._depth.value = 0

        PreTrainedModel.__call__ = __call__
        return self

    def uninstall(self):
        from transformers import PreTrainedModel
        if self._orig_call is not None:
            PreTrainedModel.__call__ = self._orig_call
            self._orig_call = None

    # --- counting
    def record(self, model, args, kwargs):
        import torch
        ids = kwargs.get("input_ids")
        if ids is None and args and isinstance(args[0], torch.Tensor):
            ids = args[0]
        embeds = kwargs.get("inputs_embeds")
        shape = tuple(ids.shape) if ids is not None else tuple(embeds.shape[:2]) if embeds is not None else None
        if not shape:
            return
        batch, length = (shape[0], shape[1]) if len(shape) > 1 else (1, shape[0])
        tokens = batch * length
        mask = kwargs.get("attention_mask")
        cache = kwargs.get("past_key_values")
        if mask is not None and mask.dim() >= 2:
            context = mask.shape[-1]
        elif cache is not None and hasattr(cache, "get_seq_length"):
            context = int(cache.get_seq_length())        # already includes this call's tokens
            context = max(context, length)
        else:
            context = length
        keep = kwargs.get("logits_to_keep")
        logit_tokens = batch * keep if isinstance(keep, int) and keep > 0 else None
        n_matmul, n_trainable, n_head, n_layer = _matmul_params(model)
        cfg = model.config
        d_model = getattr(cfg, "n_embd", None) or getattr(cfg, "hidden_size", 0)
        fwd = forward_flops(n_matmul, n_head, n_layer, d_model, tokens, context, logit_tokens)
        grad = torch.is_grad_enabled() and n_trainable > 0
        if not grad:
            factor = 1.0
        elif n_trainable > 0.5 * n_matmul:
            factor = 3.0
        else:
            factor = 2.0                                    # adapters only
        if grad and getattr(model, "is_gradient_checkpointing", False):
            factor += 1.0
        flops = fwd * factor
        scale = self.tracker.scale(grad)
        overhead = (CALL_OVERHEAD_S + LAYER_OVERHEAD_S * n_layer) * (3.0 if grad else 1.0)
        self.calls += 1
        self.flops += flops
        self.flops_uncapped += flops * scale
        self.seconds_t4 += (flops / (T4_PEAK_FLOPS * T4_MFU) + overhead) * scale


COUNTER = FlopCounter()


# =========================================================================== kernel-side helpers for the runner
def kernel_begin() -> None:
    """Called by the runner before each lesson cell: a fresh attribution for this cell."""
    TRACKER.reset()
    COUNTER.reset()


def kernel_end() -> str:
    """Called by the runner after each lesson cell: the cell's counters as JSON."""
    return json.dumps({"flops": COUNTER.flops, "flops_uncapped": COUNTER.flops_uncapped,
                       "seconds_t4": COUNTER.seconds_t4, "calls": COUNTER.calls,
                       "used": {k: list(v) for k, v in TRACKER.used.items()}})


def kernel_summary() -> str:
    """Peak memory of this kernel (CUDA: ``max_memory_allocated``; else the process's peak RSS) and the
    configuration changes, as JSON."""
    import resource

    import torch
    out = {"changes": CHANGES}
    if torch.cuda.is_available():
        out["peak_bytes"], out["peak_kind"] = torch.cuda.max_memory_allocated(), "cuda max_memory_allocated"
    else:
        out["peak_bytes"], out["peak_kind"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "peak RSS"
    return json.dumps(out)


def projection_assumptions() -> list[str]:
    return [
        f"T4 peak {T4_PEAK_FLOPS / 1e12:.0f} TFLOP/s (dense fp16 tensor cores with fp32 accumulate, NVIDIA T4 datasheet); "
        f"assumed MFU {T4_MFU:.0%} (set REHEARSAL_MFU to change it).",
        "FLOPs per outermost model call: 2·N·tokens (N = weights of all Linear/Conv1D layers, LM head on the positions "
        "that get logits) + 2·n_layer·n_ctx·d·tokens for attention (Kaplan et al. 2020); ×3 with weight gradients, "
        "×2 when only LoRA adapters train, +1 forward with gradient checkpointing; generation counts each "
        "one-token decode call the same way.",
        f"Per-call overhead (kernel launches, Python, generate bookkeeping): {CALL_OVERHEAD_S * 1e3:.1f} ms + "
        f"{LAYER_OVERHEAD_S * 1e3:.2f} ms × n_layer per forward, ×3 with a backward pass — dominant for one-token decode steps.",
        "Capped loops are scaled back per call by uncapped/capped of the capped values the cell had used when the call "
        "ran (training calls: steps × epochs; inference: steps, or the number of evaluations when eval_every is in use).",
        "Cells that count no model FLOPs (data processing) are projected at their wall time here (Colab's CPU is ~2 vCPUs "
        "like this machine); cells with FLOPs at the FLOP projection only (their CPU work is not added).",
        "Not included: installing packages, downloading models/datasets, Colab start-up.",
    ]
