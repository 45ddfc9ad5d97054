import hashlib
import os
import socket
import subprocess
import sys
import time

import pytest
import torch

from utils import models

# sha256 of OpenAI's GPT-2 encoder.json / vocab.bpe (the same files tiktoken verifies)
VOCAB_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
MERGES_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"


def test_tokenizer_files_are_the_real_gpt2_bpe():
    vocab, merges = models.TOKENIZER_DIR / "vocab.json", models.TOKENIZER_DIR / "merges.txt"
    assert vocab.stat().st_size == 1_042_301 and merges.stat().st_size == 456_318
    assert hashlib.sha256(vocab.read_bytes()).hexdigest() == VOCAB_SHA256
    assert hashlib.sha256(merges.read_bytes()).hexdigest() == MERGES_SHA256
    assert "Modified MIT" in (models.TOKENIZER_DIR / "LICENSE").read_text(encoding="utf-8")


def test_tokenizer_matches_gpt2(tok):
    assert tok("Hello world")["input_ids"] == [15496, 995]
    assert len(tok) == 50257
    assert tok.eos_token_id == tok.bos_token_id == tok.pad_token_id == 50256
    assert tok.decode([15496, 995, 50256]) == "Hello world<|endoftext|>"
    # the special token is one id, and a leading space is part of the next token
    assert tok("<|endoftext|> The")["input_ids"] == [50256, 383]


def test_tiny_model_shape_and_seed(tok):
    m = models.tiny_gpt2(tok, seed=0)
    c = m.config
    assert (c.n_layer, c.n_head, c.n_embd, c.n_positions, c.vocab_size) == (2, 2, 64, 256, 50257)
    assert not m.training
    same = models.tiny_gpt2(tok, seed=0)
    other = models.tiny_gpt2(tok, seed=1)
    for (n, a), b, o in zip(m.named_parameters(), same.parameters(), other.parameters()):
        assert torch.equal(a, b), n
    assert not torch.equal(m.transformer.h[0].attn.c_attn.weight, other.transformer.h[0].attn.c_attn.weight)


def test_tiny_model_leaves_global_rng_alone(tok):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    models.tiny_gpt2(tok, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_fast_mode_loader_returns_tiny_model(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_FAST", "1")
    model, tok = models.load_model_and_tokenizer("gpt2-large")
    assert model.config.n_layer == 2 and len(tok) == 50257
    assert "stands in for 'gpt2-large'" in capsys.readouterr().out
    out = model(torch.tensor([[15496, 995]]))
    assert out.logits.shape == (1, 2, 50257)


def test_full_mode_offline_says_set_COURSE_FAST(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(models.HubUnavailableError, match="COURSE_FAST=1"):
        models.load_model_and_tokenizer("gpt2-this-model-is-not-cached", fast=False)
    assert time.perf_counter() - start < 30


def test_full_mode_without_network_fails_fast_not_hangs(tmp_path):
    """No HF_HUB_OFFLINE, but the Hub is unreachable (port 9 on loopback refuses): a clear error
    within seconds instead of a minute of download retries."""
    env = {k: v for k, v in os.environ.items() if k not in {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}}
    env.update(COURSE_FAST="0", HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path))
    code = ("from utils.models import load_model_and_tokenizer\n"
            "load_model_and_tokenizer('gpt2')\n")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], cwd=models.REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - start
    assert proc.returncode != 0
    assert "HubUnavailableError" in proc.stderr and "set COURSE_FAST=1" in proc.stderr
    assert elapsed < 60, f"took {elapsed:.0f} s"


def test_hub_reachable(monkeypatch):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert models.hub_reachable(timeout=2)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        assert not models.hub_reachable(timeout=2)
    finally:
        server.close()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert not models.hub_reachable(timeout=2)


def test_reward_model_reads_the_last_real_token(tok):
    from utils.models import load_reward_model
    rm = load_reward_model("gpt2", tok, fast=True).eval()
    assert rm.config.num_labels == 1 and rm.config.pad_token_id == tok.eos_token_id
    ids = tok("a good movie")["input_ids"]
    padded = torch.tensor([ids + [tok.eos_token_id] * 3])
    with torch.no_grad():
        alone = rm(input_ids=torch.tensor([ids])).logits
        with_pad = rm(input_ids=padded, attention_mask=(padded != tok.eos_token_id).long()).logits
    assert alone.shape == (1, 1) and torch.allclose(alone, with_pad, atol=1e-5)


# --------------------------------------------------------------------------- which errors mean "no Hub"
class _FakeResponse:                       # what huggingface_hub's HTTP errors read from a response
    headers: dict = {}
    request = None


def _hub_error(cls, message):
    return cls(message, response=_FakeResponse())


@pytest.fixture
def hub_online(monkeypatch):
    """Pretend the Hub is reachable and the tokenizer loads, so only the model load can fail."""
    monkeypatch.delenv("COURSE_REHEARSAL", raising=False)
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=5.0: True)
    monkeypatch.setattr(models.AutoTokenizer, "from_pretrained", lambda *a, **k: models.load_gpt2_tokenizer())


