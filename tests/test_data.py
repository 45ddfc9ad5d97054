"""utils.data: every real format loads, bad input is named, nothing is lost silently."""
import json
import time
from collections import Counter

import pytest

from utils.chat import ALPACA, GPT2_SFT, preference_text, to_prompt_completion, to_text
from utils.data import convert_records, detect_format, load_preferences, load_records, parse_hh_transcript, read_rows
from utils.quality import exact_duplicates, near_duplicates, split_records
from utils.schema import DataFormatError, validate_messages

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "realdata"   # shipped copies: no ../shared needed

REALDATA_FILES = {  # file -> (format, records in file)
    "alpaca_data.first200.json": ("alpaca", 200),
    "dolly15k.first34.jsonl": ("dolly", 34),
    "hh_rlhf_harmless_base_test.first200.jsonl": ("hh_rlhf", 200),
    "llms_from_scratch_instruction_data.first200.json": ("alpaca", 200),
    "llms_from_scratch_instruction_data_with_preference.first200.json": ("pref_pairs", 200),
    "oasst_message_trees.first50.jsonl": ("oasst", 50),
    "openai_chat_finetune_toy.jsonl": ("openai", 5),
    "self_instruct_seed_tasks.jsonl": ("self_instruct", 175),
    "self_instruct_user_oriented_instructions.first200.jsonl": ("self_instruct", 200),
    "sharegpt_fastchat_dummy_conversation.first200.json": ("sharegpt", 200),
}


def tree_messages(node):
    yield node
    for child in node.get("replies", []):
        yield from tree_messages(child)


# ------------------------------------------------------------------ conformance over realdata
def test_every_realdata_file_is_covered(realdata):
    assert sorted(p.name for p in realdata.glob("*.json*")) == sorted(REALDATA_FILES)


@pytest.mark.parametrize("name", sorted(REALDATA_FILES))
def test_realdata_loads_with_accounting_invariant(realdata, name):
    fmt, n_records = REALDATA_FILES[name]
    path = realdata / name
    rows, indices = read_rows(path)
    assert len(rows) == n_records and detect_format(rows[0]) == fmt
    records, rejects = load_records(path, errors="collect")
    for r in records:
        validate_messages(r["messages"])
        assert set(r) == {"id", "source", "messages", "meta"} and r["source"] == fmt
    if fmt == "oasst":
        # per message: every non-deleted message is in an emitted conversation or in rejects
        all_ids = {m["message_id"] for row in rows for m in tree_messages(row["prompt"]) if not m.get("deleted")}
        emitted = {mm["message_id"] for r in records for mm in r["meta"]["messages_meta"]}
        rejected = [r["message_id"] for r in rejects]
        assert len(rejected) == len(set(rejected)) and not emitted & set(rejected)
        assert emitted | set(rejected) == all_ids
        assert all(r["reason"] for r in rejects)
    else:
        loaded = {r["meta"]["index"] for r in records}
        rejected = {r["index"] for r in rejects}
        assert not loaded & rejected
        assert loaded | rejected == set(indices), "a record was neither loaded nor rejected"
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), "conversation ids must be unique"


def test_realdata_expected_rejects(realdata):
    _, rej = load_records(realdata / "openai_chat_finetune_toy.jsonl", errors="collect")
    assert rej == [{"index": 3, "reason": "no user turn: the conversation has a system message and an "
                                          "assistant reply but no request"}]
    _, rej = load_records(realdata / "hh_rlhf_harmless_base_test.first200.jsonl", errors="collect")
    assert [r["index"] for r in rej] == [86] and "empty assistant turn" in rej[0]["reason"]
    for name in ("alpaca_data.first200.json", "dolly15k.first34.jsonl", "sharegpt_fastchat_dummy_conversation.first200.json",
                 "self_instruct_seed_tasks.jsonl", "self_instruct_user_oriented_instructions.first200.jsonl"):
        assert load_records(realdata / name, errors="collect")[1] == [], name


