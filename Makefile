# The pinned CPU environment lives in .venv; every target sets it up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# circuit-tracer and SAELens need transformers 4 (see requirements/circuits.lock): a
# second environment, so the main one is never downgraded.
CIRCUITS_VENV := .venv-circuits
CIRCUITS_STAMP := $(CIRCUITS_VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup circuits-env circuits run results figures test test-fast docs docs-serve bench clean

setup: $(STAMP)

$(STAMP): requirements/cpu.lock requirements/no-deps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-deps -r requirements/cpu.lock
	$(BIN)/python -m pip install -q --no-deps -r requirements/no-deps.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

circuits-env: $(CIRCUITS_STAMP)

$(CIRCUITS_STAMP): requirements/circuits.lock
	rm -rf $(CIRCUITS_VENV)
	$(PYTHON) -m venv $(CIRCUITS_VENV)
	$(CIRCUITS_VENV)/bin/python -m pip install -q --upgrade pip
	$(CIRCUITS_VENV)/bin/python -m pip install -q --no-deps -r requirements/circuits.lock
	touch $@

# The main job; writes under runs/ (ignored by git), so a checkout stays clean.
run: setup
	$(BIN)/python -m reproductions.table1

# Refresh the committed embedded result, the same preset trained with sparsify's
# defaults (the dead-latent guide's "before"), and the README table.
results: setup
	$(BIN)/python -m reproductions.table1 --out reproductions/results/embedded
	$(BIN)/python -m reproductions.table1 --normalize false --auxk-alpha 0 \
		--work runs/embedded-plain --out reproductions/results/embedded-plain
	$(BIN)/python -m reproductions.readme

# The embedded preset's Pareto and per-layer figures beside the committed Table 1
# (sharing its stages under runs/embedded), and the per-layer figure trained with
# sparsify's defaults for the dead-latent guide: about 30 min on 2 cores.
figures: setup
	$(BIN)/python -m reproductions.pareto --out reproductions/results/embedded
	$(BIN)/python -m reproductions.layers --out reproductions/results/embedded
	$(BIN)/python -m reproductions.layers --normalize false --auxk-alpha 0 \
		--work runs/embedded-plain --out reproductions/results/embedded-plain
	$(BIN)/python -m reproductions.readme

circuits: setup circuits-env
	$(BIN)/python -m reproductions.circuits

test: setup circuits-env
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not integration"

docs: setup
	$(BIN)/mkdocs build --strict

docs-serve: setup
	$(BIN)/mkdocs serve

bench: setup
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(CIRCUITS_VENV) site
