"""Download the wheels a registry-less GPU machine needs to run the course (`make gpu-wheels`).

The machine (Python 3.12, x86_64, CUDA 13, no Hugging Face Hub, no package registry) already holds
torch 2.11, transformers 5.17, peft, accelerate and the scientific stack (``TARGET_HAS`` below). This
script fills the gap with wheels in an ignored folder (``.whl/``) that ``scripts/gpu_check.sh`` installs
there offline (``pip install --no-index --no-deps --target``):

- roots: every course library from requirements.txt whose pinned version the machine does not already
  hold (transformers, trl, peft, bitsandbytes, datasets — accelerate 1.15.0 is there at the pin), and every
  pin of the notebook-running tools it lacks (nbval, nbclient, nbformat, ipykernel, ipywidgets);
- then, breadth first, each requirement (markers evaluated for CPython 3.12 on Linux x86_64) that the
  machine lacks, at the requirements.txt pin or else at the version this venv resolved and CI tests;
- one version of each project (two would stop the whole install).

bitsandbytes ships native libraries for eleven CUDA/ROCm/XPU builds (43 MB); the machine's torch is built
for CUDA 13, so the wheel is repacked with the CPU and CUDA 13.x libraries only (``+cu13`` local version,
~7.5 MB). The folder plus the working tree that travels with it must fit the device tool's 64 MiB.

Usage: python scripts/gpu_wheels.py [--dest .whl] [--check-only] [--limit-mib 64]
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
LIMIT_MIB = 64  # the device tool carries at most 64 MiB: working tree and wheels together

# pip download flags for the target interpreter (the device README's recipe, plus 2_24 for bitsandbytes).
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"]
PYTHON_VERSION = "3.12"

# Marker environment of the target: CPython 3.12 on Linux x86_64.
TARGET_ENV = {
    "implementation_name": "cpython", "implementation_version": "3.12.3",
    "os_name": "posix", "platform_machine": "x86_64", "platform_python_implementation": "CPython",
    "platform_release": "", "platform_system": "Linux", "platform_version": "",
    "python_full_version": "3.12.3", "python_version": "3.12", "sys_platform": "linux",
}

# What the GPU machine's image ('cuda') already holds: /work/.library/device/KINDS.md, package list read
# 2026-11-17. Not carried again unless a course pin asks for another version.
TARGET_HAS = frozenset(canonicalize_name(n) for n in """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt
jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes
mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba
numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx
onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client
propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions
pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics
torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop
wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())

# Versions seen there (KINDS.md 'pip list' row, 2026-11); other packages' versions are unknown here.
TARGET_VERSIONS = {canonicalize_name(k): v for k, v in {
    "accelerate": "1.15.0", "huggingface-hub": "1.33.0", "numpy": "2.5.2", "safetensors": "0.8.0",
    "tokenizers": "0.23.2", "torch": "2.11.0", "transformers": "5.17.0", "triton": "3.6.0",
}.items()}

# Carried although the target has some version, because a carried wheel bounds it from above and the
# target's version is unknown: datasets 5.2.0 needs fsspec<=2026.9.0 (a 0.2 MB pure-Python wheel).
ALSO_CARRY = {"fsspec": "datasets 5.2.0 bounds it: fsspec<=2026.9.0; the target's version is unread"}

# Never carried: too big, and the target holds a build for its own CUDA.
NEVER_CARRY = frozenset({"torch", "triton"})

# bitsandbytes: keep only these native libraries (the target's torch is built for CUDA 13).
BNB_KEEP = re.compile(r"libbitsandbytes_(cpu|cuda13\d)\.so$")
BNB_LOCAL = "cu13"


@dataclass
class WheelInfo:
    path: Path
    name: str           # canonical project name
    version: Version
    requires: list[str] = field(default_factory=list)   # raw Requires-Dist lines


