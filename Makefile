# Quick start on a fresh machine with only Python and pip:
#   make demo    set up .venv and run the main job on embedded data
#   make test    set up .venv and run the tests
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch. A bare `torch` (or an open range) pulls gigabytes of CUDA packages.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.textlab-installed

.PHONY: setup demo test test-slurm bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	TEXTLAB_RUNS=$${TEXTLAB_RUNS:-runs} bash scripts/demo.sh

# The browser test of the HTML report needs Debian's Chromium (installed here, needs root; the test
# skips with the reason where it cannot be).
test: $(STAMP)
	-scripts/browser-local.sh install
	$(BIN)/python -m pytest -q -m "not slurm"

# SLURM integration: installs slurm-wlm + munge (Debian, needs root), starts a one-node cluster on
# localhost and runs the tests marked `slurm` (about 2 minutes); they skip with a reason where
# SLURM cannot start.
test-slurm: $(STAMP)
	-scripts/slurm-local.sh install
	$(BIN)/python -m pytest -q -m slurm -rs

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
