"""Offline link check of the course's prose: README.md, the other Markdown files, every notebook's markdown cells.

    python scripts/check_links.py          # prints each broken link; exit status 1 if there is one

- a relative link must name a file or folder of the repository, and its ``#anchor`` a heading of that file;
- an ``#anchor`` alone must be a heading of the same document (GitHub's rule for heading ids);
- an external URL must be well formed (``http``/``https``, a host, no spaces). It is not fetched: CI has no internet.

Part of ``make test`` through ``tests/test_links.py``.
"""
from __future__ import annotations

import json
import re
import sys
import unicodedata
from pathlib import Path
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")          # [text](target "title"), not images
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
HTML_LINK = re.compile(r"<a\s[^>]*href=\"([^\"]+)\"")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_FENCE = re.compile(r"^(```|~~~)")


def documents(root: Path = ROOT) -> list[Path]:
    skip = {".venv", "build", "checkpoints", "node_modules", ".git", ".pytest_cache", ".whl"}   # ignored run outputs
    out = []
    for p in sorted(root.rglob("*")):
        parts = p.relative_to(root).parts
        hidden = any(part.startswith(".") for part in parts[:-1])          # .venv*, .git, .pytest_cache, ...
        if p.suffix in (".md", ".ipynb") and not hidden and not (set(parts) & skip) and p.is_file():
            out.append(p)
    return out


def markdown_of(path: Path) -> str:
    """The prose of a document: the file itself, or a notebook's markdown cells joined."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        return "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return path.read_text(encoding="utf-8")


def without_code(text: str) -> list[str]:
    lines, fenced = [], False
    for line in text.splitlines():
        if CODE_FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(re.sub(r"`[^`]*`", "", line))             # inline code is not a link
    return lines


def slug(heading: str) -> str:
    """GitHub's heading id: lower case, markup and punctuation dropped (letters, digits, spaces, - and _ kept),
    spaces → hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)        # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text).lower()
    kept = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in without_code(markdown_of(path)):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    for m in re.finditer(r"<a\s+(?:name|id)=\"([^\"]+)\"", markdown_of(path)):
        out.add(m.group(1))
    return out


def check_url(url: str) -> str | None:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or " " in url or "." not in parsed.netloc:
        return "malformed URL"
    return None


def broken_links(root: Path = ROOT) -> list[str]:
    problems = []
    cache: dict[Path, set[str]] = {}
    for doc in documents(root):
        lines = without_code(markdown_of(doc))
        for line in lines:
            for target in LINK.findall(line) + IMAGE.findall(line) + HTML_LINK.findall(line):
                where = f"{doc.relative_to(root)}: {target}"
                if "://" in target:
                    if (why := check_url(target)):
                        problems.append(f"{where} ({why})")
                    continue
                if target.startswith(("mailto:", "data:")):
                    continue
                path_part, _, anchor = target.partition("#")
                file = doc if not path_part else (doc.parent / unquote(path_part)).resolve()
                if path_part and not file.exists():
                    problems.append(f"{where} (no such file)")
                    continue
                if anchor and file.suffix in (".md", ".ipynb"):
                    if file not in cache:
                        cache[file] = anchors(file)
                    if unquote(anchor) not in cache[file]:
                        problems.append(f"{where} (no heading #{anchor} in {file.name})")
    return problems


def main() -> int:
    problems = broken_links()
    for p in problems:
        print(p)
    print(f"{len(problems)} broken link(s) in {len(documents())} documents")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
