"""Point the course at another GitHub home: every Colab badge, repository link and setup-cell REPO_URL/BRANCH.

    python scripts/set_repo.py OWNER/NAME [BRANCH]        # e.g. for your fork: python scripts/set_repo.py alice/my-course
    python scripts/set_repo.py OWNER/NAME BRANCH --root /path/to/a/copy

The current home is read from notebook 01's setup cell (``REPO_URL`` and ``BRANCH``); every occurrence of it in
README.md, the notebooks (learner and solution) and maintainers/ is rewritten. Commit the result in your fork; the
Colab badges then open your copy, and the setup cell clones it. ``tests/test_set_repo.py`` runs it on a copy.
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SLUG = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
BRANCH_OK = re.compile(r"^[A-Za-z0-9._/-]{1,200}$")


def files(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "notebooks").rglob("*.ipynb")), *sorted((root / "maintainers").glob("*.ipynb"))]


def current_home(root: Path) -> tuple[str, str]:
    """(slug, branch) from the setup cell of the first lesson notebook."""
    nb = json.loads(next(iter(sorted((root / "notebooks").glob("01_*.ipynb")))).read_text(encoding="utf-8"))
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
    values = {}
    for node in ast.parse("".join(cell["source"])).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id in ("REPO_URL", "BRANCH"):
            values[node.targets[0].id] = ast.literal_eval(node.value)
    return values["REPO_URL"].removeprefix("https://github.com/").rstrip("/"), values["BRANCH"]


def set_repo(slug: str, branch: str = "main", root: Path = ROOT) -> list[Path]:
    """Rewrite the course's home to ``slug`` (OWNER/NAME) and ``branch``; returns the files changed."""
    if not SLUG.match(slug):
        raise ValueError(f"{slug!r} is not OWNER/NAME")
    if not BRANCH_OK.match(branch):
        raise ValueError(f"{branch!r} is not a branch name")
    old_slug, old_branch = current_home(root)
    rules = [
        (re.escape(f"https://colab.research.google.com/github/{old_slug}/blob/{old_branch}/"),
         f"https://colab.research.google.com/github/{slug}/blob/{branch}/"),
        (re.escape(f"https://github.com/{old_slug}") + r"(?![A-Za-z0-9._-])", f"https://github.com/{slug}"),
        (r'BRANCH = \\"' + re.escape(old_branch) + r'\\"', f'BRANCH = \\\\"{branch}\\\\"'),   # inside notebook JSON
    ]
    changed = []
    for path in files(root):
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        new = text
        for pattern, replacement in rules:
            new = re.sub(pattern, replacement, new)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


BADGE = re.compile(r"https://colab\.research\.google\.com/github/([^/\s]+/[^/\s]+)/blob/([^\s)]+?)/((?:notebooks|maintainers)/[^\s)\"]+\.ipynb)")


def home_problems(root: Path = ROOT) -> list[str]:
    """Everything that disagrees with the home in notebook 01's setup cell: another REPO_URL or BRANCH in a setup
    cell, a Colab badge (README, notebooks, maintainers) to another repository or branch, or to a missing file."""
    slug, branch = current_home(root)
    problems = []
    for path in files(root):
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        for repo, ref, target in BADGE.findall(text):
            where = f"{path.relative_to(root)}: badge to {repo}@{ref}/{target}"
            if (repo, ref) != (slug, branch):
                problems.append(f"{where} (home is {slug}@{branch})")
            if not (root / target).exists():
                problems.append(f"{where} (no such notebook)")
        for url in re.findall(r'REPO_URL = \\"([^\\"]+)\\"', text):
            if url != f"https://github.com/{slug}":
                problems.append(f"{path.relative_to(root)}: REPO_URL {url} (home is {slug})")
        for ref in re.findall(r'BRANCH = \\"([^\\"]+)\\"', text):
            if ref != branch:
                problems.append(f"{path.relative_to(root)}: BRANCH {ref} (home branch is {branch})")
    return problems


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("slug", help="OWNER/NAME of the GitHub repository")
    parser.add_argument("branch", nargs="?", default="main")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to rewrite (default: this one)")
    args = parser.parse_args(argv)
    try:
        changed = set_repo(args.slug, args.branch, args.root)
    except ValueError as e:
        parser.error(str(e))
    old = current_home(args.root)
    print(f"home is now github.com/{old[0]} (branch {old[1]}); {len(changed)} files changed")
    for p in changed:
        print("  ", p.relative_to(args.root))
    for problem in home_problems(args.root):       # whatever the rewrite could not fix (a hand-edited badge)
        print("still inconsistent:", problem)


if __name__ == "__main__":
    sys.exit(main())
