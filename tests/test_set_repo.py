"""scripts/set_repo.py moves every badge, link and setup cell to another home; the setup cell explains a failed clone."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import set_repo  # noqa: E402


@pytest.fixture()
def copy(tmp_path):
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "maintainers", tmp_path / "maintainers")
    for nb in ("notebooks/05_codechallenge_gpt2_large_part1.ipynb", "notebooks/07_rlhf.ipynb"):
        assert (tmp_path / nb).exists()
    return tmp_path


def texts(root):
    return {p: p.read_text(encoding="utf-8") for p in set_repo.files(root)}


def test_the_repository_is_consistent_with_its_home():
    assert set_repo.home_problems(ROOT) == []


def test_set_repo_rewrites_everything_and_round_trips(copy):
    before = texts(copy)
    old_slug, old_branch = set_repo.current_home(copy)
    changed = subprocess.run([sys.executable, str(ROOT / "scripts" / "set_repo.py"), "alice/my-course", "dev",
                              "--root", str(copy)], capture_output=True, text=True, check=True).stdout
    assert "still inconsistent" not in changed
    assert set_repo.current_home(copy) == ("alice/my-course", "dev")
    assert set_repo.home_problems(copy) == []
    after = texts(copy)
    assert sum(before[p] != after[p] for p in before) >= 10                   # README + every notebook
    for p, text in after.items():
        assert old_slug not in text, f"{p} still names {old_slug}"
    readme = after[copy / "README.md"]
    assert readme.count("https://colab.research.google.com/github/alice/my-course/blob/dev/notebooks/") >= 7
    first = json.loads(after[copy / "notebooks" / "01_what_is_instruction_tuning.ipynb"])
    setup = next("".join(c["source"]) for c in first["cells"] if c["cell_type"] == "code")
    assert 'REPO_URL = "https://github.com/alice/my-course"' in setup and 'BRANCH = "dev"' in setup
    set_repo.set_repo(old_slug, old_branch, copy)                             # and back: byte for byte
    assert texts(copy) == before


def test_set_repo_refuses_a_bad_slug(copy):
    with pytest.raises(ValueError):
        set_repo.set_repo("not a slug", "main", copy)
    with pytest.raises(ValueError):
        set_repo.set_repo("alice/ok", "bad branch", copy)


def test_home_problems_names_a_hand_edited_badge(copy):
    nb = copy / "notebooks" / "03_chat_format_system_user_assistant.ipynb"
    slug, branch = set_repo.current_home(copy)
    nb.write_text(nb.read_text(encoding="utf-8").replace(f"github/{slug}/blob/{branch}/", "github/bob/x/blob/main/"),
                  encoding="utf-8")
    problems = set_repo.home_problems(copy)
    assert len(problems) == 1 and "03_chat_format" in problems[0] and "bob/x" in problems[0]


def test_setup_cell_explains_a_failed_clone(tmp_path, monkeypatch):
    """Run notebook 01's setup cell as Colab would, with a REPO_URL that cannot be cloned."""
    nb = json.loads((ROOT / "notebooks" / "01_what_is_instruction_tuning.ipynb").read_text(encoding="utf-8"))
    cell = next("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    cell = cell[:cell.index("sys.path.insert(0, str(ROOT))")]                # stop before the course is imported
    cell = cell.replace('Path("/content")', f'Path({str(tmp_path)!r})')
    cell = cell.replace(set_repo.current_home(ROOT)[0], "nobody/does-not-exist")
    cell = cell.replace("https://github.com/", f"file://{tmp_path}/no-such-remote/")   # fails offline, at once
    monkeypatch.setitem(sys.modules, "google.colab", object())
    with pytest.raises(RuntimeError) as err:
        exec(compile(cell, "setup-cell", "exec"), {})
    message = str(err.value)
    assert "Could not clone" in message and "Set REPO_URL" in message and "upload the course folder" in message
    assert "does-not-exist" in message and not (tmp_path / "does-not-exist").exists()