def test_raise_mode_names_file_and_record(realdata):
    with pytest.raises(DataFormatError) as info:
        load_records(realdata / "openai_chat_finetune_toy.jsonl")
    err = info.value
    assert err.index == 3 and "no user turn" in err.reason
    assert "openai_chat_finetune_toy.jsonl: record 3: no user turn" in str(err)


def test_openai_edge_cases(realdata):
    recs = load_records(realdata / "openai_chat_finetune_toy.jsonl", errors="collect")[0]
    by_index = {r["meta"]["index"]: r for r in recs}
    assert len(by_index[1]["messages"]) == 9                       # multi-turn record
    assert by_index[2]["messages"][0]["role"] == "user"           # no system message
    banana = by_index[4]["messages"][-1]["content"]                # 26,000 characters, kept whole
    assert len(banana) == 26_000 and banana == "Eat a banana!" * 2000


def test_alpaca_nooutput_is_flagged_not_dropped(realdata):
    recs = load_records(realdata / "alpaca_data.first200.json")
    flagged = [r["meta"]["index"] for r in recs if r["meta"]["nooutput"]]
    assert flagged == [8]
    assert recs[8]["messages"][1]["content"].startswith("<nooutput>")


def test_dolly_context_becomes_input(realdata):
    recs = load_records(realdata / "dolly15k.first34.jsonl")
    empty = [r for r in recs if r["meta"]["input"] == ""]
    assert len(empty) == 22
    for r in empty:
        assert r["messages"][0]["content"] == r["meta"]["instruction"]
    with_ctx = next(r for r in recs if r["meta"]["input"])
    assert with_ctx["messages"][0]["content"] == with_ctx["meta"]["instruction"] + "\n\n" + with_ctx["meta"]["input"]
    assert Counter(r["meta"]["category"] for r in recs)["open_qa"] == 12


def test_sharegpt_alternates_and_maps_roles(realdata):
    recs = load_records(realdata / "sharegpt_fastchat_dummy_conversation.first200.json")
    assert Counter(len(r["messages"]) for r in recs) == {2: 67, 4: 67, 6: 66}
    assert recs[0]["id"] == "identity_0" and recs[0]["messages"][0] == {"role": "user", "content": "Who are you?"}


def test_key_order_does_not_matter(realdata):
    rows, _ = read_rows(realdata / "llms_from_scratch_instruction_data_with_preference.first200.json")
    orders = Counter(tuple(r)[-2:] for r in rows)
    assert orders[("rejected", "chosen")] == 111 and orders[("chosen", "rejected")] == 89
    reversed_rows = [dict(reversed(list(r.items()))) for r in rows]
    assert convert_records(reversed_rows, "pref_pairs") == convert_records(rows, "pref_pairs")


def test_oasst_top_only_keeps_best_ranked(realdata):
    path = realdata / "oasst_message_trees.first50.jsonl"
    all_threads = load_records(path, errors="collect")[0]
    top, rejects = load_records(path, errors="collect", top_only=True)
    assert 0 < len(top) < len(all_threads)
    for r in top:
        ranks = [m["rank"] for m in r["meta"]["messages_meta"][1:]]
        assert all(rank in (0, None) for rank in ranks), ranks
    assert any("not the top-ranked reply" in r["reason"] for r in rejects)
    keys = set(top[0]["meta"]["messages_meta"][0])
    assert {"rank", "synthetic", "lang", "message_id"} <= keys


def test_oasst_raise_mode_warns_about_unanswered_prompts(realdata):
    with pytest.warns(UserWarning, match=r"110 message\(s\) left out: 110 × prompter message with no assistant"):
        load_records(realdata / "oasst_message_trees.first50.jsonl")


