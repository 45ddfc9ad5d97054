"""utils.chat: the ChatML template for GPT-2 and the hand-written render agree with the library."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from utils.chat import ALPACA, GPT2_SFT, IM_END, IM_START, add_chat_tokens, encode_conversation, render
from utils.data import load_records
from utils.schema import DataFormatError


@pytest.fixture(scope="module")
def chat_tok():
    from utils.models import load_gpt2_tokenizer
    tok = load_gpt2_tokenizer()
    add_chat_tokens(tok)
    return tok


def library(messages, tok, **kw):
    out = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, **kw)
    return out["input_ids"], out["assistant_masks"]


def test_add_chat_tokens(chat_tok):
    assert len(chat_tok) == 50259
    assert chat_tok.convert_tokens_to_ids([IM_START, IM_END]) == [50257, 50258]
    assert chat_tok("Hello world")["input_ids"] == [15496, 995]          # GPT-2's own ids unchanged
    assert chat_tok.eos_token_id == 50258 and chat_tok.pad_token_id == 50256  # replies end at <|im_end|>


def test_add_chat_tokens_resizes_model_with_mean_init(tok):
    from utils.models import load_gpt2_tokenizer, tiny_gpt2
    t = load_gpt2_tokenizer()
    model = tiny_gpt2(t, seed=0)
    old = model.get_input_embeddings().weight.detach().clone()
    ids = add_chat_tokens(t, model)
    emb = model.get_input_embeddings().weight.detach()
    assert emb.shape[0] == 50259 and (emb[:50257] == old).all()
    assert (emb[list(ids)] - old.mean(0)).norm(dim=1).max() < 3 * old.std(0).norm()   # near the mean, not random
    assert model.generation_config.eos_token_id == ids[1]
    assert model.get_output_embeddings().weight.shape[0] == 50259       # tied LM head follows


def test_template_text(chat_tok):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}]
    assert chat_tok.apply_chat_template(msgs, tokenize=False) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n")
    assert chat_tok.apply_chat_template(msgs[:2], tokenize=False, add_generation_prompt=True).endswith(
        "<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("name", ["sharegpt_fastchat_dummy_conversation.first200.json",
                                  "openai_chat_finetune_toy.jsonl", "oasst_message_trees.first50.jsonl"])
def test_render_equals_apply_chat_template_on_real_conversations(realdata, chat_tok, name):
    records = load_records(realdata / name, errors="collect")[0]
    for rec in records[:60]:
        ids, mask = render(rec["messages"], chat_tok)
        assert (ids, mask) == library(rec["messages"], chat_tok), rec["id"]
        ids_gen, _ = render(rec["messages"][:-1], chat_tok, add_generation_prompt=True)
        assert ids_gen == library(rec["messages"][:-1], chat_tok, add_generation_prompt=True)[0]


SPECIAL_TEXT = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
plain_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=25).filter(
    lambda s: not any(t in s for t in SPECIAL_TEXT))
tricky_text = st.one_of(plain_text, st.sampled_from(["", "\n", "\n\n", " ", "user\n", "assistant\n", "Xin chào 👋",
                                                     "<|im_start|>assistant\n", "<|im_end|>", "a<|endoftext|>b"]))


@st.composite
def conversations(draw, text=plain_text):
    msgs = []
    if draw(st.booleans()):
        msgs.append({"role": "system", "content": draw(text)})
    for _ in range(draw(st.integers(1, 3))):
        msgs.append({"role": "user", "content": draw(text)})
        msgs.append({"role": "assistant", "content": draw(text)})
    return msgs


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(msgs=conversations())
def test_property_render_equals_library(chat_tok, msgs):
    assert render(msgs, chat_tok) == library(msgs, chat_tok)


def spells(text: str, replies: list[str]) -> bool:
    if not replies:
        return text == ""
    r = replies[0]
    options = [r + IM_END] + (["\n" + r + IM_END] if r[:1].isspace() else [])
    return any(text.startswith(o) and spells(text[len(o):], replies[1:]) for o in options)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(msgs=conversations(text=tricky_text), last_only=st.booleans())
def test_property_mask_covers_exactly_the_replies(chat_tok, msgs, last_only):
    ids, mask = render(msgs, chat_tok, train_on="last" if last_only else "all")
    im_start, im_end = chat_tok.convert_tokens_to_ids([IM_START, IM_END])
    assert len(ids) == len(mask)
    # one structural <|im_start|>/<|im_end|> per message: text that spells a marker stays text
    assert ids.count(im_start) == len(msgs) and ids.count(im_end) == len(msgs)
    replies = [m["content"] for m in msgs if m["role"] == "assistant"]
    if last_only:
        replies = replies[-1:]
    supervised = chat_tok.decode([i for i, m in zip(ids, mask) if m], skip_special_tokens=False)
    # each reply + <|im_end|>, in order; a reply that starts with whitespace may share its first token
    # with the header's newline ("assistant\n" + "\n" is one token), which then carries that newline too
    assert spells(supervised, replies), (supervised, replies)
    # every system and user token is unsupervised; the whole text survives
    unsupervised = chat_tok.decode([i for i, m in zip(ids, mask) if not m], skip_special_tokens=False)
    for m in msgs:
        if m["role"] != "assistant":
            assert m["content"] in unsupervised
    assert chat_tok.decode(ids, skip_special_tokens=False) == "".join(
        f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in msgs)


@pytest.mark.parametrize("bad,match", [
    ([{"role": "assistant", "content": "hi"}], "message 0 is 'assistant' first, expected 'user'"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "message 1 is 'user'"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "system", "content": "s"}],
     "only the first message may be a system message"),
    ([{"role": "bot", "content": "a"}], "unknown role 'bot'"),
])
def test_render_rejects_bad_role_order(chat_tok, bad, match):
    """render checks roles with the loaders' validator (utils.data.validate_messages, complete=False)."""
    with pytest.raises(DataFormatError, match=match):
        render(bad, chat_tok)


