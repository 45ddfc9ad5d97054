"""scripts/gpu_wheels.py and scripts/gpu_check.sh: wheels for a GPU machine with no registry and no Hub.

The logic (markers, extras, closure, roots, the breadth-first walk, bitsandbytes slimming, sizes) is tested
offline on tiny fabricated wheels. Tests marked `needs_wheels` check the real downloaded folder (.whl/,
`make gpu-wheels`) and skip cleanly where it is absent, as in CI: downloading is never part of a test.
"""
import base64
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.tags import sys_tags
from packaging.utils import parse_wheel_filename
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("gpu_wheels", ROOT / "scripts" / "gpu_wheels.py")
gw = sys.modules["gpu_wheels"] = importlib.util.module_from_spec(spec)   # dataclasses look the module up
spec.loader.exec_module(gw)

WHEELS = ROOT / ".whl"
needs_wheels = pytest.mark.skipif(not any(WHEELS.glob("*.whl")),
                                  reason=".whl/ is absent: run `make gpu-wheels` (needs PyPI) to check it")


def make_wheel(folder: Path, name: str, version: str, requires=(), files=None, tag="py3-none-any") -> Path:
    """A minimal valid wheel: ``files`` {path: bytes} plus METADATA, WHEEL and a correct RECORD."""
    info = f"{name}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + \
        "".join(f"Requires-Dist: {r}\n" for r in requires) + "\n"
    wheel = f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n"
    contents = {**(files if files is not None else {f"{name}/__init__.py": f"__version__ = '{version}'\n".encode()}),
                f"{info}/METADATA": meta.encode(), f"{info}/WHEEL": wheel.encode()}
    rows = [f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}"
            for p, d in contents.items()] + [f"{info}/RECORD,,"]
    path = folder / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for p, d in contents.items():
            zf.writestr(p, d)
        zf.writestr(f"{info}/RECORD", "\n".join(rows) + "\n")
    return path


def info(name, version, requires=()):
    return gw.WheelInfo(Path(f"{name}-{version}-py3-none-any.whl"), name, Version(version), list(requires))


# --- markers and extras ---------------------------------------------------------------------------------

def test_applicable_evaluates_markers_for_cpython_312_on_linux():
    reqs = ["numpy>=1.17", 'tomli>=1.1; python_version < "3.11"', "appnope; platform_system == 'Darwin'",
            'typing-extensions>=4.4; python_version < "3.13"', 'pytest~=8.3; extra == "test"',
            'hf-xet<2; platform_machine == "x86_64" or platform_machine == "arm64"']
    assert [r.name for r in gw.applicable(reqs)] == ["numpy", "typing-extensions", "hf-xet"]
    assert [r.name for r in gw.applicable(reqs, frozenset({"test"}))] == ["numpy", "typing-extensions", "pytest",
                                                                           "hf-xet"]


# --- the closure check ------------------------------------------------------------------------------------

def test_closure_accepts_wheels_and_target_and_reports_unknown_versions():
    wheels = [info("trl", "1.16.0", ["datasets>=4.7.0", "pandas>=2.1.1", "torch>=2"]),
              info("datasets", "5.2.0", ["dill<0.4.2,>=0.3.0"]), info("dill", "0.4.1")]
    check = gw.check_closure(wheels, target_has={"pandas", "torch"}, target_versions={"torch": "2.11.0"})
    assert check.problems == []
    assert check.unverified == ["trl 1.16.0 needs pandas>=2.1.1 (target version unknown here)"]
    assert set(check.from_target) == {"pandas", "torch"}