def test_oasst_flat_rows_give_the_same_threads(realdata):
    path = realdata / "oasst_message_trees.first50.jsonl"
    rows, _ = read_rows(path)
    flat = []
    for row in rows:
        def walk(node, parent):
            flat.append({k: v for k, v in node.items() if k != "replies"} |
                        {"parent_id": parent, "message_tree_id": row["message_tree_id"]})
            for child in node.get("replies", []):
                walk(child, node["message_id"])
        walk(row["prompt"], None)
    assert detect_format(flat[0]) == "oasst_flat"
    from_flat, rej_flat = convert_records(flat, None, errors="collect", source="oasst")
    from_tree, rej_tree = load_records(path, errors="collect")
    assert sorted(r["id"] for r in from_flat) == sorted(r["id"] for r in from_tree)
    tree_by_id = {r["id"]: r["messages"] for r in from_tree}
    assert all(tree_by_id[r["id"]] == r["messages"] for r in from_flat)
    assert len(rej_flat) == len(rej_tree)


def test_preferences(realdata):
    pairs, rej = load_preferences(realdata / "hh_rlhf_harmless_base_test.first200.jsonl", errors="collect")
    assert len(pairs) + len(rej) == 200 and [r["index"] for r in rej] == [86]
    for p in pairs:
        assert p["prompt"][-1]["role"] == "user"
        assert p["chosen"][0]["role"] == "assistant" and p["rejected"][0]["role"] == "assistant"
        assert p["chosen"] != p["rejected"]
    pairs, rej = load_preferences(realdata / "llms_from_scratch_instruction_data_with_preference.first200.json",
                                  errors="collect")
    assert len(pairs) == 199 and rej == [{"index": 122, "reason": "chosen and rejected are the same response"}]
    with pytest.raises(DataFormatError, match="has no preference pairs"):
        load_preferences(realdata / "alpaca_data.first200.json")


def test_hh_prefix_split_reconstructs_transcripts(realdata):
    rows, _ = read_rows(realdata / "hh_rlhf_harmless_base_test.first200.jsonl")
    pairs = load_preferences(realdata / "hh_rlhf_harmless_base_test.first200.jsonl", errors="collect")[0]
    for p in pairs:
        row = rows[p["meta"]["index"]]
        assert p["prompt"] + p["chosen"] == parse_hh_transcript(row["chosen"])
        assert p["prompt"] + p["rejected"] == parse_hh_transcript(row["rejected"])


# ------------------------------------------------------------------ bad input, each named
def write_jsonl(tmp_path, rows, name="bad.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


GOOD_ALPACA = {"instruction": "Add 2 and 3.", "input": "", "output": "5"}


@pytest.mark.parametrize("bad,fmt,reason", [
    ({"instruction": "x", "input": ""}, "alpaca", "missing key 'output'"),
    ({"instruction": "x", "input": "", "output": 5}, "alpaca", "'output' should be str, got int"),
    ({"instruction": "x", "input": "", "output": ""}, "alpaca", "empty assistant turn"),
    ({"instruction": "", "input": "", "output": "y"}, "alpaca", "empty user turn"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}]}, "openai",
     "unknown role 'bot' in message 1"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                   {"role": "assistant", "content": "c"}]}, "openai", "roles do not alternate: message 1 is 'user'"),
    ({"messages": [{"role": "user", "content": "a"}]}, "openai", "no assistant turn"),
    ({"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "c"}]}, "openai",
     "no user turn"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                   {"role": "user", "content": "c"}]}, "openai", "ends with a user turn"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": None}]}, "openai",
     "content should be str, got NoneType"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                   {"role": "system", "content": "late"}]}, "openai", "system message at position 2"),
    ({"messages": "hello"}, "openai", "'messages' should be list, got str"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "robot", "value": "b"}]}, "sharegpt",
     "unknown speaker 'robot' in turn 1"),
    ({"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "b"}]}, "sharegpt",
     "roles do not alternate: message 0 is 'assistant' first"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "  "}]}, "sharegpt",
     "empty assistant turn (message 1)"),
    ({"instruction": "x", "context": "", "response": "y", "category": 3}, "dolly", "'category' should be str"),
    ({"id": "t", "instruction": "x", "instances": []}, "self_instruct", "'instances' is empty"),
    ({"chosen": "Human: hi\n\nAssistant: yo", "rejected": "x"}, "hh_rlhf", "does not start with"),
    ({"message_tree_id": "t", "prompt": {"message_id": "m", "text": "hi", "role": "assistant"}}, "oasst",
     "roles do not alternate"),
    ({"message_tree_id": "t", "prompt": {"message_id": "m", "text": "hi", "role": "human"}}, "oasst",
     "unknown role 'human'"),
])
def test_bad_record_raises_naming_record(tmp_path, bad, fmt, reason):
    path = write_jsonl(tmp_path, [bad])
    with pytest.raises(DataFormatError) as info:
        load_records(path, format=fmt)
    assert info.value.index == 0 and reason in info.value.reason, info.value.reason
    assert str(path) in str(info.value) and "record 0" in str(info.value)
    # the same record in the middle of good ones: collected with its index, the others kept
    if fmt == "alpaca":
        path = write_jsonl(tmp_path, [GOOD_ALPACA, bad, GOOD_ALPACA], name="mixed.jsonl")
        recs, rejects = load_records(path, format=fmt, errors="collect")
        assert [r["meta"]["index"] for r in recs] == [0, 2]
        assert len(rejects) == 1 and rejects[0]["index"] == 1 and reason in rejects[0]["reason"]
    else:
        recs, rejects = load_records(path, format=fmt, errors="collect")
        assert recs == [] and rejects[0]["index"] == 0 and reason in rejects[0]["reason"]


