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