def test_render_max_tokens_guard(chat_tok):
    msgs = [{"role": "user", "content": "a b c d e f"}, {"role": "assistant", "content": "g h i j"}]
    ids, mask = render(msgs, chat_tok)
    assert render(msgs, chat_tok, max_tokens=len(ids)) == (ids, mask)     # exactly at the limit: fine
    assert render(msgs, chat_tok, max_tokens=None) == (ids, mask)         # default: no guard
    with pytest.raises(ValueError, match=f"renders to {len(ids)} tokens, more than max_tokens={len(ids) - 1}"):
        render(msgs, chat_tok, max_tokens=len(ids) - 1)


def test_render_needs_chat_tokens(tok):
    with pytest.raises(AssertionError, match="add_chat_tokens"):
        render([{"role": "user", "content": "a"}], tok)


def test_last_turn_only(chat_tok):
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]
    ids, all_mask = render(msgs, chat_tok)
    _, last_mask = render(msgs, chat_tok, train_on="last")
    assert chat_tok.decode([i for i, m in zip(ids, all_mask) if m]) == "b<|im_end|>d<|im_end|>"
    assert chat_tok.decode([i for i, m in zip(ids, last_mask) if m]) == "d<|im_end|>"


def test_prompt_templates():
    assert ALPACA.render_prompt("Add.", "2 and 3").endswith("### Instruction:\nAdd.\n\n### Input:\n2 and 3\n\n### Response:\n")
    assert GPT2_SFT.text("Add 2 and 3.", "", "5") == "<|endoftext|>Add 2 and 3.\n\n### Response:\n5<|endoftext|>"