def test_invalid_json_line_is_named(tmp_path):
    path = write_jsonl(tmp_path, [GOOD_ALPACA, GOOD_ALPACA, '{"instruction": "x", "output": '])
    with pytest.raises(DataFormatError, match=r"record 2: invalid JSON on line 3") as info:
        load_records(path)
    assert info.value.index == 2
    recs, rejects = load_records(path, errors="collect")
    assert len(recs) == 2 and rejects[0]["index"] == 2 and "invalid JSON on line 3" in rejects[0]["reason"]


def test_invalid_json_array_names_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"instruction": "a", "input": "", "output": "b"},\n  {"instruction": }\n]', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"invalid JSON on line 3"):
        load_records(path)


def test_undetectable_format(tmp_path):
    path = write_jsonl(tmp_path, [{"question": "q", "answer": "a"}])
    with pytest.raises(DataFormatError, match=r"record 0: cannot detect the format from the keys \['answer', 'question'\]"):
        load_records(path)


def test_collect_keeps_good_records_around_bad_ones(tmp_path):
    path = write_jsonl(tmp_path, [GOOD_ALPACA, {"instruction": "x"}, "", GOOD_ALPACA, [1, 2]])
    recs, rejects = load_records(path, format="alpaca", errors="collect")
    assert [r["meta"]["index"] for r in recs] == [0, 3]
    assert [(r["index"], r["reason"]) for r in rejects] == [(1, "missing key 'output'"),
                                                          (4, "expected a JSON object, got list")]


def test_errors_argument_is_checked(tmp_path):
    with pytest.raises(ValueError, match="errors must be"):
        load_records(write_jsonl(tmp_path, [GOOD_ALPACA]), errors="ignore")


# ------------------------------------------------------------------ converters and tools
def test_to_prompt_completion_and_text(realdata):
    recs = load_records(realdata / "llms_from_scratch_instruction_data.first200.json")
    with_input = recs[0]
    pc = to_prompt_completion(with_input, ALPACA)
    assert pc["prompt"].endswith("### Input:\nfreind --> friend\n\n### Response:\n")
    assert pc["completion"] == with_input["messages"][1]["content"]
    text = to_text(with_input, GPT2_SFT)
    assert text == ("<|endoftext|>Evaluate the following phrase by transforming it into the spelling given."
                    "\n\n### Input:\nfreind --> friend\n\n### Response:\n" + pc["completion"] + "<|endoftext|>")
    openai = load_records(realdata / "openai_chat_finetune_toy.jsonl", errors="collect")[0]
    first = to_prompt_completion(openai[0], GPT2_SFT)
    assert first["prompt"].startswith("<|endoftext|>" + openai[0]["messages"][0]["content"] + "\n\n")
    with pytest.raises(DataFormatError, match="has 4 exchanges"):
        to_text(openai[1], GPT2_SFT)


