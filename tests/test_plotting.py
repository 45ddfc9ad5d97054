import matplotlib
import pytest

from utils.plotting import MaskView, plot_losses, plot_next_token, show_mask, token_strings

matplotlib.use("Agg")


def test_mask_view_text_marks_supervised_tokens():
    view = MaskView(["Q:", " hi", "\n", "A", "!"], [0, 0, 0, 1, 1], title="demo")
    text = view.text()
    assert text.startswith("demo\n")
    assert "Q: hi↵\n[[A]][[!]]" in text
    assert "2 of 5 tokens" in text
    assert repr(view) == text


def test_mask_view_html_colours_and_escapes():
    html = MaskView(["<b>", "x"], [False, True])._repr_html_()
    assert html.count("<span") == 2 + 2          # two tokens + two legend swatches
    assert "&lt;b&gt;" in html and "<b>" not in html      # token text is escaped, not rendered
    assert "#b7e4c7" in html                    # the supervised colour is used


def test_mask_view_rejects_length_mismatch():
    with pytest.raises(ValueError, match="3 tokens but 2 mask values"):
        MaskView(["a", "b", "c"], [1, 0])


def test_show_mask_prints_plain_text_outside_jupyter(capsys):
    show_mask(["a", "b"], [False, True])
    assert "a[[b]]" in capsys.readouterr().out


def test_token_strings(tok):
    assert token_strings(tok, [15496, 995, 50256]) == ["Hello", " world", "<|endoftext|>"]


def test_plot_losses_draws_each_curve():
    fig = plot_losses({"train": [3, 2, 1], "val": [3.5, 2.5]}, logy=True)
    ax = fig.axes[0]
    assert [l.get_label() for l in ax.get_lines()] == ["train", "val"]
    assert list(ax.get_lines()[1].get_xdata()) == [1, 2] and ax.get_yscale() == "log"
    single = plot_losses([1.0, 0.5]).axes[0]
    assert len(single.get_lines()) == 1


def test_plot_next_token_bars():
    fig = plot_next_token([" Paris", " the"], [0.6, 0.1])
    assert len(fig.axes[0].patches) == 2
    assert fig.axes[0].patches[0].get_width() == pytest.approx(0.6)
