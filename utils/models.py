"""Load a causal language model and its tokenizer, online (full mode) or offline (fast mode).

Full mode: the real checkpoint from the Hugging Face Hub, e.g. ``gpt2``.
Fast mode: a tiny randomly initialised GPT-2 (2 layers, 2 heads, 64 dimensions) with the
*real* GPT-2 tokenizer shipped in ``data/gpt2-tokenizer``, so token ids, masks and
templates are exactly what a learner sees in Colab; only the model's knowledge is missing.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
from transformers import (AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel,
                          GPT2TokenizerFast, PreTrainedModel, PreTrainedTokenizerBase)

from .env import fast_mode

REPO_ROOT = Path(__file__).resolve().parent.parent
TOKENIZER_DIR = REPO_ROOT / "data" / "gpt2-tokenizer"

#: The fast-mode model: small enough that a CPU step takes milliseconds, big enough to
#: memorise a handful of instruction/response pairs.
TINY_GPT2 = dict(n_layer=2, n_head=2, n_embd=64, n_positions=256)


class HubUnavailableError(RuntimeError):
    """A full-mode model could not be loaded from the Hugging Face Hub."""


def hub_reachable(timeout: float = 5.0) -> bool:
    """Can we open a TCP connection to the Hub within ``timeout`` seconds?

    Asked once before loading so that a machine without internet fails in seconds instead
    of sitting through the download client's retries (about a minute).
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
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


def tiny_gpt2(tokenizer: PreTrainedTokenizerBase, seed: int = 0) -> GPT2LMHeadModel:
    """A randomly initialised 2-layer GPT-2 for ``tokenizer``'s vocabulary, seeded.

    The global random state is left untouched (initialisation runs in a forked RNG).
    """
    config = GPT2Config(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id,
                        **TINY_GPT2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
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
        HubUnavailableError: full mode, and the Hub cannot be reached (or the id is wrong).
    """
    fast = fast_mode() if fast is None else fast
    if fast:
        tok = load_gpt2_tokenizer()
        model = tiny_gpt2(tok, seed=seed)
        n = sum(p.numel() for p in model.parameters())
        print(f"fast mode: tiny random GPT-2 ({n / 1e6:.1f} M parameters) stands in for '{name}'")
        return model, tok
    local_only = not hub_reachable()  # then only a copy already in the local cache can load
    try:
        tok = AutoTokenizer.from_pretrained(name, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, local_files_only=local_only)
    except Exception as err:  # OSError, HTTP and offline errors all mean the same here
        raise HubUnavailableError(
            f"Could not load '{name}' from the Hugging Face Hub ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}).\n"
            "Full mode downloads real models and needs internet access. "
            "Connect to the internet, or set COURSE_FAST=1 to run the course offline "
            "with the tiny model.") from err
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
    mode: the tiny GPT-2's shape, randomly initialised from ``seed``.
    """
    from transformers import AutoModelForSequenceClassification, GPT2ForSequenceClassification
    fast = fast_mode() if fast is None else fast
    tokenizer = tokenizer or load_gpt2_tokenizer()
    if fast:
        config = GPT2Config(vocab_size=len(tokenizer), num_labels=1, pad_token_id=tokenizer.eos_token_id, **TINY_GPT2)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return GPT2ForSequenceClassification(config)
    local_only = not hub_reachable()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(name, num_labels=1, local_files_only=local_only)
    except Exception as err:  # noqa: BLE001 — same plain message as load_model_and_tokenizer
        raise HubUnavailableError(f"Could not load '{name}' from the Hugging Face Hub ({type(err).__name__}). "
                                  "Connect to the internet, or set COURSE_FAST=1 to run offline with the tiny model.") from err
    model.config.pad_token_id = tokenizer.eos_token_id
    return model