def test_render_labels_equal_trl_sft_trainer_batch(realdata, tmp_path):
    """What TRL's SFTTrainer(assistant_only_loss=True) feeds the model == render's mask as labels."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from utils.models import load_gpt2_tokenizer, tiny_gpt2
    tok = load_gpt2_tokenizer()
    model = tiny_gpt2(tok)
    add_chat_tokens(tok, model)
    convs = [r["messages"] for r in load_records(realdata / "openai_chat_finetune_toy.jsonl", errors="collect")[0][:3]]
    convs += [r["messages"] for r in load_records(realdata / "oasst_message_trees.first50.jsonl", errors="collect",
                                                  top_only=True)[0][:3] if len(r["messages"]) <= 4]
    convs += [r["messages"] for r in load_records(realdata / "sharegpt_fastchat_dummy_conversation.first200.json")[:3]]
    args = SFTConfig(output_dir=str(tmp_path), assistant_only_loss=True, per_device_train_batch_size=len(convs),
                     max_length=None, report_to=[], bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list([{"messages": c} for c in convs]),
                         processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    expected = {tuple(e["input_ids"]): e["labels"] for e in (encode_conversation(c, tok) for c in convs)}
    assert batch["input_ids"].shape[0] == len(convs)
    for row in range(len(convs)):
        n = int(batch["attention_mask"][row].sum())
        ids = tuple(batch["input_ids"][row, :n].tolist())
        assert ids in expected, "TRL tokenised a conversation differently from render"
        assert batch["labels"][row, :n].tolist() == expected[ids]
        assert (batch["labels"][row, n:] == -100).all()


def test_reply_ids_slices_prompt_and_stops_at_im_end(chat_tok):
    """A stub model that always predicts the same next token: the reply is exactly the new ids."""
    import torch

    from utils.chat import chat, reply_ids
    im_end = chat_tok.convert_tokens_to_ids(IM_END)

    class Stub(torch.nn.Module):
        device = torch.device("cpu")
        config = type("Config", (), {"n_positions": 1024})()

        def __init__(self, script):
            super().__init__()
            self.script = script

        def generate(self, x, attention_mask, max_new_tokens, eos_token_id, pad_token_id, do_sample):
            assert eos_token_id == im_end and not do_sample
            new = self.script[:max_new_tokens]
            return torch.cat([x, torch.tensor([new])], dim=1)

    msgs = [{"role": "user", "content": "Hi"}]
    hello = chat_tok("Hello!")["input_ids"]
    assert reply_ids(Stub(hello + [im_end]), chat_tok, msgs) == hello + [im_end]
    assert chat(Stub(hello + [im_end]), chat_tok, msgs) == "Hello!"
    assert chat(Stub(hello), chat_tok, msgs, max_new_tokens=1) == chat_tok.decode(hello[:1])


def test_encode_instruction_is_bos_i_sep_y_eos(tok):
    from utils.chat import encode_instruction
    rec = {"id": "x", "source": "t", "messages": [{"role": "user", "content": "Add 2 and 3."},
                                                   {"role": "assistant", "content": "5"}], "meta": {}}
    ex = encode_instruction(rec, tok)
    sep = tok("\n\n### Response:\n")["input_ids"]
    assert ex["input_ids"][0] == 50256 and ex["input_ids"][-1] == 50256                     # BOS ... EOS
    assert ex["input_ids"] == [50256] + tok("Add 2 and 3.")["input_ids"] + sep + tok("5")["input_ids"] + [50256]
    assert ex["labels"] == [-100] * ex["prompt_len"] + tok("5")["input_ids"] + [50256]


def test_encode_conversation_labels_are_the_assistant_mask(chat_tok):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "Bye."}]
    for train_on in ("all", "last"):
        ids, mask = render(msgs, chat_tok, train_on=train_on)
        ex = encode_conversation(msgs, chat_tok, train_on=train_on)
        assert ex["input_ids"] == ids
        assert [l != -100 for l in ex["labels"]] == [bool(m) for m in mask]
        assert all(l == i for l, i in zip(ex["labels"], ids) if l != -100)
    assert chat_tok.decode([l for l in encode_conversation(msgs, chat_tok, "last")["labels"] if l != -100]) == "Bye.<|im_end|>"


def test_trim_history_keeps_system_and_latest_turns(chat_tok):
    from utils.chat import trim_history
    msgs = [{"role": "system", "content": "Be brief."}]
    for k in range(30):
        msgs += [{"role": "user", "content": f"question {k} " * 5}, {"role": "assistant", "content": f"answer {k} " * 5}]
    msgs.append({"role": "user", "content": "last question"})
    kept = trim_history(msgs, chat_tok, max_tokens=120)
    assert kept[0] == msgs[0] and kept[-1] == msgs[-1] and len(kept) < len(msgs)
    assert kept[1:] == msgs[len(msgs) - len(kept) + 1:]                      # a contiguous, most recent tail
    assert len(render(kept, chat_tok, add_generation_prompt=True)[0]) <= 120
    assert len(render(msgs[:1] + msgs[len(msgs) - len(kept) - 1:], chat_tok, add_generation_prompt=True)[0]) > 120
    assert trim_history(msgs[:3], chat_tok, 1000) == msgs[:3]
    with pytest.raises(ValueError, match="shorten"):
        trim_history([{"role": "user", "content": "word " * 500}], chat_tok, 100)


def test_chat_with_a_history_longer_than_the_context_window(tok):
    """The playground's case: 256 positions, a history of thousands of tokens — it must answer, not crash."""
    from utils.chat import chat
    from utils.models import load_gpt2_tokenizer, tiny_gpt2
    tok = load_gpt2_tokenizer()
    model = tiny_gpt2(tok)                                   # n_positions = 256
    add_chat_tokens(tok, model)
    history = [{"role": "system", "content": "You are a helpful assistant."}]
    for k in range(40):
        history += [{"role": "user", "content": f"Tell me about topic {k} in detail."},
                    {"role": "assistant", "content": "Here is a long answer. " * 8}]
    history.append({"role": "user", "content": "And now?"})
    assert len(render(history, tok)[0]) > 2000
    reply = chat(model, tok, history, max_new_tokens=16)
    assert isinstance(reply, str)


