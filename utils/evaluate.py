"""Evaluation: what did tuning change?  Answers, scores by task, an LLM judge, two perplexities.

- :func:`generate_answers` — greedy answers for a held-out set, batched, sliced off by token ids.
- :func:`exact_match`, :func:`token_f1` (SQuAD v1.1's definitions) for short answers, :func:`rouge_l` for longer
  ones; :func:`scores_by_task` → a table per task, :func:`plot_by_task` → a bar chart, before vs after.
- :func:`judge_prompt`, :func:`parse_score`, :func:`judge_by_generation` — an LLM judge after LLMs-from-scratch
  (ch. 7: score 0–100 against the reference); :func:`judge_by_yes_no`, a log-probability judge for models too
  small to write a number; :func:`summarise_scores` → mean ± standard error and the failure count.
- :func:`perplexities` — response-only and whole-sequence perplexity of the same batches.
- :func:`distinct_n` — how varied a set of answers is (distinct n-grams over all n-grams).

ROUGE-L is written here (the longest common subsequence, 12 lines) rather than taken from ``rouge-score``
(Google's reference implementation, last released 2022): it would add nltk and absl to every Colab install for
one function. The definition is rouge-score's ``rougeL`` F-measure without stemming: tokens are lowercased runs
of letters and digits, F = 2PR/(P+R) of the LCS length over answer and reference lengths.

Bad input never crashes and never scores a silent 0 without saying so: a missing reference is counted and left
out; an empty answer (or one of only special tokens, which decodes to nothing) scores 0 and is counted; a judge
reply without a number is a counted failure, not a 0.

Introduced in notebook 04 (before/after tuning GPT-2); used again in 05 (full vs LoRA) and 07 (SFT vs PPO vs DPO).
"""
from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from .env import rehearsal
from .loss import masked_nll, n_targets
from .models import SMOLLM2_INSTRUCT, load_model_and_tokenizer, load_smollm2_instruct

#: The full-mode judge: SmolLM2-1.7B-Instruct (Apache-2.0, not gated; ≈ 3.4 GB in fp16, so it fits a T4 beside
#: GPT-2). LLMs-from-scratch judges with Llama-3-8B (16 GB in fp16: does not fit a T4, and gated). SmolLM2 shares
#: the offline judge's family and ChatML template; the question differs (full mode asks for a 0–100 score, the
#: 135 M offline judge is asked Yes/No, see :func:`judge_by_yes_no`).
JUDGE_MODEL = "HuggingFaceTB/SmolLM2-1.7B-Instruct"


# =========================================================================== answers
@torch.no_grad()
def generate_answers(model, tokenizer, prompts: Sequence[Sequence[int]], *, max_new_tokens: int = 64,
                     batch_size: int = 8, eos_token_id: int | None = None, progress: bool = True) -> list[dict]:
    """Greedy answers to ``prompts`` (lists of token ids), ``batch_size`` at a time.

    Prompts are padded on the **left**, so every prompt ends where generation starts; the answer is what comes
    after the padded prompt, cut at the first EOS (token ids, never a search in the decoded text). Returns per
    prompt ``{"ids", "text", "stopped"}`` — ``stopped`` is whether the model ended with EOS by itself.
    """
    eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    was_training = model.training
    model.eval()
    out = []
    device = next(model.parameters()).device
    for i in tqdm(range(0, len(prompts), batch_size), desc="generating", disable=not progress):
        chunk = [list(p) for p in prompts[i:i + batch_size]]
        T = max(len(p) for p in chunk)
        ids = torch.tensor([[pad] * (T - len(p)) + p for p in chunk], device=device)
        mask = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in chunk], device=device)
        gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=eos, pad_token_id=pad)[:, T:].tolist()
        for new in gen:
            stopped = eos in new
            new = new[:new.index(eos)] if stopped else new
            out.append({"ids": new, "text": tokenizer.decode(new, skip_special_tokens=True).strip(), "stopped": stopped})
    model.train(was_training)
    return out


def answer_rows(model, tokenizer, records: Sequence[dict], prompts: Sequence[Sequence[int]], *,
                max_new_tokens: int = 64, batch_size: int = 8, progress: bool = True) -> list[dict]:
    """Greedy answers to course records (``messages``: user then assistant) as rows for :func:`scores_by_task`
    and the judge: ``task`` (:func:`task_by_first_word`), ``instruction``, ``reference``, ``answer``."""
    instructions = [r["messages"][0]["content"] for r in records]
    outs = generate_answers(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                            progress=progress)
    return [{"task": t, "instruction": i, "reference": r["messages"][1]["content"], "answer": o["text"]}
            for t, i, r, o in zip(task_by_first_word(instructions), instructions, records, outs)]