def requirements_pins(path: Path = ROOT / "requirements.txt") -> dict[str, str]:
    """``{canonical name: version}`` for every ``name==version`` line of requirements.txt."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version.strip()
    return pins


def course_library_names(path: Path = ROOT / "requirements.txt") -> list[str]:
    """Names in requirements.txt's 'course libraries' section (what the notebooks' COLAB_PINS install)."""
    names, inside = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# ---"):
            inside = "course libraries" in line
        elif inside and "==" in line and not line.startswith("#"):
            names.append(canonicalize_name(line.split("==", 1)[0]))
    return names


def choose_roots(pins: dict[str, str], course_libs: list[str], target_has=TARGET_HAS,
                 target_versions=TARGET_VERSIONS) -> dict[str, str]:
    """The projects to carry for their own sake, with versions.

    A course library is carried unless the target holds exactly its pin; any other requirements.txt pin is
    carried only if the target lacks the project (its tools — pytest, matplotlib — are fine at their version).
    """
    roots = {}
    for name, version in pins.items():
        if name in NEVER_CARRY:
            continue
        if name in course_libs:
            if target_versions.get(name) != version:
                roots[name] = version
        elif name not in target_has:
            roots[name] = version
    for name in ALSO_CARRY:
        roots[canonicalize_name(name)] = pins.get(canonicalize_name(name)) or local_version(name)
    return roots


def local_version(name: str) -> str:
    """The version this venv resolved (what CI tests); raises if the venv lacks the project."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        raise SystemExit(f"no version known for {name!r}: install it into the venv or pin it in requirements.txt")


