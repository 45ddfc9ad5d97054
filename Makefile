# make run   — execute every notebook in fast mode (offline, tiny model) into build/
# make test  — unit tests + every notebook under nbval, fast mode, offline
# make bench — benchmarks (not part of CI)
# make test-latest / make test-oldest — the tests against the newest course libraries / the oldest torch allowed
# make rehearse [NOTEBOOKS="05 07"] — full configuration offline: real architectures, random weights, capped loops → build/rehearsal.md
# Both create .venv on first use: torch first (the pinned CPU wheel), then requirements.txt.
# make gpu-wheels — download into .whl/ the wheels a registry-less GPU machine lacks (scripts/gpu_wheels.py);
#                   there, `bash scripts/gpu_check.sh` installs them offline and runs the checks

PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
TORCH   := $(shell grep -E '^torch==' requirements.txt)
OFFLINE := COURSE_FAST=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

.PHONY: venv run test bench rehearse clean gpu-wheels gpu-check test-latest test-oldest

venv: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	touch $@

run: $(STAMP)
	$(OFFLINE) $(PY) scripts/run_notebooks.py --out build

test: $(STAMP)
	$(OFFLINE) $(PY) -m pytest

bench: $(STAMP)
	@if ls tests/benchmarks/bench_*.py >/dev/null 2>&1; then \
		for b in tests/benchmarks/bench_*.py; do $(PY) $$b || exit 1; done; \
	else echo "no benchmarks yet (tests/benchmarks/bench_*.py)"; fi

gpu-wheels: $(STAMP)
	$(PY) scripts/gpu_wheels.py

gpu-check:
	bash scripts/gpu_check.sh

rehearse: $(STAMP)
	env -u COURSE_FAST COURSE_REHEARSAL=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
		$(PY) scripts/rehearse.py $(NOTEBOOKS)

clean:
	rm -rf build .pytest_cache .hypothesis

# Early warnings, not part of `make test` (scripts/test_against.py): the newest course libraries with torch at its pin,
# and the oldest torch the pins allow (what an older Colab image could have). Each builds its own venv once.
test-latest:
	$(PYTHON) scripts/test_against.py latest

test-oldest:
	$(PYTHON) scripts/test_against.py oldest