def test_duplicates():
    texts = ["Name a fruit.", "name a FRUIT!", "What is the capital of France today please",
             "What is the capital of France today, please?", "Completely different words here now"]
    assert exact_duplicates(texts) == [(0, 1), (2, 3)]
    near = near_duplicates(texts + ["What is the capital of France today please tell me"], n=2, threshold=0.5)
    assert (2, 3, 1.0) in near
    assert any(i == 2 and j == 5 and abs(s - 7 / 9) < 1e-9 for i, j, s in near)     # 7 shared bigrams of 9
    assert not any(4 in (i, j) for i, j, _ in near)


def test_near_duplicates_lsh_finds_what_all_pairs_find():
    """MinHash-LSH candidates + exact Jaccard == comparing every pair, on real prompts (Alpaca + LLMs-from-scratch)."""
    from itertools import combinations
    from utils.quality import jaccard, ngrams
    texts = [r["messages"][0]["content"] for f in ("alpaca_data.first200.json", "llms_from_scratch_instruction_data.first200.json")
             for r in load_records(DATA_DIR / f)]
    texts += [texts[5] + " Please.", texts[7].replace("a", "the", 1)]          # two planted near-copies
    grams = [ngrams(t, 3) for t in texts]
    similarity = {(i, j): jaccard(grams[i], grams[j]) for i, j in combinations(range(len(texts)), 2)}
    brute = {pair for pair, s in similarity.items() if s >= 0.7}
    found = near_duplicates(texts, n=3, threshold=0.5)
    # at J ≥ 0.7 LSH misses a pair with probability 2e-4: it must find them all; below, only real pairs
    assert {(i, j) for i, j, s in found if s >= 0.7} == brute and len(brute) >= 2
    assert all(similarity[i, j] >= 0.5 for i, j, _ in found)
    assert all(abs(s - jaccard(grams[i], grams[j])) < 1e-9 for i, j, s in found)
    assert [s for *_, s in found] == sorted((s for *_, s in found), reverse=True)


def test_minhash_agreement_estimates_jaccard():
    from utils.quality import _gram_hashes, minhash_signatures
    a = " ".join(f"w{i}" for i in range(60))
    b = " ".join(f"w{i}" for i in range(20, 80))          # 3-gram Jaccard 38/78 ≈ 0.49
    sig = minhash_signatures([_gram_hashes(a, 3), _gram_hashes(b, 3)], num_perm=512)
    assert abs((sig[0] == sig[1]).mean() - 38 / 78) < 0.07   # ±3 standard errors of 512 draws
    assert (minhash_signatures([_gram_hashes("", 3)]) == -1).all()


def test_split_is_deterministic_and_order_free():
    recs = [{"id": f"r{i}"} for i in range(2000)]
    a = split_records(recs, seed=1)
    b = split_records(list(reversed(recs)), seed=1)
    assert [sorted(r["id"] for r in s) for s in a] == [sorted(r["id"] for r in s) for s in b]
    assert sum(map(len, a)) == 2000 and abs(len(a[0]) / 2000 - 0.85) < 0.03
    assert {r["id"] for r in a[2]} != {r["id"] for r in split_records(recs, seed=2)[2]}


