"""Tests of the checkers for notebook 03: the assistant-mask and last-turn template checkers."""

import pytest

from utils.chat import CHATML_TEMPLATE, add_chat_tokens, render
from utils.checks import assistant_mask_problems, check_assistant_mask, last_turn_template_problems


CONV = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "See you."}]
LAST_TURN_TEMPLATE = CHATML_TEMPLATE.replace(
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}",
    "{{ '<|im_start|>assistant\\n' }}{% if loop.last %}{% generation %}{{ message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}")


@pytest.fixture(scope="module")
def ctok():
    from utils.models import load_gpt2_tokenizer
    t = load_gpt2_tokenizer()
    add_chat_tokens(t)
    return t


def test_assistant_mask_checker(ctok, capsys):
    ids, mask = render(CONV, ctok)
    assert assistant_mask_problems(mask, CONV, ctok) == []
    assert check_assistant_mask(mask, CONV, ctok) is True
    assert check_assistant_mask(None, CONV, ctok) is False and "Not attempted" in capsys.readouterr().out
    no_end = [0 if i == ctok.convert_tokens_to_ids("<|im_end|>") else m for i, m in zip(ids, mask)]
    assert any("<|im_end|> after a reply is not supervised" in p for p in assistant_mask_problems(no_end, CONV, ctok))
    everything = [1] * len(ids)
    assert "should not be" in assistant_mask_problems(everything, CONV, ctok)[0]
    first_only = render(CONV[:3], ctok)[1] + [0] * (len(ids) - len(render(CONV[:3], ctok)[1]))
    assert any("reply token(s) not supervised" in p for p in assistant_mask_problems(first_only, CONV, ctok))
    assert "entries but the conversation has" in assistant_mask_problems(mask[:-1], CONV, ctok)[0]


def test_last_turn_template_checker(ctok):
    convs = [CONV, CONV[1:3]]
    assert last_turn_template_problems(LAST_TURN_TEMPLATE, ctok, convs) == []
    stub = last_turn_template_problems(CHATML_TEMPLATE, ctok, convs)
    assert len(stub) == 1 and "has 2 replies and your template supervises more than the last one" in stub[0]
    broken = last_turn_template_problems(CHATML_TEMPLATE.replace("{% endgeneration %}", ""), ctok, convs)
    assert "does not render" in broken[0]
    changed = last_turn_template_problems(CHATML_TEMPLATE.replace("'\\n' + message['content']", "': ' + message['content']"),
                                          ctok, convs)
    assert "changed the text itself" in changed[0]


# --------------------------------------------------------------------------- 7.3 predict what decoding does
from utils.checks import (NEVER_STOPS_TEMPLATE, TOY_NEXT_TOKEN, check_decoding_prediction, check_never_stops,  # noqa: E402
                          decoding_prediction_answers, decoding_prediction_problems, never_stops_problems)

RIGHT = decoding_prediction_answers()
NUCLEUS = [" Paris", " a", " the", " located"]


def test_decoding_prediction_right_answer_passes(capsys):
    assert RIGHT["nucleus"] == NUCLEUS
    assert RIGHT["p_top_after_top_p"] == pytest.approx(0.50 / 0.85)
    assert RIGHT["p_top_at_temperature"] == pytest.approx(0.25 / 0.301)
    assert decoding_prediction_problems(NUCLEUS, 0.588, 0.831) == []
    assert decoding_prediction_problems(tuple(reversed(NUCLEUS)), 0.59, 0.83) == []       # order does not matter
    assert check_decoding_prediction(NUCLEUS, 0.588, 0.831) is True
    assert "Correct" in capsys.readouterr().out
    assert check_decoding_prediction(None, None, None) is False
    assert "Not attempted" in capsys.readouterr().out


@pytest.mark.parametrize("nucleus,needle", [
    ([], "no candidate reaches p = 0.8 on its own"),                                   # threshold on each token
    ([" Paris"], "that is greedy decoding"),                                             # only the top token
    ([" Paris", " a", " the"], "add up to 0.77, less than p = 0.8"),                    # stopped before crossing p
    ([" Paris", " a", " the", " located", " not"], "fewer of them already reach p = 0.8"),   # one too many
    (list(TOY_NEXT_TOKEN), "that is top_p = 1.0"),                                       # kept everything
    ([" not", " in", " one"], "did you list the tokens it *removes*"),                   # the complement
    ([" Paris", " a", " located", " not"], "dropped the more probable ' the'"),          # skipped a token
    (["Paris", " a", " the", " located"], "leading space included"),                    # token spelled wrong
])
def test_decoding_prediction_wrong_nucleus(nucleus, needle):
    problems = decoding_prediction_problems(nucleus, 0.588, 0.831)
    assert len(problems) == 1 and needle in problems[0], problems