def read_wheel(path: Path) -> WheelInfo:
    """Name, version and Requires-Dist lines of a wheel file, from its METADATA."""
    name, version, _build, _tags = parse_wheel_filename(path.name)
    with zipfile.ZipFile(path) as zf:
        meta_name = next(n for n in zf.namelist()
                         if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        text = zf.read(meta_name).decode("utf-8")
    header = text.split("\n\n", 1)[0]
    requires = [line.split(":", 1)[1].strip() for line in header.splitlines()
                if line.startswith("Requires-Dist:")]
    return WheelInfo(path, canonicalize_name(name), version, requires)


def applicable(requires: list[str], extras: frozenset[str] = frozenset(), env=TARGET_ENV) -> list[Requirement]:
    """The requirements that apply on the target: markers true for CPython 3.12/Linux with no extra or one of
    ``extras`` (the extras the dependant asked for, e.g. ``fsspec[http]``)."""
    out = []
    for line in requires:
        req = Requirement(line)
        if req.marker is None:
            out.append(req)
            continue
        for extra in ("", *sorted(extras)):
            if req.marker.evaluate({**env, "extra": extra}):
                out.append(req)
                break
    return out


@dataclass
class Check:
    problems: list[str]            # unsatisfied: the install would be broken
    unverified: list[str]          # satisfied by the target, at a version unknown here
    from_target: dict[str, set]    # target project -> requirement strings that rely on it


def check_closure(wheels: list[WheelInfo], target_has=TARGET_HAS, target_versions=TARGET_VERSIONS,
                  env=TARGET_ENV) -> Check:
    """Is every applicable Requires-Dist of every wheel met by another wheel or by the target?

    Extras requested by a requirement (``fsspec[http]``) pull in the extra's own requirements of the
    wheel or target project that provides it. One version per project is required.
    """
    problems, unverified, from_target = [], [], {}
    by_name: dict[str, WheelInfo] = {}
    for w in wheels:
        if w.name in by_name:
            problems.append(f"two versions of {w.name}: {by_name[w.name].version} and {w.version}")
        by_name[w.name] = w
    # extras requested of each carried project
    extras: dict[str, set[str]] = {n: set() for n in by_name}
    changed = True
    while changed:
        changed = False
        for w in by_name.values():
            for req in applicable(w.requires, frozenset(extras[w.name]), env):
                dep = canonicalize_name(req.name)
                if dep in extras and not set(req.extras) <= extras[dep]:
                    extras[dep] |= set(req.extras)
                    changed = True
    for w in by_name.values():
        for req in applicable(w.requires, frozenset(extras[w.name]), env):
            dep = canonicalize_name(req.name)
            where = f"{w.name} {w.version} needs {req}"
            if dep in by_name:
                if not req.specifier.contains(by_name[dep].version, prereleases=True):
                    problems.append(f"{where}, carried {dep} is {by_name[dep].version}")
            elif dep in target_has:
                from_target.setdefault(dep, set()).add(str(req))
                known = target_versions.get(dep)
                if known is not None:
                    if not req.specifier.contains(Version(known), prereleases=True):
                        problems.append(f"{where}, the target has {dep} {known}")
                elif str(req.specifier):
                    unverified.append(f"{where} (target version unknown here)")
            else:
                problems.append(f"{where}: neither carried nor on the target")
    return Check(problems, sorted(set(unverified)), from_target)


def pip_download(names: dict[str, str], dest: Path) -> None:
    """``pip download --no-deps`` the given ``name==version`` wheels for the target into ``dest``."""
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--python-version", PYTHON_VERSION, "--implementation", "cp", "--dest", str(dest)]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    cmd += [f"{n}=={v}" for n, v in sorted(names.items())]
    subprocess.run(cmd, check=True)


def wheels_in(folder: Path) -> list[WheelInfo]:
    return [read_wheel(p) for p in sorted(folder.glob("*.whl"))]


def resolve(roots: dict[str, str], dest: Path, download=pip_download, pins: dict[str, str] | None = None,
            version_of=local_version, target_has=TARGET_HAS) -> dict[str, str]:
    """Download ``roots`` and, breadth first, every dependency the target lacks. Returns {name: version}.

    A dependency's version is its requirements.txt pin, else ``version_of(name)`` (this venv's); it must
    satisfy the specifier that pulled it in (``check_closure`` checks all of them afterwards).
    ``download(names, dest)`` is injectable, so the walk is testable offline.
    """
    pins = requirements_pins() if pins is None else pins
    wanted = dict(roots)
    extras: dict[str, set[str]] = {n: set() for n in wanted}
    while True:
        have = _matching(wheels_in(dest), wanted)
        missing = {n: v for n, v in wanted.items() if n not in have}
        if missing:
            download(missing, dest)
            have = _matching(wheels_in(dest), wanted)
        new, more_extras = {}, False
        for name in list(wanted):
            if name not in have:
                raise SystemExit(f"no wheel for {name}=={wanted[name]} in {dest}")
            for req in applicable(have[name].requires, frozenset(extras[name])):
                dep = canonicalize_name(req.name)
                if dep in NEVER_CARRY:
                    continue
                if dep in wanted or dep in new:
                    if not set(req.extras) <= extras[dep]:
                        extras[dep] |= set(req.extras)
                        more_extras = True
                    continue
                if dep in target_has:
                    continue
                version = pins.get(dep) or version_of(dep)
                if not req.specifier.contains(Version(version), prereleases=True):
                    raise SystemExit(f"{name} needs {req}; the version chosen for {dep} is {version}")
                new[dep] = version
                extras[dep] = set(req.extras)
        if not new and not more_extras:
            return wanted
        wanted.update(new)


def _matching(wheels: list[WheelInfo], wanted: dict[str, str]) -> dict[str, WheelInfo]:
    """The wheels at the wanted versions (a local label such as ``+cu13`` ignored), by name."""
    return {w.name: w for w in wheels
            if w.name in wanted and w.version.public == Version(wanted[w.name]).public}


def slim_bitsandbytes(path: Path, keep=BNB_KEEP, local=BNB_LOCAL) -> Path:
    """Repack a bitsandbytes wheel keeping only the native libraries ``keep`` matches; the version gets the
    local label ``+<local>`` (still ``==`` its public version) so nobody mistakes it for PyPI's file.
    Returns the new wheel's path and deletes the original. A wheel already slimmed is returned as it is."""
    _name, version, _build, _tags = parse_wheel_filename(path.name)
    if version.local:
        return path
    new_version = f"{version}+{local}"
    old_info, new_info = f"bitsandbytes-{version}.dist-info/", f"bitsandbytes-{new_version}.dist-info/"
    tag = path.name.split("-", 2)[2]   # python-abi-platform.whl
    out = path.with_name(f"bitsandbytes-{new_version}-{tag}")
    record_rows = []
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            arc = info.filename
            if arc.endswith(".so") and not keep.search(arc):
                continue
            if arc == old_info + "RECORD":
                continue
            data = src.read(info)
            if arc.startswith(old_info):
                arc = new_info + arc[len(old_info):]
                if arc.endswith("METADATA"):
                    data = re.sub(rb"(?m)^Version: .*$", f"Version: {new_version}".encode(), data, count=1)
            dst.writestr(_zipinfo(arc, info), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record_rows.append(f"{arc},sha256={digest},{len(data)}")
        record_rows.append(f"{new_info}RECORD,,")
        dst.writestr(_zipinfo(new_info + "RECORD", None), "\n".join(record_rows) + "\n")
    path.unlink()
    return out


def _zipinfo(arcname: str, like: zipfile.ZipInfo | None) -> zipfile.ZipInfo:
    zi = zipfile.ZipInfo(arcname, like.date_time if like else (2026, 1, 1, 0, 0, 0))
    zi.compress_type = zipfile.ZIP_DEFLATED
    zi.external_attr = like.external_attr if like else 0o644 << 16
    return zi


def remove_strays(folder: Path, keep: dict[str, str]) -> list[Path]:
    """Delete wheels of projects not in ``keep`` or at another version: one version of each."""
    removed = []
    for w in wheels_in(folder):
        if w.name not in keep or w.version.public != Version(keep[w.name]).public:
            w.path.unlink()
            removed.append(w.path)
    return removed


def working_tree_bytes(root: Path = ROOT, exclude: str | None = None) -> int:
    """Bytes of what the device tool sends: tracked plus untracked-not-ignored files (ignored ones stay)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=root, capture_output=True, check=True).stdout.decode()
    total = 0
    for rel in filter(None, set(out.split("\0"))):
        p = root / rel
        if p.is_file() and not p.is_symlink() and not (exclude and rel.startswith(exclude)):
            total += p.stat().st_size
    return total


def size_table(wheels: list[WheelInfo]) -> tuple[list[str], int]:
    """Lines 'name version size' sorted largest first, and the total in bytes."""
    rows = sorted(((w.path.stat().st_size, w) for w in wheels), key=lambda r: -r[0])
    total = sum(s for s, _ in rows)
    lines = [f"{w.name:28s} {str(w.version):18s} {s / MIB:8.2f} MiB" for s, w in rows]
    return lines, total


def report(folder: Path, limit_mib: float, tree_bytes: int) -> int:
    wheels = wheels_in(folder)
    lines, total = size_table(wheels)
    print(f"\n{len(wheels)} wheels in {folder}:")
    print("\n".join("  " + line for line in lines))
    print(f"  {'total':47s} {total / MIB:8.2f} MiB")
    print(f"  {'working tree that travels with them':47s} {tree_bytes / MIB:8.2f} MiB")
    both = total + tree_bytes
    print(f"  {'together':47s} {both / MIB:8.2f} MiB  (limit {limit_mib:g} MiB)")
    check = check_closure(wheels)
    print(f"\ntarget projects relied on: {', '.join(sorted(check.from_target))}")
    if check.unverified:
        print("version bounds not checkable here (gpu_check.sh runs `pip check` there):")
        print("\n".join("  " + u for u in check.unverified))
    status = 0
    if check.problems:
        print("\nPROBLEMS:\n" + "\n".join("  " + p for p in check.problems))
        status = 1
    if both > limit_mib * MIB:
        print(f"\nTOO BIG: {both / MIB:.2f} MiB > {limit_mib:g} MiB")
        status = 1
    if not wheels:
        print(f"\nno wheels in {folder}: run without --check-only (needs PyPI)")
        status = 1
    if status == 0:
        carry = folder.relative_to(ROOT).as_posix() if folder.is_relative_to(ROOT) else str(folder)
        print(f"\nok. On the GPU machine: the device tool's run with carry ['{carry}'] and the command "
              "'bash scripts/gpu_check.sh' (WHEELS=<folder> if it is not .whl)")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=ROOT / ".whl")
    parser.add_argument("--check-only", action="store_true", help="no downloads: check the folder as it is")
    parser.add_argument("--limit-mib", type=float, default=LIMIT_MIB)
    args = parser.parse_args(argv)
    dest = args.dest.resolve()
    dest.mkdir(parents=True, exist_ok=True)
    if not args.check_only:
        pins = requirements_pins()
        roots = choose_roots(pins, course_library_names())
        print("roots:", ", ".join(f"{n}=={v}" for n, v in sorted(roots.items())))
        wanted = resolve(roots, dest, pins=pins)
        for w in wheels_in(dest):
            if w.name == "bitsandbytes":
                slim_bitsandbytes(w.path)
        for p in remove_strays(dest, wanted):
            print(f"removed stray {p.name}")
    rel = dest.relative_to(ROOT).as_posix() + "/" if dest.is_relative_to(ROOT) else None
    return report(dest, args.limit_mib, working_tree_bytes(exclude=rel))


if __name__ == "__main__":
    sys.exit(main())