@pytest.mark.parametrize("wheels, target_versions, expected", [
    ([info("a", "1.0", ["b>=2"]), info("b", "1.5")], {}, "a 1.0 needs b>=2, carried b is 1.5"),
    ([info("a", "1.0", ["torch>=2.12"])], {"torch": "2.11.0"}, "a 1.0 needs torch>=2.12, the target has torch 2.11.0"),
    ([info("a", "1.0", ["zzz"])], {}, "a 1.0 needs zzz: neither carried nor on the target"),
    ([info("a", "1.0"), info("a", "2.0")], {}, "two versions of a: 1.0 and 2.0"),
    # an extra asked for by a dependant (b[http]) brings in b's own `extra == "http"` requirements
    ([info("a", "1.0", ["b[http]"]), info("b", "1.0", ['aiohttp; extra == "http"'])], {},
     "b 1.0 needs aiohttp; extra == \"http\": neither carried nor on the target"),
])
def test_closure_reports_what_would_break_the_install(wheels, target_versions, expected):
    check = gw.check_closure(wheels, target_has={"torch"}, target_versions=target_versions)
    assert expected in check.problems


def test_a_local_version_label_still_satisfies_an_exact_pin():
    check = gw.check_closure([info("a", "1.0", ["bitsandbytes==0.50.2"]), info("bitsandbytes", "0.50.2+cu13")],
                             target_has=set(), target_versions={})
    assert check.problems == []


# --- what to carry ------------------------------------------------------------------------------------------

def test_roots_carry_course_libraries_not_at_their_pin_and_tools_the_target_lacks():
    pins = {"torch": "2.13.0", "transformers": "5.22.2", "accelerate": "1.15.0", "trl": "1.16.0",
            "pytest": "9.2.0", "nbval": "0.11.0", "fsspec": "2026.9.0"}
    roots = gw.choose_roots(pins, ["transformers", "accelerate", "trl"],
                            target_has={"torch", "transformers", "accelerate", "pytest", "fsspec"},
                            target_versions={"transformers": "5.17.0", "accelerate": "1.15.0"})
    assert roots == {"transformers": "5.22.2", "trl": "1.16.0", "nbval": "0.11.0", "fsspec": "2026.9.0"}


def test_roots_from_the_real_requirements():
    pins = gw.requirements_pins()
    course = gw.course_library_names()
    assert course == ["transformers", "trl", "peft", "bitsandbytes", "datasets", "accelerate"]
    roots = gw.choose_roots(pins, course)
    for name in ("transformers", "trl", "peft", "bitsandbytes", "datasets", "nbval", "ipykernel", "ipywidgets"):
        assert roots[name] == pins[name]
    for name in ("torch", "accelerate", "pytest", "matplotlib"):   # there already (accelerate at the pin)
        assert name not in roots


def test_resolve_walks_dependencies_breadth_first_with_pins_and_venv_versions(tmp_path):
    index = {("a", "1.0"): ["b>=1", "numpy", 'c[x]'], ("b", "1.2"): ["d"],
             ("c", "3.0"): ['e; extra == "x"', 'never; extra == "y"'], ("d", "0.5"): [], ("e", "2.0"): []}
    calls = []

    def download(names, dest):
        calls.append(sorted(names))
        for n, v in names.items():
            make_wheel(dest, n, v, index[(n, v)])

    venv = {"b": "1.2", "c": "3.0", "d": "0.5", "e": "2.0"}
    got = gw.resolve({"a": "1.0"}, tmp_path, download=download, pins={"b": "1.2"},
                     version_of=venv.__getitem__, target_has={"numpy"})
    assert got == {"a": "1.0", "b": "1.2", "c": "3.0", "d": "0.5", "e": "2.0"}
    assert calls == [["a"], ["b", "c"], ["d", "e"]]
    # a second run finds everything in place and downloads nothing
    calls.clear()
    assert gw.resolve({"a": "1.0"}, tmp_path, download=download, pins={}, version_of=venv.__getitem__,
                      target_has={"numpy"}) == got
    assert calls == []


