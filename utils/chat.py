"""Prompt templates: how a conversation becomes text and tokens.

Notebook 02 introduces the instruction templates (:data:`ALPACA`, :data:`GPT2_SFT`) and their adapters
(:func:`to_prompt_completion`, :func:`to_text`); notebook 03 adds the ChatML template for multi-turn
conversations (:func:`render`, :func:`encode_conversation`, :func:`chat`) and the chat playground
(:func:`decoding_kwargs`, :class:`ChatSession`, :func:`chat_playground`); notebook 04 tokenises single
exchanges with :func:`encode_instruction`; notebook 07 writes preference pairs as text (:func:`preference_text`) and
fits them to a context (:func:`fit_prompt`, :func:`usable_pairs`: prompts cut by whole rounds, bad pairs counted).

A template only decides *text*; which tokens are trained on is decided by the labels
(:mod:`utils.masking`). Records come in the schema of :mod:`utils.schema`, which knows nothing of templates.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .schema import DataFormatError, validate_messages
from .masking import IGNORE_INDEX, build_labels


@dataclass(frozen=True)
class PromptTemplate:
    """An instruction template.

    ``prompt`` is used when the example has no input, ``prompt_with_input`` when it has one;
    both end right where the response begins. ``bos``/``eos`` are added by
    :meth:`text` around the whole example (GPT-2 uses ``<|endoftext|>`` for both).
    """

    name: str
    prompt: str
    prompt_with_input: str
    bos: str = ""
    eos: str = ""

    def render_prompt(self, instruction: str, input: str = "") -> str:
        """The prompt string (BOS not included), ending where the response starts."""
        if input:
            return self.prompt_with_input.format(instruction=instruction, input=input)
        return self.prompt.format(instruction=instruction)

    def text(self, instruction: str, input: str, response: str) -> str:
        """The full training string ``bos + prompt + response + eos``."""
        return self.bos + self.render_prompt(instruction, input) + response + self.eos


#: Stanford Alpaca's template (tatsu-lab/stanford_alpaca, ``train.py``: PROMPT_DICT), also used
#: by *Build a Large Language Model (From Scratch)*, ch. 7.
ALPACA = PromptTemplate(
    name="alpaca",
    prompt=("Below is an instruction that describes a task. "
            "Write a response that appropriately completes the request.\n\n"
            "### Instruction:\n{instruction}\n\n### Response:\n"),
    prompt_with_input=("Below is an instruction that describes a task, paired with an input that provides "
                       "further context. Write a response that appropriately completes the request.\n\n"
                       "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"),
)

#: The GPT-2 format of notebook 04, ``S = [BOS, I, SEP, Y, EOS]``: BOS and EOS are both
#: ``<|endoftext|>``; SEP is the ``### Response:`` line, which also tells the model at
#: inference time that the answer starts here.
GPT2_SFT = PromptTemplate(
    name="gpt2",
    prompt="{instruction}\n\n### Response:\n",
    prompt_with_input="{instruction}\n\n### Input:\n{input}\n\n### Response:\n",
    bos="<|endoftext|>",
    eos="<|endoftext|>",
)


# --------------------------------------------------------------------------- a record in an instruction template
def _single_turn(record: dict) -> tuple[str, str, str]:
    """(instruction, input, response) of a one-exchange record; system text joins the instruction."""
    msgs = record["messages"]
    system = msgs[0]["content"] if msgs[0]["role"] == "system" else ""
    turns = msgs[1:] if msgs[0]["role"] == "system" else msgs
    if len(turns) != 2:
        raise DataFormatError(f"record {record.get('id')!r} has {len(turns) // 2} exchanges; the instruction "
                              "template takes one (use a chat template for conversations, notebook 03)")
    meta = record.get("meta", {})
    if "instruction" in meta and "input" in meta:
        instruction, inp = meta["instruction"], meta["input"]
    else:
        instruction, inp = turns[0]["content"], ""
    if system.strip():
        instruction = f"{system}\n\n{instruction}"
    return instruction, inp, turns[1]["content"]


def to_prompt_completion(record: dict, template: PromptTemplate) -> dict:
    """``{"prompt": bos + prompt, "completion": response}`` for a single-exchange record.

    The EOS is *not* in the completion: it is added as a token id when the example is
    tokenised (:func:`utils.masking.build_labels`) or by :func:`to_text`.
    """
    instruction, inp, response = _single_turn(record)
    return {"prompt": template.bos + template.render_prompt(instruction, inp), "completion": response}


def to_text(record: dict, template: PromptTemplate) -> str:
    """The whole example as one string, ``bos + prompt + response + eos``."""
    instruction, inp, response = _single_turn(record)
    return template.text(instruction, inp, response)


# --------------------------------------------------------------------------- chat (ChatML for GPT-2)
IM_START, IM_END = "<|im_start|>", "<|im_end|>"

#: A ChatML chat template for GPT-2, which ships none. Every assistant reply and its end-of-turn
#: marker sit inside ``{% generation %}`` so ``return_assistant_tokens_mask`` (and TRL's
#: ``assistant_only_loss``) can find them. Newlines are emitted as ``{{ '\n' }}`` expressions:
#: Jinja's whitespace control would otherwise swallow them.
CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def add_chat_tokens(tokenizer, model=None):
    """Make ``<|im_start|>`` and ``<|im_end|>`` special tokens and install :data:`CHATML_TEMPLATE`.

    As special tokens the markers are one id each, can never be produced by ordinary text, and
    give generation a single id to stop at. The price: two new embedding rows, which the model
    must learn. ``resize_token_embeddings(mean_resizing=True)`` starts them at the average ``mu`` of
    the existing embeddings: transformers draws them from ``N(mu, 1e-9 * Sigma)`` (``Sigma`` the
    embeddings' covariance), so they sit within about ``sqrt(1e-9) ~ 3e-5`` of a typical row's distance
    from ``mu``. GPT-2 ties its LM head to the embedding matrix, so the same two rows also score the new
    tokens as outputs; at the mean, a new token's logit ``h . mu`` is the average of the old tokens' logits,
    so (Jensen) its probability starts at most ``1/50257`` instead of possibly dominating (Hewitt, 2021,
    https://nlp.stanford.edu/~johnhew/vocab-expansion.html). Returns ``(im_start_id, im_end_id)``.
    """
    tokenizer.add_special_tokens({"additional_special_tokens": [IM_START, IM_END]})
    tokenizer.chat_template = CHATML_TEMPLATE
    # A reply ends at <|im_end|>: make it the EOS, so trainers and generate() stop there.
    # Padding stays <|endoftext|> (pad positions are masked by the labels anyway).
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.eos_token = IM_END
    if model is not None and model.get_input_embeddings().weight.shape[0] != len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    ids = tokenizer.convert_tokens_to_ids([IM_START, IM_END])
    if model is not None:
        model.config.eos_token_id = model.generation_config.eos_token_id = ids[1]
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return tuple(ids)


def render(messages, tokenizer, add_generation_prompt: bool = False,
           train_on: str = "all", max_tokens: int | None = None) -> tuple[list[int], list[int]]:
    """Token ids of a conversation in :data:`CHATML_TEMPLATE`, and the assistant mask.

    Written from scratch (after nanochat's ``render_conversation``): each message is
    ``<|im_start|>`` + ``"{role}\\n{content}"`` + ``<|im_end|>`` + ``"\\n"``. The text between two
    special tokens is tokenised as one piece, exactly as ``apply_chat_template`` does — a
    newline that starts the content merges with the header's newline, so header and content
    cannot be tokenised separately.

    mask[i] = 1 for tokens to train on: every token that overlaps an assistant reply's
    content, and its ``<|im_end|>``; ``train_on="last"`` keeps only the final reply.

    Departure from ``apply_chat_template``: text inside a message that spells a special token
    (``"<|im_end|>"``, ``"<|endoftext|>"``) stays ordinary text here
    (``split_special_tokens=True``), so a user cannot inject a turn boundary;
    ``apply_chat_template`` would turn it into the special token.

    The conversation is checked by :func:`utils.schema.validate_messages` (``complete=False``: it may
    end with a user turn); a bad one raises :class:`utils.schema.DataFormatError`.

    ``max_tokens`` (e.g. the model's context window, :func:`context_window`) guards the length: a
    conversation that renders to more tokens raises ``ValueError`` naming both numbers, instead of
    running past the position embeddings later. ``None`` (default): no guard.

    Returns:
        ``(input_ids, assistant_mask)``, two lists of equal length.
    """
    assert train_on in ("all", "last"), f"train_on must be 'all' or 'last', not {train_on!r}"
    validate_messages(messages, complete=False)
    im_start, im_end = tokenizer.convert_tokens_to_ids([IM_START, IM_END])
    assert im_start != tokenizer.unk_token_id and im_end != tokenizer.unk_token_id, \
        "call add_chat_tokens(tokenizer) first"
    last_assistant = max((k for k, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    ids, mask = [], []

    def text(piece: str, supervised_from: int | None = None):
        # Tokenise one piece of text; tokens ending after char `supervised_from` are supervised.
        if not piece:
            return
        enc = tokenizer(piece, add_special_tokens=False, return_offsets_mapping=True, split_special_tokens=True)
        ids.extend(enc["input_ids"])
        mask.extend(int(supervised_from is not None and end > supervised_from) for _, end in enc["offset_mapping"])

    for k, m in enumerate(messages):
        train = m["role"] == "assistant" and (train_on == "all" or k == last_assistant)
        header = f"{m['role']}\n"
        ids.append(im_start)
        mask.append(0)
        text(header + m["content"], supervised_from=len(header) if train else None)
        ids.append(im_end)
        mask.append(int(train))
        text("\n")
    if add_generation_prompt:
        ids.append(im_start)
        mask.append(0)
        text("assistant\n")
    if max_tokens is not None and len(ids) > max_tokens:
        raise ValueError(f"the conversation renders to {len(ids)} tokens, more than max_tokens={max_tokens}: "
                         "shorten it (trim_history drops the oldest exchanges) or raise the limit")
    return ids, mask


def encode_conversation(messages, tokenizer, train_on: str = "all", ignore_index: int = IGNORE_INDEX) -> dict:
    """A conversation as a training example: ``{"input_ids", "labels"}``, the labels ``-100`` wherever
    :func:`render`'s assistant mask is 0 — the one path from messages to a loss (``pad_collate`` batches it)."""
    ids, mask = render(messages, tokenizer, train_on=train_on)
    return {"input_ids": ids, "labels": [i if m else ignore_index for i, m in zip(ids, mask)]}


def context_window(model) -> int:
    """How many positions the model can attend to (GPT-2: ``n_positions``; Llama: ``max_position_embeddings``)."""
    config = model.config
    return int(getattr(config, "n_positions", None) or config.max_position_embeddings)


def trim_history(messages, tokenizer, max_tokens: int) -> list[dict]:
    """The most recent turns of ``messages`` whose prompt (with the generation prompt) fits ``max_tokens``.

    A chat grows by two messages per exchange; past the model's context window the position
    embeddings run out (on a GPU: a device-side assert that ends the session). Oldest exchanges go
    first; a leading system message is always kept. Raises ``ValueError`` if even the system message
    and the last user message do not fit.
    """
    system = list(messages[:1]) if messages and messages[0]["role"] == "system" else []
    turns = list(messages[len(system):])
    while True:
        kept = system + turns
        if len(render(kept, tokenizer, add_generation_prompt=True)[0]) <= max_tokens:
            return kept
        if len(turns) <= 1:
            raise ValueError(f"the last message alone needs more than {max_tokens} tokens: shorten it")
        turns = turns[2:]                                # drop the oldest user/assistant exchange


def reply_ids(model, tokenizer, messages, max_new_tokens: int = 64, **generate_kwargs) -> list[int]:
    """Generate the assistant's next reply to ``messages`` (which end with a user turn).

    The conversation is rendered exactly as in training, with the ``<|im_start|>assistant\\n``
    generation prompt; generation stops at ``<|im_end|>``. The reply is taken by slicing off the
    prompt's token ids (never by searching the decoded text). Greedy unless ``generate_kwargs``
    say otherwise. A history too long for the context window (prompt + ``max_new_tokens``) loses
    its oldest exchanges first (:func:`trim_history`). Returns the new ids, ending with
    ``<|im_end|>`` when the model closed its turn.
    """
    messages = trim_history(messages, tokenizer, context_window(model) - max_new_tokens)
    ids, _ = render(messages, tokenizer, add_generation_prompt=True)
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    x = torch.tensor([ids], device=model.device)
    generate_kwargs.setdefault("do_sample", False)
    with torch.no_grad():
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens,
                             eos_token_id=im_end, pad_token_id=tokenizer.pad_token_id, **generate_kwargs)
    return out[0, len(ids):].tolist()


def reply_text(new_ids: list[int], tokenizer) -> tuple[str, bool]:
    """Generated reply ids → (text without the end-of-turn marker, whether it ended with one — False when it was
    cut at ``max_new_tokens``)."""
    finished = bool(new_ids) and new_ids[-1] == tokenizer.convert_tokens_to_ids(IM_END)
    return tokenizer.decode(new_ids[:-1] if finished else new_ids), finished


def chat(model, tokenizer, messages, max_new_tokens: int = 64, **generate_kwargs) -> str:
    """The assistant's reply to ``messages`` as text, without the end-of-turn marker."""
    return reply_text(reply_ids(model, tokenizer, messages, max_new_tokens, **generate_kwargs), tokenizer)[0]


# --------------------------------------------------------------------------- decoding and the chat playground
def decoding_kwargs(temperature: float = 0.0, top_p: float = 1.0, repetition_penalty: float = 1.0,
                    top_k: int = 0) -> dict:
    """``generate`` keyword arguments that mean exactly what they say (for :func:`chat`, :func:`reply_ids`).

    - ``temperature == 0``: greedy decoding (``do_sample=False``); ``top_p`` and ``top_k`` are then ignored.
    - ``temperature > 0``: sampling from ``softmax(logits / temperature)``, cut to the ``top_k`` most probable
      tokens (``0`` = no cut) and then to the smallest set whose probability reaches ``top_p``. ``top_k`` is
      always passed: ``generate`` would otherwise apply its default ``top_k=50`` behind your back.
    - ``repetition_penalty`` (CTRL, Keskar et al. 2019; ``1.0`` = off) divides the positive logits, and
      multiplies the negative ones, of every token id already in the sequence — in transformers the prompt
      included, so also ``<|im_end|>`` and the role names of earlier turns.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if repetition_penalty <= 0:
        raise ValueError(f"repetition_penalty must be > 0 (1.0 = off), got {repetition_penalty}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 = off), got {top_k}")
    kwargs: dict = {"do_sample": temperature > 0}
    if temperature > 0:
        kwargs.update(temperature=float(temperature), top_p=float(top_p), top_k=int(top_k))
    if repetition_penalty != 1.0:
        kwargs["repetition_penalty"] = float(repetition_penalty)
    return kwargs


class ChatSession:
    """A conversation with a model as a chat window keeps it: the system prompt, then the exchanges so far.

    :meth:`send` adds the user's message, drops the oldest exchanges when the history no longer fits the
    context window together with ``max_new_tokens`` (:func:`trim_history`; the system prompt always stays),
    generates the reply with :func:`decoding_kwargs` settings and stores it. After each call ``dropped`` counts
    the messages trimmed, ``cut`` is True when the reply stopped at ``max_new_tokens`` before ``<|im_end|>``,
    and ``notice`` says both in words ("" when neither); :meth:`reset` starts over. :meth:`say` is the plain-text front-end.
    """

    def __init__(self, model, tokenizer, system: str | None = "You are a helpful assistant.",
                 max_new_tokens: int = 64, **decoding):
        self.model, self.tokenizer, self.system = model, tokenizer, system
        self.max_new_tokens = max_new_tokens
        self.settings = dict(temperature=0.0, top_p=1.0, repetition_penalty=1.0)
        self.settings.update(decoding)
        decoding_kwargs(**self.settings)                   # fail early on a bad setting
        self.reset()

    def reset(self) -> None:
        """Forget the conversation; keep the system prompt and the settings."""
        self.messages: list[dict] = [{"role": "system", "content": self.system}] if self.system else []
        self.notice, self.dropped, self.cut = "", 0, False

    def send(self, text: str, max_new_tokens: int | None = None, **decoding) -> str:
        """The model's reply to ``text`` given the history; both are added to the history.

        ``decoding`` (``temperature``, ``top_p``, ``repetition_penalty``, ``top_k``) overrides the session's
        settings for this call. Raises ``ValueError`` (history unchanged) if the message alone is too long.
        """
        max_new_tokens = max_new_tokens or self.max_new_tokens
        kwargs = decoding_kwargs(**{**self.settings, **decoding})
        window = context_window(self.model)
        turn = {"role": "user", "content": text}
        kept = trim_history(self.messages + [turn], self.tokenizer, window - max_new_tokens)
        reply, finished = reply_text(reply_ids(self.model, self.tokenizer, kept, max_new_tokens, **kwargs), self.tokenizer)
        self.dropped, self.cut = len(self.messages) + 1 - len(kept), not finished
        self.notice = " ".join(filter(None, [
            f"(history trimmed: the {self.dropped} oldest messages were dropped to fit the {window}-token context "
            f"window with {max_new_tokens} new tokens; the system prompt stays)" if self.dropped else "",
            f"(reply cut at {max_new_tokens} new tokens before {IM_END}: raise max new tokens for longer answers; "
            "the cut reply stays in the history as written)" if self.cut else ""]))
        self.messages = kept + [{"role": "assistant", "content": reply}]
        return reply

    def say(self, text: str, **settings) -> str:
        """:meth:`send`, printed as a transcript line (the playground without widgets)."""
        reply = self.send(text, **settings)
        print(f"you: {text}\nbot: {reply}" + (f"\n{self.notice}" if self.notice else ""))
        return reply


def has_widget_frontend() -> bool:
    """True inside a Jupyter kernel (Colab, JupyterLab, VS Code) with ipywidgets installed; False in a script or
    a terminal IPython, where widgets cannot be drawn and the playground falls back to :meth:`ChatSession.say`."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def chat_playground(session: ChatSession, force_text: bool = False):
    """A chat window for ``session``: message box, Send and Reset buttons, decoding controls.

    Temperature 0 means greedy. Returns the widget (displayed) where a front-end can draw it; otherwise
    prints how to chat in plain text (``session.say("...")``) and returns None. Each reply is followed
    by the session's notice when the history was trimmed to fit the context window or the reply was cut.
    """
    if force_text or not has_widget_frontend():
        print("No widget front-end here: chat in plain text with session.say(\"your message\") "
              "(keywords: temperature=0.0 for greedy, top_p, repetition_penalty, max_new_tokens); "
              "session.reset() starts over.")
        return None
    import ipywidgets as widgets
    from IPython.display import display

    s = session.settings
    style = {"description_width": "150px"}
    layout = widgets.Layout(width="420px")
    temperature = widgets.FloatSlider(value=s["temperature"], min=0.0, max=1.5, step=0.05, layout=layout, style=style,
                                      description="temperature (0=greedy)")
    top_p = widgets.FloatSlider(value=s["top_p"], min=0.05, max=1.0, step=0.05, description="top-p", layout=layout,
                                style=style)
    penalty = widgets.FloatSlider(value=s["repetition_penalty"], min=1.0, max=2.0, step=0.05, layout=layout,
                                  style=style, description="repetition penalty")
    window = context_window(session.model)
    max_new = widgets.IntSlider(value=session.max_new_tokens, min=8, max=max(8, min(512, window // 2)), step=8,
                                description="max new tokens", layout=layout, style=style)
    # continuous_update=False: the value arrives when Enter is pressed (or the box loses focus), not per keystroke
    box = widgets.Text(placeholder="Type a message, press Enter or Send", continuous_update=False,
                       layout=widgets.Layout(width="420px"))
    send, reset, log = widgets.Button(description="Send"), widgets.Button(description="Reset"), widgets.Output()

    def on_send(_):
        text, box.value = box.value, ""
        if not text.strip():
            return
        with log:
            try:
                session.say(text, max_new_tokens=max_new.value, temperature=temperature.value, top_p=top_p.value,
                            repetition_penalty=penalty.value)
            except ValueError as err:                      # a message longer than the window: say so, keep going
                print(f"not sent: {err}")

    def on_reset(_):
        session.reset()
        log.clear_output()
        with log:
            print("(conversation reset; the system prompt stays)")

    send.on_click(on_send)
    box.observe(on_send, names="value")                  # Enter sends; on_send ignores the box being emptied
    reset.on_click(on_reset)
    ui = widgets.VBox([log, widgets.HBox([box, send, reset]), temperature, top_p, penalty, max_new])
    display(ui)
    return ui


def encode_instruction(record: dict, tokenizer, template: PromptTemplate = GPT2_SFT) -> dict:
    """Tokenise a single-exchange record as ``[BOS, I, SEP, Y, EOS]`` with its labels.

    The prompt (``bos + instruction [+ input] + SEP``) and the response are tokenised
    separately so their boundary is exact; the EOS is appended as an id.
    Returns ``{"input_ids", "labels", "prompt_len"}`` (labels: -100 on the prompt).
    """
    pc = to_prompt_completion(record, template)
    prompt_ids = tokenizer(pc["prompt"])["input_ids"]
    response_ids = tokenizer(pc["completion"])["input_ids"]
    input_ids, labels = build_labels(prompt_ids, response_ids, tokenizer.eos_token_id)
    return {"input_ids": input_ids, "labels": labels, "prompt_len": len(prompt_ids)}


# --------------------------------------------------------------------------- preference pairs as text
def preference_text(pair: dict) -> dict:
    """A preference pair as the strings reward and DPO trainers take: ``{"prompt", "chosen", "rejected"}``.

    Written in HH-RLHF's own transcript style (``"\\n\\nHuman: …\\n\\nAssistant:"``), so the prompt ends
    where the two answers begin and each answer starts with a space.
    """
    def turns(messages: list[dict]) -> str:
        names = {"user": "Human", "assistant": "Assistant", "system": "System"}
        return "".join(f"\n\n{names[m['role']]}: {m['content']}" for m in messages)

    def answer(messages: list[dict]) -> str:          # the first reply continues "Assistant:"
        return " " + messages[0]["content"] + turns(messages[1:])

    return {"prompt": turns(pair["prompt"]) + "\n\nAssistant:", "chosen": answer(pair["chosen"]),
            "rejected": answer(pair["rejected"])}


def fit_prompt(prompt: str, budget: int, tokenizer) -> str | None:
    """Left-truncate an HH-style prompt (``"\\n\\nHuman: …\\n\\nAssistant: …\\n\\nHuman: …\\n\\nAssistant:"``) to at
    most ``budget`` tokens by dropping its **oldest whole rounds**, so the text is still a transcript that starts
    with a Human turn and ends where the answer begins. None when even the last human turn is longer than
    ``budget`` (cutting inside a turn would hand the model half a question)."""
    starts = [i for i in range(len(prompt)) if prompt.startswith("\n\nHuman:", i)] or [0]
    for start in starts:
        text = prompt[start:]
        if len(tokenizer(text)["input_ids"]) <= budget:
            return text
    return None


def usable_pairs(pairs: list[dict], tokenizer, *, max_length: int, max_prompt: int) -> tuple[list[dict], dict[str, int]]:
    """The preference pairs (``{"prompt", "chosen", "rejected"}`` text, see :func:`preference_text`) a trainer can
    learn from, each prompt left-truncated by :func:`fit_prompt` to what is left of ``max_length`` after the longer
    answer and EOS, and to at most ``max_prompt`` tokens. Returns ``(kept, dropped)`` with a count per reason — the
    same rules for training and for evaluation:

    - ``"chosen == rejected"``: no preference to learn;
    - ``"empty answer"``: an answer that is only whitespace;
    - ``"last human turn > max_prompt"``: the prompt cannot be shortened by whole rounds;
    - ``"longer than max_length"``: prompt + answer + EOS is still longer than ``max_length`` on either side. Cutting
      the answer could cut off the very difference between the two, so the pair is dropped (TRL's trainers
      would otherwise truncate or drop it out of sight).
    """
    dropped = {"chosen == rejected": 0, "empty answer": 0, "last human turn > max_prompt": 0,
               "longer than max_length": 0}
    kept = []
    for p in pairs:
        if p["chosen"] == p["rejected"]:
            dropped["chosen == rejected"] += 1
            continue
        if not p["chosen"].strip() or not p["rejected"].strip():
            dropped["empty answer"] += 1
            continue
        longest = max(len(tokenizer(p[s])["input_ids"]) for s in ("chosen", "rejected"))
        budget = min(max_prompt, max_length - 1 - longest)          # room for the prompt beside the longer answer + EOS
        prompt = fit_prompt(p["prompt"], budget, tokenizer) if budget > 0 else None
        if prompt is None:
            last_turn_fits = fit_prompt(p["prompt"], max_prompt, tokenizer) is not None
            dropped["longer than max_length" if last_turn_fits else "last human turn > max_prompt"] += 1
            continue
        kept.append({**p, "prompt": prompt})
    return kept, dropped
