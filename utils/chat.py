"""Prompt templates: how an (instruction, input, response) example becomes one string.

A template only decides *text*; which tokens are trained on is decided later by the labels
(:mod:`utils.masking`). Notebook 03 adds chat templates for multi-turn conversations.
"""
from __future__ import annotations

from dataclasses import dataclass


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