def test_resolve_refuses_a_version_outside_the_specifier(tmp_path):
    def download(names, dest):
        for n, v in names.items():
            make_wheel(dest, n, v, ["b>=2"] if n == "a" else [])

    with pytest.raises(SystemExit, match="a needs b>=2; the version chosen for b is 1.0"):
        gw.resolve({"a": "1.0"}, tmp_path, download=download, pins={}, version_of=lambda n: "1.0",
                   target_has=set())


def test_remove_strays_keeps_one_version_of_each(tmp_path):
    for n, v in [("a", "1.0"), ("a", "2.0"), ("b", "1.0"), ("c", "1.0")]:
        make_wheel(tmp_path, n, v)
    gw.remove_strays(tmp_path, {"a": "2.0", "b": "1.0"})
    assert sorted(p.name for p in tmp_path.glob("*.whl")) == ["a-2.0-py3-none-any.whl", "b-1.0-py3-none-any.whl"]


# --- bitsandbytes, sizes ------------------------------------------------------------------------------------

def test_slim_bitsandbytes_keeps_cpu_and_cuda13_and_stays_installable(tmp_path):
    libs = ["cpu", "cuda118", "cuda128", "cuda130", "cuda132", "rocm72", "xpu2026"]
    files = {"bitsandbytes/__init__.py": b"__version__ = '0.50.2'\n",
             **{f"bitsandbytes/libbitsandbytes_{lib}.so": lib.encode() * 1000 for lib in libs}}
    src = make_wheel(tmp_path, "bitsandbytes", "0.50.2", ["numpy>=1.17"], files,
                     tag="py3-none-manylinux_2_24_x86_64")
    out = gw.slim_bitsandbytes(src)
    assert out.name == "bitsandbytes-0.50.2+cu13-py3-none-manylinux_2_24_x86_64.whl"
    assert not src.exists()
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        meta = zf.read("bitsandbytes-0.50.2+cu13.dist-info/METADATA").decode()
        record = zf.read("bitsandbytes-0.50.2+cu13.dist-info/RECORD").decode()
        for row in record.splitlines()[:-1]:     # every hash in RECORD matches its file
            path, digest, size = row.split(",")
            data = zf.read(path)
            assert digest == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert int(size) == len(data)
    assert {n.rsplit("_", 1)[-1] for n in names if n.endswith(".so")} == {"cpu.so", "cuda130.so", "cuda132.so"}
    assert "Version: 0.50.2+cu13" in meta and "Requires-Dist: numpy>=1.17" in meta
    assert gw.slim_bitsandbytes(out) == out                       # idempotent
    assert gw.read_wheel(out).version == Version("0.50.2+cu13")
    if any(t in set(sys_tags()) for t in parse_wheel_filename(out.name)[3]):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target",
                        str(tmp_path / "site"), str(out)], check=True)
        assert (tmp_path / "site" / "bitsandbytes" / "libbitsandbytes_cuda130.so").exists()
        assert not (tmp_path / "site" / "bitsandbytes" / "libbitsandbytes_cuda128.so").exists()


def test_size_table_sorts_and_totals(tmp_path):
    small = make_wheel(tmp_path, "small", "1.0")
    big = make_wheel(tmp_path, "big", "1.0", files={"big/data.bin": os.urandom(50_000)})
    lines, total = gw.size_table(gw.wheels_in(tmp_path))
    assert total == small.stat().st_size + big.stat().st_size
    assert lines[0].startswith("big ") and lines[1].startswith("small ")


def test_report_fails_over_the_limit_and_on_a_broken_closure(tmp_path, capsys):
    make_wheel(tmp_path, "a", "1.0", ["b>=1"], files={"a/x.bin": os.urandom(200_000)})
    make_wheel(tmp_path, "b", "1.0")
    assert gw.report(tmp_path, limit_mib=1, tree_bytes=0) == 0
    assert gw.report(tmp_path, limit_mib=1, tree_bytes=900_000) == 1
    assert "TOO BIG" in capsys.readouterr().out
    (tmp_path / "b-1.0-py3-none-any.whl").unlink()
    assert gw.report(tmp_path, limit_mib=1, tree_bytes=0) == 1
    assert "a 1.0 needs b>=1: neither carried nor on the target" in capsys.readouterr().out


