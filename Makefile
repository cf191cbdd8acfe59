# The README's two commands: `make demo` (train on the bundled data) and `make test`.
# Both create .venv on first use. TORCH pins the CPU wheel these machines carry; on your own
# machine use e.g. `make demo TORCH="torch"` to get your platform's build.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-all lint setup

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m inpaint.fit experiment=demo

test: setup
	WANDB_MODE=disabled $(PY) -m pytest -m "not slow" -q

test-all: setup
	WANDB_MODE=disabled $(PY) -m pytest -q

lint: setup
	$(PY) -m pip install -q ruff
	$(VENV)/bin/ruff check inpaint models tests scripts