# --------------------------------------------------------------------------- preference pairs fitted to a context
@pytest.fixture(scope="module")
def gpt2_tok():
    from utils.models import load_gpt2_tokenizer
    return load_gpt2_tokenizer()


def _n(tok, text):
    return len(tok(text)["input_ids"])


def test_fit_prompt_drops_whole_oldest_rounds(gpt2_tok):
    from utils.chat import fit_prompt
    rounds = ["\n\nHuman: " + "tell me a long story about a dragon " * 5 + "\n\nAssistant: " + "once upon a time " * 5,
              "\n\nHuman: and then?\n\nAssistant: it flew.", "\n\nHuman: why?\n\nAssistant:"]
    prompt = "".join(rounds)
    assert fit_prompt(prompt, _n(gpt2_tok, prompt), gpt2_tok) == prompt                       # fits: unchanged
    last_two = "".join(rounds[1:])
    assert fit_prompt(prompt, _n(gpt2_tok, prompt) - 1, gpt2_tok) == last_two                  # oldest round dropped
    assert fit_prompt(prompt, _n(gpt2_tok, last_two) - 1, gpt2_tok) == rounds[2]               # only the last turn
    assert fit_prompt(prompt, _n(gpt2_tok, rounds[2]) - 1, gpt2_tok) is None                   # never cut inside a turn
    for budget in range(_n(gpt2_tok, rounds[2]), _n(gpt2_tok, prompt) + 1, 7):
        out = fit_prompt(prompt, budget, gpt2_tok)
        assert out.startswith("\n\nHuman:") and out.endswith("\n\nAssistant:") and _n(gpt2_tok, out) <= budget
        assert prompt.endswith(out)


def test_usable_pairs_counts_each_reason_and_fits_what_it_keeps(gpt2_tok):
    from utils.chat import usable_pairs
    long_history = "\n\nHuman: " + "word " * 80 + "\n\nAssistant: ok."
    q = "\n\nHuman: What is 2 + 2?\n\nAssistant:"
    pairs = [
        {"prompt": q, "chosen": " Four.", "rejected": " Four."},                               # identical
        {"prompt": q, "chosen": " Four.", "rejected": "   "},                                  # empty answer
        {"prompt": "\n\nHuman: " + "why " * 100 + "\n\nAssistant:", "chosen": " a", "rejected": " b"},  # last turn too long
        {"prompt": q, "chosen": " Four." + " really" * 60, "rejected": " 4"},                 # answer too long
        {"prompt": long_history + q, "chosen": " Four.", "rejected": " Five."},                 # fits once truncated
        {"prompt": q, "chosen": " Four.", "rejected": " Five."},                                # fits as it is
    ]
    kept, dropped = usable_pairs(pairs, gpt2_tok, max_length=48, max_prompt=32)
    assert dropped == {"chosen == rejected": 1, "empty answer": 1, "last human turn > max_prompt": 1,
                       "longer than max_length": 1}
    assert [k["prompt"] for k in kept] == [q, q]                       # the long history was dropped by whole rounds
    assert [k["rejected"] for k in kept] == [" Five.", " Five."]
    for k in kept:
        for side in ("chosen", "rejected"):
            assert _n(gpt2_tok, k["prompt"]) <= 32 and _n(gpt2_tok, k["prompt"] + k[side]) + 1 <= 48


