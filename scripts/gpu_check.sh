#!/usr/bin/env bash
# One command for a GPU machine with no Hugging Face Hub and no package registry (the device tool's
# nvidia-h200: Python 3.12, torch 2.11 + CUDA 13, transformers 5.17, peft, accelerate already there).
#
#   here:  make gpu-wheels                      # fills .whl/ (scripts/gpu_wheels.py), ≤ 64 MiB with the tree
#   there: bash scripts/gpu_check.sh            # device run, carry [".whl"]
#
# 1. installs .whl/*.whl offline (--no-index --no-deps) into $SITE and puts it first on PYTHONPATH, so the
#    course's pins (transformers 5.22.2, trl, peft, datasets, bitsandbytes, nbval …) shadow the image's;
# 2. prints where each library comes from and its version, and `pip check` lines about carried projects;
# 3. CUDA sanity: device, capability, the course's precision choice, bf16/fp16 matmuls against fp32,
#    an 8-bit AdamW step on the GPU (bitsandbytes' CUDA library loads), peak memory;
# 4. the rehearsal: COURSE_REHEARSAL=1 python scripts/rehearse.py (full configuration, random weights,
#    offline).
# Reports: gpu_check.log, gpu_check.json and the rehearsal's rehearsal.md (+ .json) in $OUT when set, else
# build/gpu_check/ (the device tool brings back at most 8 files from $OUT). Exit 0 only if the install, the
# CUDA check and the rehearsal all pass. Options: --no-rehearsal. Environment: PYTHON (python3), WHEELS
# (.whl), SITE (/tmp/site), REHEARSE_ARGS (extra arguments for rehearse.py, e.g. "05 06").
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/site}
REPORT_DIR=${OUT:-build/gpu_check}
REHEARSE=1
for arg in "$@"; do
    case $arg in
        --no-rehearsal) REHEARSE=0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done
mkdir -p "$REPORT_DIR"
REPORT_DIR=$(cd "$REPORT_DIR" && pwd)
LOG=$REPORT_DIR/gpu_check.log
JSON=$REPORT_DIR/gpu_check.json