# --- the real folder (skipped without it) ------------------------------------------------------------------

@needs_wheels
def test_downloaded_folder_resolves_and_fits():
    wheels = gw.wheels_in(WHEELS)
    check = gw.check_closure(wheels)
    assert check.problems == []
    names = [w.name for w in wheels]
    assert len(names) == len(set(names)), "one version of each project"
    pins = gw.requirements_pins()
    for w in wheels:
        if w.name in pins:
            assert w.version.public == pins[w.name], f"{w.name} {w.version} is not the pin {pins[w.name]}"
    for need in ("transformers", "trl", "peft", "bitsandbytes", "datasets", "nbval", "ipykernel", "ipywidgets"):
        assert need in names
    assert "torch" not in names
    _, total = gw.size_table(wheels)
    assert total + gw.working_tree_bytes() <= gw.LIMIT_MIB * gw.MIB


@needs_wheels
def test_downloaded_wheels_install_offline_and_import_from_the_target_dir(tmp_path):
    """The install line of gpu_check.sh, on the wheels this interpreter can take (pure Python and
    bitsandbytes; the cp312 ones are for the target), then imports through PYTHONPATH."""
    here = set(sys_tags())
    usable = [str(p) for p in sorted(WHEELS.glob("*.whl")) if parse_wheel_filename(p.name)[3] & here]
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", str(site), *usable], check=True)
    code = ("import json, nbval, trl, bitsandbytes, importlib.metadata as m; "
            "print(json.dumps({n: [m.version(n), __import__(n).__file__] for n in ('nbval', 'trl', 'bitsandbytes')}))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(site)},
                         capture_output=True, text=True, check=True).stdout
    found = json.loads(out.strip().splitlines()[-1])
    for name, (version, path) in found.items():
        assert Path(path).resolve().is_relative_to(site.resolve()), f"{name} imported from {path}"
    assert found["bitsandbytes"][0] == "0.50.2+cu13"
    libs = sorted(p.name for p in (site / "bitsandbytes").glob("*.so"))
    assert libs == ["libbitsandbytes_cpu.so", "libbitsandbytes_cuda130.so", "libbitsandbytes_cuda132.so"]


# --- gpu_check.sh ---------------------------------------------------------------------------------------------

def test_gpu_check_installs_offline_shadows_the_image_and_fails_without_cuda(tmp_path):
    """A fabricated nbval 0.0.1 wheel: the script installs it with --no-index into SITE, the report says the
    nbval it imports is that one ('carried'), and without a GPU the CUDA check and the exit status fail."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "nbval", "0.0.1")
    env = {**os.environ, "PYTHON": sys.executable, "WHEELS": str(wheels), "SITE": str(tmp_path / "site"),
           "OUT": str(tmp_path / "out")}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--no-rehearsal"], env=env,
                          capture_output=True, text=True, timeout=300)
    rep = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    log = (tmp_path / "out" / "gpu_check.log").read_text()
    assert "installed 1 wheels" in log and "== summary:" in log
    assert rep["steps"]["install"] == "ok" and rep["steps"]["rehearsal"] == "skipped"
    assert rep["packages"]["nbval"] == {"version": "0.0.1", "from": "carried"}
    assert rep["packages"]["torch"]["from"] == "image"
    import torch
    if torch.cuda.is_available():
        assert proc.returncode == 0, proc.stdout[-3000:]
    else:
        assert proc.returncode != 0
        assert rep["steps"]["cuda"] == "fail" and rep["cuda"]["available"] is False


def test_gpu_check_rejects_unknown_arguments(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "WHEELS": str(tmp_path / "none"), "SITE": str(tmp_path / "s"),
           "OUT": str(tmp_path / "out")}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--bogus"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown argument: --bogus" in proc.stderr