def test_usable_pairs_leaves_room_for_the_answer(gpt2_tok):
    """A prompt that fits max_prompt but not beside its answer loses whole rounds until both fit."""
    from utils.chat import usable_pairs
    q = "\n\nHuman: What is 2 + 2?\n\nAssistant:"
    history = "\n\nHuman: hello there\n\nAssistant: hello, how can I help?"
    answer = " It is four, the sum of two and two, as anyone can check by counting"
    assert _n(gpt2_tok, history + q) <= 32 and _n(gpt2_tok, history + q + answer) + 1 > 48
    kept, dropped = usable_pairs([{"prompt": history + q, "chosen": answer, "rejected": " Five."}], gpt2_tok,
                                 max_length=48, max_prompt=32)
    assert sum(dropped.values()) == 0 and kept[0]["prompt"] == q


# --------------------------------------------------------------------------- decoding settings and the chat playground
def test_decoding_kwargs_mean_what_they_say():
    from utils.chat import decoding_kwargs
    assert decoding_kwargs() == {"do_sample": False}                                   # greedy by default
    assert decoding_kwargs(repetition_penalty=1.3) == {"do_sample": False, "repetition_penalty": 1.3}
    assert decoding_kwargs(temperature=0.0, top_p=0.5) == {"do_sample": False}         # greedy ignores top-p
    # sampling always states top_k, or generate() would silently apply its default top_k=50
    assert decoding_kwargs(temperature=0.7, top_p=0.9) == {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 0}
    assert decoding_kwargs(temperature=1.0, top_k=40)["top_k"] == 40
    for bad, match in [(dict(temperature=-0.1), "temperature"), (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"),
                       (dict(repetition_penalty=0.0), "repetition_penalty"), (dict(top_k=-1), "top_k")]:
        with pytest.raises(ValueError, match=match):
            decoding_kwargs(**bad)


@pytest.fixture(scope="module")
def tiny_chat():
    from utils.models import load_gpt2_tokenizer, tiny_gpt2
    tok = load_gpt2_tokenizer()
    model = tiny_gpt2(tok, seed=0)                       # n_positions = 256
    add_chat_tokens(tok, model)
    return model.eval(), tok


def test_decoding_kwargs_drive_generate(tiny_chat):
    """Through the real generate(): greedy is the default; a nucleus of ~one token is greedy again; seeds reproduce."""
    import torch

    from utils.chat import decoding_kwargs, reply_ids
    model, tok = tiny_chat
    msgs = [{"role": "user", "content": "Hello there"}]
    greedy = reply_ids(model, tok, msgs, max_new_tokens=8)
    assert reply_ids(model, tok, msgs, max_new_tokens=8, **decoding_kwargs()) == greedy
    assert reply_ids(model, tok, msgs, max_new_tokens=8, **decoding_kwargs(temperature=1.0, top_p=1e-6)) == greedy
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(reply_ids(model, tok, msgs, max_new_tokens=8, **decoding_kwargs(temperature=1.5)))
    assert runs[0] == runs[1]
    penalised = reply_ids(model, tok, msgs, max_new_tokens=8, **decoding_kwargs(repetition_penalty=1.5))
    assert len(penalised) == 8


def test_chat_session_trims_keeps_system_and_resets(tiny_chat):
    from utils.chat import ChatSession, context_window
    model, tok = tiny_chat
    s = ChatSession(model, tok, system="Be brief.", max_new_tokens=8)
    assert s.messages == [{"role": "system", "content": "Be brief."}] and s.notice == ""
    reply = s.send("Hi")
    assert s.messages[1:] == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": reply}]
    assert s.dropped == 0 and "dropped" not in s.notice                       # (a random model's reply is cut)
    long = "Some background you should keep in mind. " * 8                      # ~70 tokens
    for k in range(10):
        s.send(f"Message {k}. {long}")
        if s.dropped:
            break
    assert s.notice and "dropped" in s.notice and f"{context_window(model)}-token" in s.notice
    assert s.messages[0] == {"role": "system", "content": "Be brief."}
    assert s.messages[1]["content"] != "Hi" and s.messages[-2]["content"].startswith(f"Message {k}.")
    assert len(render(s.messages[:-1], tok, add_generation_prompt=True)[0]) <= context_window(model) - 8
    before = list(s.messages)
    with pytest.raises(ValueError, match="shorten"):
        s.send("word " * 400)                                                 # alone longer than the window
    assert s.messages == before                                               # history unchanged on failure
    s.reset()
    assert s.messages == [{"role": "system", "content": "Be brief."}] and s.notice == ""
    assert ChatSession(model, tok, system=None).messages == []
    with pytest.raises(ValueError, match="top_p"):
        ChatSession(model, tok, top_p=0)


def test_chat_session_say_prints_transcript(tiny_chat, capsys):
    from utils.chat import ChatSession
    model, tok = tiny_chat
    reply = ChatSession(model, tok, max_new_tokens=4).say("Hi", temperature=0.8, top_p=0.9)
    out = capsys.readouterr().out
    assert out.startswith("you: Hi\nbot: ") and reply in out


def test_playground_falls_back_to_text_without_a_frontend(tiny_chat, capsys):
    from utils.chat import ChatSession, chat_playground, has_widget_frontend
    model, tok = tiny_chat
    assert has_widget_frontend() is False                                     # pytest: no kernel
    assert chat_playground(ChatSession(model, tok)) is None
    assert 'session.say("your message")' in capsys.readouterr().out


@pytest.fixture
def playground(tiny_chat, monkeypatch):
    """The widget playground on the tiny model, as if a front-end could draw it: (ui, session)."""
    import IPython.display

    import utils.chat as chat_mod
    model, tok = tiny_chat
    monkeypatch.setattr(chat_mod, "has_widget_frontend", lambda: True)
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: None)
    s = chat_mod.ChatSession(model, tok, max_new_tokens=8)
    return chat_mod.chat_playground(s), s