main() {
    local install=fail cuda=fail rehearse=skipped start=$SECONDS
    echo "== gpu_check $(date -u +%FT%TZ) on $(hostname); python: $($PY -c 'import sys; print(sys.executable, sys.version.split()[0])')"

    echo "== 1. install $WHEELS/*.whl offline into $SITE"
    shopt -s nullglob
    local wheels=("$WHEELS"/*.whl)
    if (( ${#wheels[@]} == 0 )); then
        echo "no wheels in $WHEELS: run 'make gpu-wheels' on a machine with pip access and carry $WHEELS"
    elif "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$SITE" "${wheels[@]}"; then
        install=ok
        echo "installed ${#wheels[@]} wheels"
    fi
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
    unset COURSE_FAST

    echo "== 2. versions (carried = from $SITE, image = the machine's own), then 3. CUDA sanity"
    if SITE="$SITE" JSON="$JSON" "$PY" - <<'PYEOF'
import importlib, json, os, subprocess, sys, time
from importlib import metadata

site = os.path.realpath(os.environ["SITE"])
rep = {"python": sys.version.split()[0], "packages": {}, "cuda": {"available": False}, "checks": {}}
for name in ["torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "nbval",
             "nbclient", "ipykernel", "huggingface_hub", "tokenizers", "safetensors", "pyarrow", "fsspec"]:
    try:
        mod = importlib.import_module(name)
        where = "carried" if os.path.realpath(mod.__file__ or "").startswith(site + os.sep) else "image"
        rep["packages"][name] = {"version": metadata.version(name), "from": where}
    except Exception as err:  # a missing or broken library is a result, not a crash
        rep["packages"][name] = {"error": f"{type(err).__name__}: {err}"}
    print(f"  {name:16s} {rep['packages'][name]}")

try:  # `pip check` lines where a carried project is the one with, or the one failing, a requirement
    out = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True).stdout
    norm = lambda n: n.lower().replace("_", "-")
    carried = {norm(d.split("-")[0]) for d in os.listdir(site) if d.endswith(".dist-info")}
    rep["pip_check"] = [line for line in out.splitlines() if norm(line.split(" ")[0]) in carried
                        or any(f"but you have {c} " in norm(line) for c in carried)]
    print(f"  pip check: {len(rep['pip_check'])} lines about carried projects")
    for line in rep["pip_check"]:
        print("    WARN", line)
except Exception as err:
    rep["pip_check"] = [f"pip check failed: {err}"]

ok = True
try:
    import torch
    sys.path.insert(0, os.getcwd())
    from utils.env import pick_device_and_precision
    avail = torch.cuda.is_available()
    rep["cuda"] = {"available": avail, "torch_cuda": torch.version.cuda}
    if not avail:
        raise RuntimeError("torch.cuda.is_available() is False")
    dev = torch.device("cuda")
    rep["cuda"].update(name=torch.cuda.get_device_name(dev),
                       capability=".".join(map(str, torch.cuda.get_device_capability(dev))),
                       memory_gib=round(torch.cuda.get_device_properties(dev).total_memory / 2**30, 1),
                       course_precision=pick_device_and_precision().precision)
    g = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(2048, 2048, device=dev, generator=g)
    b = torch.randn(2048, 2048, device=dev, generator=g)
    ref = a @ b
    for dtype in (torch.float16, torch.bfloat16):
        torch.cuda.synchronize(); t = time.perf_counter()
        c = (a.to(dtype) @ b.to(dtype)).float()
        torch.cuda.synchronize()
        err = ((c - ref).norm() / ref.norm()).item()
        rep["checks"][f"matmul_{str(dtype)[6:]}_rel_err"] = err
        ok &= err < 1e-2
    import bitsandbytes as bnb
    p = torch.nn.Parameter(torch.randn(4096, 1024, device=dev))
    opt = bnb.optim.AdamW8bit([p], lr=1e-3)
    before = p.detach().clone()
    (p.square().sum()).backward()
    opt.step()
    state = opt.state[p]["state1"]
    rep["checks"]["adamw8bit_state_dtype"] = str(state.dtype)
    rep["checks"]["adamw8bit_moved"] = bool((p.detach() - before).abs().max().item() > 0)
    ok &= state.dtype == torch.uint8 and state.is_cuda and rep["checks"]["adamw8bit_moved"]
    rep["cuda"]["peak_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
except Exception as err:
    rep["checks"]["error"] = f"{type(err).__name__}: {err}"
    ok = False
rep["cuda_ok"] = bool(ok)
print("  cuda:", json.dumps(rep["cuda"]))
print("  checks:", json.dumps(rep["checks"]))
json.dump(rep, open(os.environ["JSON"], "w"), indent=1)
sys.exit(0 if ok else 1)
PYEOF
    then cuda=ok; fi
    echo "  CUDA sanity: $cuda"

    if (( REHEARSE )) && [[ $install != ok ]]; then
        echo "== 4. rehearsal not run: the install failed"
    elif (( REHEARSE )); then
        local rargs=()   # its Markdown report comes back with ours; executed notebooks stay in build/
        grep -q -- '--report' scripts/rehearse.py 2>/dev/null && rargs+=(--report "$REPORT_DIR/rehearsal.md")
        # shellcheck disable=SC2086  # REHEARSE_ARGS is a word list, e.g. "05 06"
        rargs+=(${REHEARSE_ARGS:-})
        echo "== 4. rehearsal: COURSE_REHEARSAL=1 $PY scripts/rehearse.py ${rargs[*]}"
        if [[ ! -f scripts/rehearse.py ]]; then
            echo "scripts/rehearse.py is missing"; rehearse=fail
        elif COURSE_REHEARSAL=1 "$PY" scripts/rehearse.py "${rargs[@]}"; then
            rehearse=ok
        else
            rehearse=fail
        fi
    fi

    local secs=$(( SECONDS - start ))
    "$PY" - "$JSON" "$install" "$cuda" "$rehearse" "$secs" <<'PYEOF'
import json, sys
path, install, cuda, rehearse, secs = sys.argv[1:]
try:
    rep = json.load(open(path))
except (OSError, ValueError):
    rep = {}
rep["steps"] = {"install": install, "cuda": cuda, "rehearsal": rehearse}
rep["seconds"] = int(secs)
json.dump(rep, open(path, "w"), indent=1)
PYEOF
    echo "== summary: install $install | CUDA $cuda | rehearsal $rehearse | ${secs} s | reports: $LOG, $JSON"
    [[ $install == ok && $cuda == ok && $rehearse != fail ]]
}

main 2>&1 | tee "$LOG"
