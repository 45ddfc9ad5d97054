"""utils.evaluate: answers, reference-based scores, the judge's parsing and summary, two perplexities."""
import math
import statistics

import pytest
import torch

from utils.evaluate import (exact_match, format_table, generate_answers, judge_by_generation, parse_score,
                            perplexities, rouge_l, scores_by_task, summarise_scores, token_f1)
from utils.masking import build_labels, pad_collate
from utils.models import tiny_gpt2
from utils.training import evaluate


def test_exact_match_and_f1_follow_squad():
    assert exact_match("The Eiffel Tower.", "eiffel tower") == 1.0          # case, punctuation, articles
    assert exact_match("Eiffel", "Eiffel Tower") == 0.0
    assert token_f1("Eiffel", "Eiffel Tower") == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert token_f1("tower tower", "tower") == pytest.approx(2 * 0.5 * 1.0 / 1.5)   # counts are clipped
    assert token_f1("", "") == 1.0 and token_f1("", "Paris") == 0.0 and token_f1("Rome", "Paris") == 0.0


def test_rouge_l_is_the_lcs_f_measure():
    # LCS("the cat sat on a mat", "the cat was on the mat") = the cat on mat = 4 of 6 and 6
    assert rouge_l("the cat sat on a mat", "the cat was on the mat") == pytest.approx(4 / 6)
    assert rouge_l("mat the cat", "the cat mat") == pytest.approx(2 / 3)        # order matters, unlike F1
    assert token_f1("mat the cat", "the cat mat") == 1.0
    assert rouge_l("Same, words!", "same words") == 1.0
    assert rouge_l("", "anything") == 0.0 and rouge_l("anything", "") == 0.0


def test_scores_by_task_picks_the_metric_and_counts_bad_rows():
    rows = [{"task": "capital", "answer": "Paris", "reference": "Paris"},
            {"task": "capital", "answer": "The capital is Rome", "reference": "Rome"},
            {"task": "capital", "answer": "", "reference": "Berlin"},
            {"task": "rewrite", "answer": "the cat sat on the mat", "reference": "the cat was sitting on the mat"},
            {"task": "rewrite", "answer": "a dog", "reference": None}]
    table = scores_by_task(rows)
    cap, rew = table["capital"], table["rewrite"]
    assert cap["short_answer"] and cap["score"] == pytest.approx(1 / 3) and cap["empty"] == 1 and cap["n"] == 3
    assert not rew["short_answer"] and rew["n"] == 1 and rew["no_reference"] == 1
    assert rew["score"] == pytest.approx(rouge_l(rows[3]["answer"], rows[3]["reference"]))
    assert table["all"]["n"] == 4 and table["all"]["no_reference"] == 1
    # the pooled score weighs each task's own metric by its n: (3 × EM of capital + 1 × ROUGE-L of rewrite) / 4
    assert table["all"]["score"] == pytest.approx((3 * cap["score"] + 1 * rew["score"]) / 4)
    text = format_table({"base": table, "tuned": table})
    assert "capital" in text and "exact" in text and "ROUGE-L" in text


def test_parse_score_never_invents_a_zero():
    assert parse_score("85") == 85 and parse_score("Score: 85/100") == 85
    assert parse_score("I would say 150... no, 90") == 90          # out-of-range numbers are skipped
    assert parse_score("The response is good.") is None and parse_score("") is None


def test_summarise_scores_counts_failures():
    scores = [80, None, 60, 100, None]
    s = summarise_scores(scores)
    assert s["n"] == 3 and s["failures"] == 2 and s["mean"] == pytest.approx(80)
    assert s["se"] == pytest.approx(statistics.stdev([80, 60, 100]) / math.sqrt(3))
    assert math.isnan(summarise_scores([None])["mean"]) and summarise_scores([None])["failures"] == 1


def test_answers_stop_at_eos_within_the_budget(tok):
    """Mechanics on the tiny model (its greedy answers barely depend on position, so the left-padding check that can
    fail lives in tests/real_model/: batched == one at a time on SmolLM2)."""
    model = tiny_gpt2(tok, seed=0)
    prompts = [tok("Name a colour.")["input_ids"], tok("Add two and three, then explain why.")["input_ids"],
               tok("Hi")["input_ids"]]
    batched = generate_answers(model, tok, prompts, max_new_tokens=12, batch_size=3, progress=False)
    single = [generate_answers(model, tok, [p], max_new_tokens=12, progress=False)[0] for p in prompts]
    assert [b["ids"] for b in batched] == [s["ids"] for s in single]
    for a in batched:
        assert tok.eos_token_id not in a["ids"] and len(a["ids"]) <= 12
        assert a["stopped"] or len(a["ids"]) == 12           # not stopped: it ran out of new tokens