@pytest.mark.parametrize("error", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("Error(s) in loading state_dict for GPT2LMHeadModel: size mismatch for wte.weight"),
    OSError(28, "No space left on device"),
    ImportError("cannot import name 'Conv1D' from 'transformers.modeling_utils' (version mismatch)"),
], ids=["oom", "size-mismatch", "disk-full", "version-mismatch"])
def test_non_network_errors_keep_their_own_message(hub_online, monkeypatch, error):
    def boom(*args, **kwargs):
        raise error
    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained", boom)
    with pytest.raises(type(error)) as info:
        models.load_model_and_tokenizer("gpt2", fast=False)
    assert info.value is error and not isinstance(info.value, models.HubUnavailableError)
    assert "internet" not in str(info.value) and "COURSE_FAST" not in str(info.value)

    from transformers import AutoModelForSequenceClassification
    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", boom)
    with pytest.raises(type(error)) as info:
        models.load_reward_model("gpt2", fast=False)
    assert info.value is error


def test_gated_model_is_not_called_a_network_problem(hub_online, monkeypatch):
    from huggingface_hub.errors import GatedRepoError
    gated = _hub_error(GatedRepoError, "Access to model meta-llama/Llama-3.2-1B is restricted. You must be authenticated.")

    def refuse(*args, **kwargs):
        raise gated
    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained", refuse)
    with pytest.raises(GatedRepoError, match="restricted"):
        models.load_model_and_tokenizer("meta-llama/Llama-3.2-1B", fast=False)


def test_typo_in_model_id_online_says_check_the_name(hub_online, monkeypatch):
    from huggingface_hub.errors import RepositoryNotFoundError

    def not_found(*args, **kwargs):
        try:
            raise _hub_error(RepositoryNotFoundError, "404 Client Error. Repository Not Found for url: https://huggingface.co/gtp2")
        except RepositoryNotFoundError as err:   # transformers wraps it in an OSError, as here
            raise OSError("gtp2 is not a local folder and is not a valid model identifier listed on "
                          "'https://huggingface.co/models'") from err
    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained", not_found)
    with pytest.raises(models.HubUnavailableError, match="not a model on the Hugging Face Hub") as info:
        models.load_model_and_tokenizer("gtp2", fast=False)
    assert "internet" not in str(info.value)


@pytest.mark.parametrize("error,expected", [
    (OSError("We couldn't connect to 'https://huggingface.co' to load the files"), "offline"),
    (ConnectionError("connection refused"), "offline"),
    (TimeoutError("timed out"), "offline"),
    (OSError(28, "No space left on device"), None),
    (MemoryError(), None),
    (ValueError("Unrecognized configuration class"), None),
])
def test_hub_problem_classifies_errors(error, expected):
    assert models.hub_problem(error) == expected


def test_hub_problem_follows_the_cause_chain():
    from huggingface_hub.errors import LocalEntryNotFoundError
    try:
        try:
            raise LocalEntryNotFoundError("Cannot find the requested files in the disk cache")
        except LocalEntryNotFoundError as inner:
            raise OSError("something generic") from inner
    except OSError as outer:
        assert models.hub_problem(outer) == "offline"


def test_tiny_model_leaves_the_global_rng_alone():
    """Checkers build models inside a learner's session: the caller's random stream must not move."""
    import torch
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = models.tiny_model(seed=0)
    assert torch.equal(torch.rand(3), expected)
    b = models.tiny_model(seed=0)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))      # same seed, same weights
    assert models.TINY_GPT2.gpt2_config().n_layer == a.config.n_layer == 2


def test_every_checker_has_a_docstring():
    from utils import checks
    names = [n for n in dir(checks) if n.startswith("check_") or n.endswith("_problems")]
    assert len([n for n in names if n.startswith("check_")]) >= 23
    assert [n for n in names if not (getattr(checks, n).__doc__ or "").strip()] == []