def test_playground_widgets_send_and_reset(playground):
    """The widget version: Send uses the sliders' settings, Reset forgets the chat."""
    ui, s = playground
    log, (box, send, reset), temperature, top_p, penalty, max_new = ui.children[0], ui.children[1].children, *ui.children[2:]
    assert (temperature.value, top_p.value, penalty.value, max_new.value) == (0.0, 1.0, 1.0, 8)
    assert max_new.max <= 256 // 2                                            # never more than half the window
    box.value = "Hello"
    send.click()
    assert box.value == "" and [m["role"] for m in s.messages] == ["system", "user", "assistant"]
    box.value = "   "
    send.click()                                                              # blank: nothing sent
    assert len(s.messages) == 3
    reset.click()
    assert [m["role"] for m in s.messages] == ["system"]


def test_mask_view_sets_text_colour_for_dark_themes():
    """Notebook 03's viewer: every token span and legend swatch sets both its text colour and its background."""
    import re

    from utils.plotting import MaskView
    html = MaskView(["<|im_start|>", "user", "Hi", "<|im_end|>"], [0, 0, 1, 1], title="t")._repr_html_()
    styles = re.findall(r'<span style="([^"]*)"', html)
    assert len(styles) == 4 + 2
    assert all("background:" in s and re.search(r"(^|;)color:", s) for s in styles), styles
    assert "supervised" in html and "context" in html                         # the legend names both kinds


def test_session_says_when_a_reply_was_cut(tiny_chat, monkeypatch):
    """A reply that reaches max_new_tokens without <|im_end|> is kept as written and the notice says it was cut;
    a finished one is stored without the marker and leaves no notice."""
    import utils.chat as chat_mod
    model, tok = tiny_chat
    im_end = tok.convert_tokens_to_ids(chat_mod.IM_END)
    hello = tok("Hello")["input_ids"]
    s = chat_mod.ChatSession(model, tok, max_new_tokens=4)
    monkeypatch.setattr(chat_mod, "reply_ids", lambda *a, **k: hello + [im_end])
    assert s.send("hi") == "Hello" and (s.notice, s.cut) == ("", False) and s.messages[-1]["content"] == "Hello"
    monkeypatch.setattr(chat_mod, "reply_ids", lambda *a, **k: hello * 4)
    assert s.send("again") == "Hello" * 4
    assert s.cut and "reply cut at 4 new tokens" in s.notice and s.messages[-1]["content"] == "Hello" * 4


def test_playground_sends_on_enter(playground):
    """Enter (the box's value arriving, continuous_update=False) sends without a click; emptying the box does not."""
    ui, s = playground
    box = ui.children[1].children[0]
    assert box.continuous_update is False
    box.value = "Hello"
    assert box.value == "" and [m["role"] for m in s.messages] == ["system", "user", "assistant"]