@pytest.mark.parametrize("p_cut,needle", [
    (0.50, "before the cut"),                              # forgot to renormalise
    (0.625, "you divided by p = 0.8"),                     # divided by p instead of the kept mass
    (1.2, "not a probability"),
    (0.7, "divided by the kept mass"),                     # something else
])
def test_decoding_prediction_wrong_renormalisation(p_cut, needle):
    problems = decoding_prediction_problems(NUCLEUS, p_cut, 0.831)
    assert len(problems) == 1 and needle in problems[0], problems


@pytest.mark.parametrize("p_temp,needle", [
    (0.25, "not normalised"),                              # squared (or halved) without renormalising
    (1.0, "divides the *logits*, not the probabilities"),  # divided the probability by T
    (1.3, "divides the *logits*, not the probabilities"),  # not a probability at all
    (0.296, "the answer for temperature 2"),               # used T instead of 1/T as the exponent
    (0.40, "sharpens the distribution"),                   # wrong direction
    (0.70, "right direction"),                             # right direction, wrong value
    ("lots", "must be a number"),
])
def test_decoding_prediction_wrong_temperature(p_temp, needle):
    problems = decoding_prediction_problems(NUCLEUS, 0.588, p_temp)
    assert len(problems) == 1 and needle in problems[0], problems


# --------------------------------------------------------------------------- 7.4 diagnose: a chatbot that never stops
CONVS = [CONV, CONV[1:3]]


def test_never_stops_template_renders_the_same_text_but_not_the_end_marker(ctok):
    for msgs in CONVS:
        assert (ctok.apply_chat_template(msgs, tokenize=False, chat_template=NEVER_STOPS_TEMPLATE)
                == ctok.apply_chat_template(msgs, tokenize=False, chat_template=CHATML_TEMPLATE))
        out = ctok.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                                       chat_template=NEVER_STOPS_TEMPLATE)
        supervised = ctok.decode([i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m])
        assert "<|im_end|>" not in supervised and supervised                     # the replies, without their end


def test_never_stops_right_answer_passes(ctok, capsys):
    assert never_stops_problems("<|im_end|>", CHATML_TEMPLATE, ctok, CONVS) == []
    alt = NEVER_STOPS_TEMPLATE.replace("{{ message['content'] }}{% endgeneration %}{{ '<|im_end|>' + '\\n' }}",
                                       "{{ message['content'] }}{{ '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}")
    assert alt != NEVER_STOPS_TEMPLATE and never_stops_problems(" <|im_end|> ", alt, ctok, CONVS) == []
    assert check_never_stops("<|im_end|>", CHATML_TEMPLATE, ctok, CONVS) is True
    assert "Correct" in capsys.readouterr().out
    assert check_never_stops(None, None, ctok, CONVS) is False
    assert "Not attempted" in capsys.readouterr().out


@pytest.mark.parametrize("culprit,needle", [
    ("<|endoftext|>", "padding token"),
    ("\n", "newline after <|im_end|> is context"),
    ("<|im_start|>", "generation prompt already supplies it"),
    ("assistant", "role header comes from the generation prompt"),
    ("Blue.", "compare the two templates' masks"),
])
def test_never_stops_wrong_culprit(ctok, culprit, needle):
    problems = never_stops_problems(culprit, CHATML_TEMPLATE, ctok, CONVS)
    assert len(problems) == 1 and needle in problems[0], problems


def test_never_stops_wrong_fixes(ctok):
    unchanged = never_stops_problems("<|im_end|>", NEVER_STOPS_TEMPLATE, ctok, CONVS)
    assert unchanged == ["the template is unchanged: move one piece of text inside the generation block"]
    newline_too = NEVER_STOPS_TEMPLATE.replace("{{ message['content'] }}{% endgeneration %}{{ '<|im_end|>' + '\\n' }}",
                                               "{{ message['content'] + '<|im_end|>' + '\\n' }}{% endgeneration %}")
    p = never_stops_problems("<|im_end|>", newline_too, ctok, CONVS)
    assert len(p) == 1 and "the newline after <|im_end|> is context" in p[0], p
    changed_text = NEVER_STOPS_TEMPLATE.replace("{{ message['content'] }}{% endgeneration %}",
                                                "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}")
    p = never_stops_problems("<|im_end|>", changed_text, ctok, CONVS)
    assert len(p) == 1 and "changed the text itself" in p[0], p
    broken = never_stops_problems("<|im_end|>", NEVER_STOPS_TEMPLATE.replace("{% endgeneration %}", ""), ctok, CONVS)
    assert "does not render" in broken[0]
    # a wrong culprit and a wrong fix: both reported
    both = never_stops_problems("<|endoftext|>", NEVER_STOPS_TEMPLATE, ctok, CONVS)
    assert len(both) == 2 and "padding token" in both[0] and "unchanged" in both[1]
