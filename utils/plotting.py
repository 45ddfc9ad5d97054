"""Pictures instead of walls of numbers: loss curves, next-token bars, the mask viewer.

Introduced in notebook 01 (next-token bars, the mask viewer, loss curves).
"""
from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt


def plot_losses(losses: Sequence[float] | Mapping[str, Sequence[float]], *, title: str = "Training loss",
                xlabel: str = "step", ylabel: str = "loss", logy: bool = False, ax=None):
    """Plot one loss curve (a list) or several (a ``{label: list}`` dict); returns the figure."""
    curves = losses if isinstance(losses, Mapping) else {"train": losses}
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for label, values in curves.items():
        ax.plot(range(1, len(values) + 1), list(values), label=label)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if logy:
        ax.set_yscale("log")
    if len(curves) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    ax.figure.tight_layout()
    return ax.figure


def plot_next_token(tokens: Sequence[str], probs: Sequence[float], *, title: str = "Next-token distribution",
                    ax=None):
    """Horizontal bar chart of candidate next tokens and their probabilities (largest on top)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.35 * len(tokens) + 1))
    labels = [repr(t) for t in tokens]
    ax.barh(range(len(tokens))[::-1], list(probs), color="tab:blue")
    ax.set_yticks(range(len(tokens))[::-1], labels, fontfamily="monospace")
    ax.set(title=title, xlabel="probability")
    for y, p in zip(range(len(tokens))[::-1], probs):
        ax.text(p, y, f" {p:.3g}", va="center", fontsize=8)
    ax.figure.tight_layout()
    return ax.figure


def token_strings(tokenizer, ids: Sequence[int]) -> list[str]:
    """Each token id decoded on its own, so a viewer can show token boundaries."""
    return [tokenizer.decode([int(i)]) for i in ids]


class MaskView:
    """Tokens coloured by whether they are supervised.

    Rendered as coloured HTML by a notebook front-end and as plain text elsewhere:
    supervised tokens are wrapped in ``[[...]]``, newlines are shown as ``↵``.
    """

    def __init__(self, tokens: Sequence[str], mask: Sequence[bool | int], title: str | None = None):
        if len(tokens) != len(mask):
            raise ValueError(f"{len(tokens)} tokens but {len(mask)} mask values")
        self.tokens, self.mask, self.title = list(tokens), [bool(m) for m in mask], title

    def text(self) -> str:
        body = "".join(f"[[{t}]]" if m else t for t, m in zip(self.tokens, self.mask))
        head = f"{self.title}\n" if self.title else ""
        n = sum(self.mask)
        return (f"{head}{body.replace(chr(10), '↵' + chr(10))}\n"
                f"-- [[supervised]]: {n} of {len(self.tokens)} tokens")

    def __repr__(self) -> str:
        return self.text()

    #: Explicit text *and* background colours for every span, so the viewer reads the same in light and dark
    #: themes (Colab's dark theme would otherwise draw its light default text on these light backgrounds).
    SUPERVISED_STYLE = "background:#b7e4c7;color:#081c15;border:1px solid #2d6a4f"
    CONTEXT_STYLE = "background:#e9ecef;color:#343a40;border:1px solid #adb5bd"

    def _repr_html_(self) -> str:
        spans = []
        for t, m in zip(self.tokens, self.mask):
            shown = html.escape(t).replace("\n", "↵<br>")
            style = self.SUPERVISED_STYLE if m else self.CONTEXT_STYLE
            spans.append(f'<span style="{style};border-radius:3px;padding:0 1px;margin:1px;'
                         f'white-space:pre-wrap;font-family:monospace">{shown}</span>')
        n = sum(self.mask)
        head = f"<b>{html.escape(self.title)}</b><br>" if self.title else ""
        swatch = "border-radius:3px;padding:0 4px;font-family:monospace"
        legend = (f'<div style="font-size:smaller;margin-top:4px">'
                  f'<span style="{self.SUPERVISED_STYLE};{swatch}">supervised</span> = a target of the loss '
                  f'({n} of {len(self.tokens)} tokens) &nbsp; '
                  f'<span style="{self.CONTEXT_STYLE};{swatch}">context</span> = label -100, read but not '
                  f'trained on</div>')
        return f'<div style="line-height:1.9">{head}{"".join(spans)}{legend}</div>'


def show_mask(tokens: Sequence[str], mask: Sequence[bool | int], title: str | None = None) -> None:
    """Display tokens with the supervised ones highlighted (build a :class:`MaskView` to keep one).

    In Jupyter the view is displayed as coloured HTML (with the plain-text form alongside
    for consumers without a front-end, such as CI); outside IPython it is printed as text.
    """
    view = MaskView(tokens, mask, title)
    try:
        from IPython import get_ipython
        from IPython.display import display
        if get_ipython() is not None:
            display(view)
            return
    except ImportError:
        pass
    print(view.text())
