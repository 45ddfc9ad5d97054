"""The repository keeps its promises: pins agree everywhere, notebooks are clean and consistent."""
import ast
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ALL_NOTEBOOKS = NOTEBOOKS + sorted((ROOT / "notebooks" / "solutions").glob("*.ipynb"))
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)$")


def requirement_sections() -> dict[str, dict[str, str]]:
    """requirements.txt pins grouped by their '# --- section ---' header."""
    sections, current = {}, None
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("# ---"):
            current = line.strip("# -")
            sections[current] = {}
        elif line and not line.startswith("#"):
            m = PIN.match(line)
            assert m, f"requirements.txt: {line!r} is not pinned with =="
            assert current, f"requirements.txt: {line!r} is outside a section"
            sections[current][m.group(1).lower()] = m.group(2)
    return sections


def all_pins() -> dict[str, str]:
    return {k: v for sec in requirement_sections().values() for k, v in sec.items()}


def test_requirements_has_the_expected_sections():
    sections = requirement_sections()
    assert list(sections) == ["provided by Colab (not reinstalled there)",
                              "course libraries (installed in Colab by the setup cell)",
                              "running and testing notebooks locally (not installed in Colab)"]
    assert sections["provided by Colab (not reinstalled there)"]["torch"] == "2.13.0"
    for lib in ("transformers", "trl", "peft", "bitsandbytes", "datasets", "accelerate"):
        assert lib in sections["course libraries (installed in Colab by the setup cell)"]


def test_environment_yml_agrees_with_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    deps = env["dependencies"]
    assert any(isinstance(d, str) and d.startswith("python=") for d in deps)
    pip_lists = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1, "environment.yml needs exactly one pip section"
    pins = {}
    for line in pip_lists[0]:
        m = PIN.match(line.strip())
        assert m, f"environment.yml: {line!r} is not pinned with =="
        pins[m.group(1).lower()] = m.group(2)
    assert pins == all_pins(), "environment.yml and requirements.txt disagree"


def code_cells(nb_path: Path) -> list[str]:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def setup_constants(nb_path: Path) -> dict:
    """REPO_URL and COLAB_PINS as assigned in the notebook's first code cell."""
    tree = ast.parse(code_cells(nb_path)[0])
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in {"REPO_URL", "COLAB_PINS"}:
                found[node.targets[0].id] = ast.literal_eval(node.value)
    return found


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


COURSE_LIBRARIES = "course libraries (installed in Colab by the setup cell)"


def libraries_used(nb_path: Path) -> set[str]:
    """The course libraries a notebook can reach: its own imports and, transitively, those of the utils modules it
    imports (including imports inside functions — an over-approximation on purpose). bitsandbytes counts only where
    the notebook itself asks for 8-bit optimizers; utils imports it lazily for them alone."""
    def imports(src: str) -> set[str]:
        out = set()
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                out.add(("utils." if node.level else "") + (node.module or ""))
        return out
    source = "\n".join(code_cells(nb_path))
    todo, seen, libs = list(imports(source)), set(), set()
    while todo:
        name = todo.pop()
        if not name.startswith("utils"):
            libs.add(name.split(".")[0])
            continue
        path = ROOT.joinpath(*name.split(".")).with_suffix(".py")
        path = path if path.exists() else ROOT.joinpath(*name.split("."), "__init__.py")
        if path.exists() and path not in seen:
            seen.add(path)
            todo += [("utils." + i.removeprefix("utils.")) if i.startswith("utils.") else i
                     for i in imports(path.read_text(encoding="utf-8"))]
    course = set(requirement_sections()[COURSE_LIBRARIES])
    used = libs & course
    if "adamw8bit" not in source and "bitsandbytes" not in source:
        used.discard("bitsandbytes")
    if used & {"trl", "peft"}:
        used.add("accelerate")                       # what TRL's and PEFT's training needs, pinned with them
    return used


@pytest.mark.parametrize("nb", ALL_NOTEBOOKS, ids=lambda p: p.name)
def test_colab_install_pins_what_the_notebook_uses(nb):
    pins = {p.split("==")[0].lower(): p.split("==")[1] for p in setup_constants(nb)["COLAB_PINS"]}
    course = requirement_sections()[COURSE_LIBRARIES]
    assert all(course.get(k) == v for k, v in pins.items()), f"COLAB_PINS {pins} disagree with requirements.txt"
    assert libraries_used(nb) <= set(pins), f"{nb.name} uses {sorted(libraries_used(nb) - set(pins))} without installing it"
    assert not any(p.lower().startswith("torch") for p in pins), "Colab ships torch: never reinstall it"


def test_notebooks_01_and_02_install_no_training_libraries():
    for nb in NOTEBOOKS[:2]:
        assert not {p.split("==")[0] for p in setup_constants(nb)["COLAB_PINS"]} & {"trl", "peft", "bitsandbytes"}