# =========================================================================== reference-based scores
def normalize_answer(text: str) -> list[str]:
    """SQuAD v1.1's normalisation: lowercase, drop punctuation and the articles a/an/the, split on whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return re.sub(r"\b(a|an|the)\b", " ", text).split()


def exact_match(answer: str, reference: str) -> float:
    """1.0 when the normalised answer equals the normalised reference (SQuAD's EM), else 0.0."""
    return float(normalize_answer(answer) == normalize_answer(reference))


def token_f1(answer: str, reference: str) -> float:
    """Harmonic mean of token precision and recall over normalised tokens (SQuAD's F1): partial credit."""
    a, r = normalize_answer(answer), normalize_answer(reference)
    common = sum((Counter(a) & Counter(r)).values())
    if common == 0:
        return float(a == r)                     # both empty: 1 (as SQuAD v2's script); nothing shared: 0
    precision, recall = common / len(a), common / len(r)
    return 2 * precision * recall / (precision + recall)


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(answer: str, reference: str) -> float:
    """ROUGE-L F-measure: the longest common subsequence of the two token lists, as precision over the answer
    and recall over the reference. Order matters (unlike F1), gaps are allowed (unlike exact match)."""
    a, r = re.findall(r"[a-z0-9]+", answer.lower()), re.findall(r"[a-z0-9]+", reference.lower())
    lcs = _lcs_length(a, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def task_by_first_word(instructions: Sequence[str], min_count: int = 3) -> list[str]:
    """A task label per instruction from its first word ("rewrite", "translate", "what"...), for datasets that
    carry no task category; first words seen fewer than ``min_count`` times become ``"other"``. A rough grouping,
    by construction: it tells apart the kinds of request, not their difficulty."""
    words = [(re.findall(r"[a-z]+", text.lower()) or ["other"])[0] for text in instructions]
    counts = Counter(words)
    return [w if counts[w] >= min_count else "other" for w in words]


def scores_by_task(rows: Sequence[dict], *, short_answer_words: int = 3) -> dict[str, dict]:
    """Per task: ``n``, mean ``exact_match``, ``f1``, ``rouge_l`` and the ``score`` that fits the task.

    ``rows`` carry ``task``, ``answer`` and ``reference``. A task whose references have a median length of at most
    ``short_answer_words`` words is *short-answer* and its ``score`` is exact match (the answer is right or not);
    otherwise it is ROUGE-L (many wordings are right). ``"all"`` pools every row: its ``score`` is the mean of the
    task scores weighted by their ``n``, each task measured with its own metric. Rows without a reference are
    counted in ``no_reference`` and left out; empty answers score 0 and are counted in ``empty``.
    """
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row.get("task") or "other", []).append(row)
    groups = dict(sorted(groups.items()))
    groups["all"] = list(rows)
    table = {}
    for task, members in groups.items():
        scored = [r for r in members if r.get("reference")]
        entry = {"n": len(scored), "no_reference": len(members) - len(scored),
                 "empty": sum(not (r.get("answer") or "").strip() for r in scored)}
        for name, fn in (("exact_match", exact_match), ("f1", token_f1), ("rouge_l", rouge_l)):
            values = [fn(r.get("answer") or "", r["reference"]) for r in scored]
            entry[name] = sum(values) / len(values) if values else float("nan")
        words = sorted(len(r["reference"].split()) for r in scored)
        entry["short_answer"] = bool(words) and words[len(words) // 2] <= short_answer_words
        entry["score"] = entry["exact_match"] if entry["short_answer"] else entry["rouge_l"]
        table[task] = entry
    per_task = [e for t, e in table.items() if t != "all" and e["n"]]
    total = sum(e["n"] for e in per_task)
    table["all"]["score"] = sum(e["score"] * e["n"] for e in per_task) / total if total else float("nan")
    table["all"]["short_answer"] = None                  # mixed: each task with its own metric
    return table


def metric_name(entry: dict) -> str:
    """How a :func:`scores_by_task` entry was scored: ``exact`` (short answers), ``ROUGE-L``, or ``mixed`` (``all``)."""
    return {True: "exact", False: "ROUGE-L", None: "mixed"}[entry["short_answer"]]


def format_table(columns: dict[str, dict[str, dict]], key: str = "score") -> str:
    """A text table of ``key`` per task (rows) for each model (columns), e.g. ``{"base": t1, "tuned": t2}``."""
    names = list(columns)
    tasks = list(next(iter(columns.values())))
    width = max(len(t) for t in tasks) + 2
    col = max(12, *(len(n) + 2 for n in names))
    lines = [f"{'task':{width}s}{'n':>5s}  {'metric':10s}" + "".join(f"{n:>{col}s}" for n in names)]
    for t in tasks:
        first = columns[names[0]][t]
        lines.append(f"{t:{width}s}{first['n']:5d}  {metric_name(first):10s}" + "".join(f"{columns[n][t][key]:{col}.3f}" for n in names))
    return "\n".join(lines)


def plot_by_task(columns: dict[str, dict[str, dict]], key: str = "score", title: str = "accuracy by task"):
    """Grouped bars: one group per task, one bar per model; the metric of each task is in its label."""
    import matplotlib.pyplot as plt
    names = list(columns)
    tasks = list(next(iter(columns.values())))
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(tasks)), 3.5))
    for k, name in enumerate(names):
        ax.bar([i + k * width for i in range(len(tasks))], [columns[name][t][key] for t in tasks], width, label=name)
    first = columns[names[0]]
    ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(tasks))],
                  [f"{t}\n({metric_name(first[t])}, n={first[t]['n']})" for t in tasks],
                  fontsize=8)
    ax.set(ylim=(0, 1), ylabel="score (0–1)", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def print_report_card(tables: dict[str, dict], judged: dict[str, dict] | None = None,
                      perplexity: dict[str, dict[str, float]] | None = None) -> None:
    """One column per model: accuracy over all tasks, the judge's mean ± SE and failures (when judged), and the
    perplexities (``{"response": …, "whole": …}``, either key optional)."""
    names = list(tables)
    col = max(16, *(len(n) + 2 for n in names))
    print(f"{'':24s}" + "".join(f"{n:>{col}s}" for n in names))
    print(f"{'score, all tasks':24s}" + "".join(f"{tables[n]['all']['score']:{col}.3f}" for n in names))
    print(f"{'empty answers':24s}" + "".join(f"{tables[n]['all']['empty']:{col}d}" for n in names))
    print(f"{'rows without reference':24s}" + "".join(f"{tables[n]['all']['no_reference']:{col}d}" for n in names))
    if judged:
        cells = ["no score" if judged[n]["n"] == 0 else f"{judged[n]['mean']:.1f} ± {judged[n]['se']:.1f}" for n in names]
        print(f"{'judge, mean ± SE':24s}" + "".join(f"{c:>{col}s}" for c in cells))
        print(f"{'judge failures':24s}" + "".join(f"{judged[n]['failures']:{col}d}" for n in names))
    for key, label in (("response", "PP, response only"), ("whole", "PP, whole sequence")):
        if perplexity and all(key in perplexity[n] for n in names):
            print(f"{label:24s}" + "".join(f"{perplexity[n][key]:{col},.2f}" for n in names))


# =========================================================================== an LLM judge
def judge_prompt(instruction: str, reference: str, answer: str) -> str:
    """The judging request of LLMs-from-scratch ch. 7 (``ollama_evaluate.ipynb``). The book passes the whole
    Alpaca-formatted prompt as the input; we pass the instruction text (with its input, if any)."""
    return (f"Given the input `{instruction}` and correct output `{reference}`, score the model response `{answer}`"
            " on a scale from 0 to 100, where 100 is the best score. Respond with the integer number only.")


def parse_score(reply: str) -> int | None:
    """The first integer 0–100 in the judge's reply; None when there is none (a failure to count, not a 0)."""
    for m in re.finditer(r"\d+", reply):
        if 0 <= int(m.group()) <= 100:
            return int(m.group())
    return None


def _chat_ids(tokenizer, text: str) -> list[int]:
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                         tokenize=True, return_dict=True)["input_ids"]


