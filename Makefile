# make run   — execute every notebook in fast mode (offline, tiny model) into build/
# make test  — unit tests + every notebook under nbval, fast mode, offline
# make bench — benchmarks (not part of CI)
# Both create .venv on first use: torch first (the pinned CPU wheel), then requirements.txt.

PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
TORCH   := $(shell grep -E '^torch==' requirements.txt)
OFFLINE := COURSE_FAST=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

.PHONY: venv run test bench clean

venv: $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

run: $(STAMP)
	$(OFFLINE) $(PY) scripts/run_notebooks.py --out build

test: $(STAMP)
	$(OFFLINE) $(PY) -m pytest

bench: $(STAMP)
	@if ls tests/benchmarks/bench_*.py >/dev/null 2>&1; then \
		for b in tests/benchmarks/bench_*.py; do $(PY) $$b || exit 1; done; \
	else echo "no benchmarks yet (tests/benchmarks/bench_*.py)"; fi

clean:
	rm -rf build .pytest_cache .hypothesis
