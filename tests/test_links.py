"""scripts/check_links.py: the repository's prose has no broken relative link or anchor, and the checker catches them."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import check_links  # noqa: E402


def test_the_course_has_no_broken_links():
    assert check_links.broken_links() == []
    docs = check_links.documents()
    assert len(docs) >= 10                               # README, data/README, every notebook
    assert not [d for d in docs if any(part.startswith(".") for part in d.relative_to(ROOT).parts)]   # no venvs


def test_github_heading_ids():
    assert check_links.slug("Glossary — English / Tiếng Việt") == "glossary--english--tiếng-việt"
    assert check_links.slug("Run it locally (two commands)") == "run-it-locally-two-commands"
    assert check_links.slug("3.5 Attention cost grows with $T^2$") == "35-attention-cost-grows-with-t2"
    assert check_links.slug("A [linked](x.md) `code` heading") == "a-linked-code-heading"


def test_the_checker_finds_each_kind_of_broken_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## Same\n\n## Same\n")
    (tmp_path / "README.md").write_text(
        "# Title\n\n## A section\n\n"
        "[ok file](docs/other.md) [ok anchor](docs/other.md#same-1) [ok here](#a-section) [ok url](https://example.org/x)\n"
        "[missing file](docs/none.md) [missing anchor](docs/other.md#nope) [missing here](#b-section) "
        "[bad url](https://) [bad scheme](ftp://example.org)\n"
        "```\n[in code](nowhere.md)\n```\n`[inline](nowhere.md)`\n")
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# NB\n", "[up](../README.md#a-section) [x](../y.md)"]},
                    {"cell_type": "code", "metadata": {}, "source": ["# [not prose](z.md)"], "outputs": [], "execution_count": None}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "docs" / "n.ipynb").write_text(json.dumps(nb))
    problems = check_links.broken_links(tmp_path)
    assert sorted(p.split(" (")[0] for p in problems) == sorted([
        "README.md: docs/none.md", "README.md: docs/other.md#nope", "README.md: #b-section",
        "README.md: https://", "README.md: ftp://example.org", "docs/n.ipynb: ../y.md"]), problems