def test_setup_cell_identical_everywhere_but_its_pins():
    def without_pins(nb):
        cell = code_cells(nb)[0]
        return re.sub(r"COLAB_PINS = \[[^\]]*\]", "COLAB_PINS = [...]", cell)
    first_cells = {nb.name: without_pins(nb) for nb in ALL_NOTEBOOKS}
    assert len(set(first_cells.values())) == 1, f"setup cells differ: {sorted(first_cells)}"


def test_badges_and_repo_url_point_to_one_home():
    import sys
    sys.path.insert(0, str(ROOT / "scripts"))
    import set_repo
    assert set_repo.home_problems(ROOT) == []
    slug, branch = set_repo.current_home(ROOT)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for nb in ALL_NOTEBOOKS:
        if nb.parent.name == "solutions":
            continue
        first_md = json.loads(nb.read_text(encoding="utf-8"))["cells"][0]
        assert f"colab.research.google.com/github/{slug}/blob/{branch}/notebooks/{nb.name}" in "".join(first_md["source"])
        assert f"notebooks/{nb.name}" in readme, f"{nb.name} has no badge in the README course map"


@pytest.mark.parametrize("nb", ALL_NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_committed_clean(nb):
    data = json.loads(nb.read_text(encoding="utf-8"))
    assert "widgets" not in data.get("metadata", {}), "strip metadata.widgets"
    for i, cell in enumerate(data["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"cell {i} has outputs"
            assert cell.get("execution_count") is None, f"cell {i} has an execution count"
        assert "widgets" not in cell.get("metadata", {})


@pytest.mark.parametrize("nb", ALL_NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_safe(nb):
    text = nb.read_text(encoding="utf-8")
    assert "trust_remote_code=True" not in text
    assert not re.search(r"hf_[A-Za-z0-9]{30,}", text), "a Hugging Face token in a notebook"
    assert "weights_only=False" not in text


def test_data_files_are_documented():
    readme = (ROOT / "data" / "README.md").read_text(encoding="utf-8")
    for path in (ROOT / "data").rglob("*"):
        if path.is_file() and path.name != "README.md":
            rel = path.relative_to(ROOT / "data").as_posix()
            assert f"`{rel}`" in readme, f"data/{rel} has no provenance entry in data/README.md"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci
    assert "make test" in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("nb", ALL_NOTEBOOKS, ids=lambda p: p.name)
def test_one_config_cell_in_override_style(nb):
    """The full configuration first, then `if FAST: CFG.update(...)` with only what differs (nanoGPT's style);
    after that cell the mode is never branched on again — at most passed on as `fast=FAST`."""
    cells = code_cells(nb)
    config = [i for i, src in enumerate(cells) if re.search(r"^CFG = dict\(", src, re.M)]
    assert len(config) == 1, f"{nb.name}: {len(config)} cells assign CFG = dict(...)"
    src = cells[config[0]]
    assert "if not FAST else" not in src, "write the full config, then `if FAST: CFG.update(...)`"
    tree = ast.parse(src)
    fast_ifs = [n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "FAST"]
    assert len(fast_ifs) == 1 and not fast_ifs[0].orelse, f"{nb.name}: one `if FAST:` block, without else"
    assert all(ast.unparse(s).startswith("CFG.update(") for s in fast_ifs[0].body), "`if FAST:` only updates CFG"
    full_keys = {kw.arg for n in tree.body if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "CFG"
                 for kw in n.value.keywords}
    fast_keys = {kw.arg for s in fast_ifs[0].body for kw in s.value.keywords}
    assert fast_keys <= full_keys, f"{nb.name}: fast mode sets keys the full config lacks: {fast_keys - full_keys}"
    for i, other in enumerate(cells):
        if i != config[0] and "FAST = fast_mode()" not in other:
            branches = re.findall(r"[^\n]*(?<!fast=)\bFAST\b[^\n]*", other)
            assert not branches, f"{nb.name} cell {i} uses FAST other than as fast=FAST: {branches}"
    used = "\n".join(cells[config[0] + 1:])
    for key in full_keys:
        assert re.search(rf"""(CFG|cfg)\[["']{key}["']\]""", used), f"{nb.name}: CFG key {key!r} is never used (dead key)"


def test_github_workflows_call_make_targets_that_exist():
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M))
    runs = []
    for wf in sorted((ROOT / ".github" / "workflows").glob("*.yml")):
        for job in yaml.safe_load(wf.read_text(encoding="utf-8"))["jobs"].values():
            runs += [step["run"] for step in job["steps"] if "run" in step]
    called = [t for r in runs for t in re.findall(r"\bmake\s+([\w-]+)", r)]
    assert {"test", "test-latest"} <= set(called), called
    assert all(r.strip().startswith("make ") for r in runs), f"workflows should only call make targets: {runs}"
    assert set(called) <= targets, f"unknown make targets {set(called) - targets}"