def judge_by_generation(judge, tokenizer, rows: Sequence[dict], *, batch_size: int = 8, max_new_tokens: int = 8,
                        progress: bool = True) -> list[int | None]:
    """Ask an instruct model (its chat template) for a 0–100 score of each row's ``answer`` against its
    ``reference``; the score is parsed from the reply (None = no number: count it)."""
    prompts = [_chat_ids(tokenizer, judge_prompt(r["instruction"], r["reference"], r.get("answer") or ""))
               for r in rows]
    replies = generate_answers(judge, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                               progress=progress)
    return [parse_score(r["text"]) for r in replies]


YES_NO_QUESTION = ("Question: {instruction}\nCorrect answer: {reference}\nStudent answer: {answer}\n"
                   "Does the student answer mean the same as the correct answer? Answer Yes or No.")


@torch.no_grad()
def judge_by_yes_no(judge, tokenizer, rows: Sequence[dict], *, progress: bool = True) -> list[float]:
    """A log-probability judge for a model too small to write a score: ask whether the answer means the same as
    the reference and read the next-token probabilities of "Yes" and "No" (no generation, nothing to parse).
    Score = 100 · P(Yes) / (P(Yes) + P(No)), with each side summed over the spellings ``Yes``/`` Yes``/``yes``."""
    yes = sorted({tokenizer.encode(w)[0] for w in ("Yes", " Yes", "yes")})
    no = sorted({tokenizer.encode(w)[0] for w in ("No", " No", "no")})
    device = next(judge.parameters()).device
    scores = []
    for r in tqdm(rows, desc="judging", disable=not progress):
        ids = _chat_ids(tokenizer, YES_NO_QUESTION.format(instruction=r["instruction"], reference=r["reference"],
                                                          answer=r.get("answer") or ""))
        logp = torch.log_softmax(judge(input_ids=torch.tensor([ids], device=device)).logits[0, -1].float(), -1)
        p_yes, p_no = torch.logsumexp(logp[yes], 0).exp(), torch.logsumexp(logp[no], 0).exp()
        scores.append(float(100 * p_yes / (p_yes + p_no)))
    return scores