def test_speed_50k_alpaca_records():
    """Conversion is linear in the number of records — measured as a ratio, not a wall-clock budget.

    50,000 records take ~10× the time of 5,000 when the work is linear and ~100× when it is quadratic;
    both runs share the machine's load, so the ratio does not flake on a busy CI runner. The absolute
    bound (60 s; about 1.5 s on an idle laptop) only catches a pathological slowdown and is generous on purpose.
    """
    def rows(n):
        return [{"instruction": f"Instruction number {i}: rewrite the sentence.", "input": "" if i % 3 else f"input {i}",
                 "output": f"Answer {i} " * 5} for i in range(n)]

    def seconds(n):
        data = rows(n)
        start = time.perf_counter()
        texts = [to_text(r, GPT2_SFT) for r in convert_records(data, "alpaca")]
        assert len(texts) == n
        return time.perf_counter() - start

    small, large = seconds(5_000), seconds(50_000)
    print(f"5,000 records in {small:.2f} s, 50,000 in {large:.2f} s (ratio {large / small:.1f}; linear = 10)")
    assert large <= 30 * small + 0.5, f"50,000 records took {large / small:.1f}× the time of 5,000: not linear"
    assert large <= 60.0, f"{large:.2f} s for 50,000 records"


def test_download_fails_fast_with_a_clear_message(tmp_path):
    from utils.sources import download
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="set COURSE_FAST=1"):
        download("http://127.0.0.1:9/instruction-data.json", tmp_path / "x.json", timeout=5)
    assert time.perf_counter() - start < 10
    assert not any(tmp_path.iterdir()), "no partial file may be left behind"


def test_download_reuses_an_existing_file(tmp_path):
    from utils.sources import download
    existing = tmp_path / "x.json"
    existing.write_text("[]")
    assert download("http://127.0.0.1:9/never-fetched", existing) == existing


def test_load_json_reads_paths_and_fetches_urls_once(tmp_path, realdata):
    from utils.sources import load_json
    path = realdata / "llms_from_scratch_instruction_data.first200.json"
    assert load_json(path, tmp_path / "unused.json") == json.loads(path.read_text(encoding="utf-8"))
    cached = tmp_path / "cache.json"
    cached.write_text('[{"instruction": "x"}]')                 # already downloaded: no network needed
    assert load_json("https://example.invalid/data.json", cached) == [{"instruction": "x"}]
    with pytest.raises(RuntimeError, match="set COURSE_FAST=1"):
        load_json("https://127.0.0.1:9/data.json", tmp_path / "missing.json")


def test_preference_text_round_trips_hh_transcripts(realdata):
    path = realdata / "hh_rlhf_harmless_base_test.first200.jsonl"
    pairs, _ = load_preferences(path, errors="collect")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for pair in pairs[:50]:
        text = preference_text(pair)
        row = rows[pair["meta"]["index"]]
        assert text["prompt"] + text["chosen"] == row["chosen"].rstrip() or \
            (text["prompt"] + text["chosen"]).split() == row["chosen"].split()
        assert (text["prompt"] + text["rejected"]).split() == row["rejected"].split()
        assert text["prompt"].endswith("\n\nAssistant:") and text["chosen"].startswith(" ")


def test_usable_pairs_on_real_hh_transcripts(realdata):
    """Multi-turn HH pairs: prompts cut by whole rounds stay real transcripts (a suffix of the original that starts
    with a Human turn), every kept pair fits, and the counts add up."""
    from utils.chat import usable_pairs
    from utils.models import load_gpt2_tokenizer
    tok = load_gpt2_tokenizer()
    pairs, _ = load_preferences(realdata / "hh_rlhf_harmless_base_test.first200.jsonl", errors="collect")
    texts = [preference_text(p) for p in pairs]
    kept, dropped = usable_pairs(texts, tok, max_length=160, max_prompt=96)
    assert len(kept) + sum(dropped.values()) == len(texts)
    assert dropped["longer than max_length"] > 0 and len(kept) > len(texts) // 3
    originals = {(t["chosen"], t["rejected"]): t["prompt"] for t in texts}
    shortened = 0
    for k in kept:
        original = originals[(k["chosen"], k["rejected"])]
        assert original.endswith(k["prompt"]) and k["prompt"].startswith("\n\nHuman:")
        assert len(tok(k["prompt"])["input_ids"]) <= 96
        shortened += k["prompt"] != original
    assert shortened > 0                                   # some multi-turn prompts were cut by whole rounds