def test_a_judge_reply_without_a_number_is_a_counted_failure(tok, monkeypatch):
    """The judge's prompts go through the chat template; a reply with a number is parsed, one without is None."""
    tok = tok.__class__.from_pretrained(tok.name_or_path)
    tok.pad_token = tok.eos_token
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    seen = {}

    def replies(model, tokenizer, prompts, **kw):
        seen["prompts"] = [tokenizer.decode(p) for p in prompts]
        return [{"ids": [], "text": t, "stopped": True} for t in ("Score: 85", "The answer is good.")]
    monkeypatch.setattr("utils.evaluate.generate_answers", replies)
    rows = [{"instruction": "Capital of France?", "reference": "Paris", "answer": "Paris"},
            {"instruction": "2 + 2?", "reference": "4", "answer": ""}]
    scores = judge_by_generation(None, tok, rows, progress=False)
    assert scores == [85, None] and summarise_scores(scores)["failures"] == 1
    assert "correct output `Paris`" in seen["prompts"][0] and "score the model response ``" in seen["prompts"][1]


def test_load_judge_puts_the_full_mode_judge_on_the_gpu(monkeypatch):
    from utils import evaluate as ev
    moved = []

    class Model:
        def to(self, device):
            moved.append(device)
            return self
    monkeypatch.setattr(ev, "rehearsal", lambda: False)
    monkeypatch.setattr(ev, "load_model_and_tokenizer", lambda name, fast, dtype: (Model(), "tok"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    judge = ev.load_judge(fast=False)
    assert moved == ["cuda"] and judge[2] == "generation" and "stand" not in judge[3]


def test_perplexities_response_only_matches_the_training_loss(tok):
    from utils.env import pick_device_and_precision
    model = tiny_gpt2(tok, seed=0)
    pairs = [("Name a colour.", "Blue."), ("Add two and three.", "Five, because 2 + 3 = 5.")]
    examples = [dict(zip(("input_ids", "labels"), build_labels(tok(p)["input_ids"], tok(r)["input_ids"],
                                                               tok.eos_token_id))) for p, r in pairs]
    batch = pad_collate(examples, pad_token_id=tok.eos_token_id)
    pp = perplexities(model, [batch])
    assert pp["response"] == pytest.approx(math.exp(evaluate(model, [batch], pick_device_and_precision("cpu"))), rel=1e-5)
    whole = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    from utils.loss import masked_nll
    assert pp["whole"] == pytest.approx(math.exp(float(masked_nll(logits, whole))), rel=1e-5)
    assert pp["whole"] != pp["response"]


def test_bad_answers_and_missing_references_are_counted(tok, monkeypatch):
    """An answer of only special tokens decodes to nothing: it scores 0 and is counted as empty. A row without a
    reference is left out of the scores and never sent to the judge: its judge score is a counted failure."""
    from utils.evaluate import run_judge
    only_special = tok.decode([tok.eos_token_id, tok.eos_token_id], skip_special_tokens=True)
    rows = [{"task": "t", "instruction": "Say hi.", "reference": "Hi", "answer": only_special},
            {"task": "t", "instruction": "Say bye.", "reference": None, "answer": "Bye"},
            {"task": "t", "instruction": "Say yes.", "reference": "Yes", "answer": "Yes"}]
    table = scores_by_task(rows)["t"]
    assert only_special == "" and table["empty"] == 1 and table["no_reference"] == 1 and table["n"] == 2
    assert table["exact_match"] == pytest.approx(0.5)
    seen = []

    def fake_judge(model, tokenizer, judged_rows, progress=True):
        seen.extend(judged_rows)
        return [50.0 for _ in judged_rows]
    monkeypatch.setattr("utils.evaluate.judge_by_yes_no", fake_judge)
    scores = run_judge((None, None, "yes_no", "fake"), rows, progress=False)
    assert scores == [50.0, None, 50.0] and len(seen) == 2
    assert summarise_scores(scores)["failures"] == 1


def test_distinct_n_counts_distinct_ngrams_over_all_texts():
    from utils.evaluate import distinct_n
    assert distinct_n(["a b c", "d e"], 1) == 1.0
    assert distinct_n(["a a a a"], 1) == pytest.approx(1 / 4)
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)              # (a b), (b a), (a b)
    assert distinct_n(["the cat", "the cat"], 2) == pytest.approx(1 / 2)    # across texts, not within each
    assert distinct_n(["", "one"], 2) == 0.0