def load_judge(fast: bool):
    """``(model, tokenizer, method, description)`` of the judge for this mode. Full mode: :data:`JUDGE_MODEL` from
    the Hub on the GPU, scored by generation. Fast mode: SmolLM2-135M-Instruct offline, scored by
    :func:`judge_by_yes_no` (it cannot reliably write a number). Rehearsal: the full-mode code path with a stand-in,
    SmolLM2-135M-Instruct's architecture with random weights (the 1.7 B model's config is not shipped), so it proves
    the path runs — every reply a counted failure — not the judge's memory or time."""
    if fast:
        model, tok, source = load_smollm2_instruct(hub=False)
        return model, tok, "yes_no", f"SmolLM2-135M-Instruct ({source}), P(Yes) judge"
    name = SMOLLM2_INSTRUCT if rehearsal() else JUDGE_MODEL
    cuda = torch.cuda.is_available()
    model, tok = load_model_and_tokenizer(name, fast=False, dtype=torch.float16 if cuda else torch.float32)
    model.to("cuda" if cuda else "cpu")                 # the loader leaves it on the CPU: 1.7 B there takes hours
    stand_in = f" (rehearsal: {name}'s architecture, random weights, standing in)" if rehearsal() else ""
    return model, tok, "generation", f"{JUDGE_MODEL}, score 0–100 parsed from its reply{stand_in}"


def run_judge(judge, rows: Sequence[dict], *, progress: bool = True) -> list[float | None]:
    """Scores (0–100) of ``rows`` by a judge from :func:`load_judge`; None where the reply held no number or the
    row has no reference (both are failures to count, not zeros)."""
    model, tok, method, _ = judge
    usable = [r for r in rows if r.get("reference")]           # no reference, nothing to judge against: a failure
    fn = judge_by_yes_no if method == "yes_no" else judge_by_generation
    scores = iter(fn(model, tok, usable, progress=progress) if usable else [])
    return [next(scores) if r.get("reference") else None for r in rows]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct-n (Li et al., 2016): distinct word n-grams over all word n-grams, across every text together —
    1.0 when nothing repeats, near 0 when the answers loop or all say the same thing. 0.0 when there is no n-gram."""
    grams = [tuple(words[i:i + n]) for t in texts for words in [t.split()] for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def summarise_scores(scores: Sequence[float | None]) -> dict[str, float]:
    """Mean, standard error of the mean and count of the scores that exist, and how many failed (None)."""
    ok = [float(s) for s in scores if s is not None]
    n = len(ok)
    mean = sum(ok) / n if n else float("nan")
    se = math.sqrt(sum((s - mean) ** 2 for s in ok) / (n - 1) / n) if n > 1 else float("nan")
    return {"mean": mean, "se": se, "n": n, "failures": len(scores) - n}


# =========================================================================== perplexity, two ways
@torch.no_grad()
def perplexities(model, batches: Sequence[dict[str, torch.Tensor]], autocast: Callable | None = None) -> dict[str, float]:
    """Perplexity over the response tokens only (the training loss's tokens) and over every real token.

    The whole-sequence one also predicts the prompt — the instruction, with its template text — which the model
    did not learn to write, so the two differ; they also weigh long prompts differently. Each batch holds
    ``input_ids``, ``attention_mask`` and ``labels`` (-100 outside the response), as from ``pad_collate``.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()                                         # dropout off, as in utils.training.evaluate
    sums = {"response": 0.0, "whole": 0.0}
    counts = {"response": 0, "whole": 0}
    for b in batches:
        b = {k: v.to(device) for k, v in b.items()}
        with (autocast() if autocast else torch.autocast(device.type, enabled=False)):
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        whole = b["input_ids"].masked_fill(b["attention_mask"] == 0, -100)
        for name, labels in (("response", b["labels"]), ("whole", whole)):
            sums[name] += float(masked_nll(logits, labels, reduction="sum"))
            counts[name] += n_targets(labels)
    model.train(was_training)
    return {name: math.exp(sums[name] / max(counts[name], 1)) for name in sums}
