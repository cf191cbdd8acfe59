# The README's two commands: `make demo` (train on the bundled data) and `make test`.
# Both create .venv on first use. TORCH pins the CPU wheel these machines carry; on your own
# machine use e.g. `make demo TORCH="torch"` to get your platform's build.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-all test-sweeps lint setup

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.installed

# wandb[sweeps] (the `sweeps` package) may pin numpy<2: it gets its own venv, never .venv.
SWEEPS_VENV := .venv-sweeps
$(SWEEPS_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(SWEEPS_VENV)
	$(SWEEPS_VENV)/bin/python -m pip install -q --upgrade pip
	$(SWEEPS_VENV)/bin/python -m pip install -q $(TORCH)
	$(SWEEPS_VENV)/bin/python -m pip install -q -e ".[test,sweeps]"
	touch $@

demo: setup
	$(PY) -m inpaint.fit experiment=demo

test: setup
	WANDB_MODE=disabled $(PY) -m pytest -m "not slow" -q

test-all: setup
	WANDB_MODE=disabled $(PY) -m pytest -q

# The W&B sweep files against W&B's own schema and agent command line; a skip here is an error.
test-sweeps: $(SWEEPS_VENV)/.installed
	WANDB_MODE=disabled INPAINT_REQUIRE_SWEEPS=1 $(SWEEPS_VENV)/bin/python -m pytest -q tests/inpaint/test_sweeps.py

lint: setup
	$(PY) -m pip install -q ruff
	$(VENV)/bin/ruff check inpaint models tests scripts

# antspyx (Atropos tissue segmentation for inpaint.evaluate --segment) pins numpy<2.4: its own venv.
.venv-segment/.installed: pyproject.toml
	$(PYTHON) -m venv .venv-segment
	.venv-segment/bin/python -m pip install -q --upgrade pip
	.venv-segment/bin/python -m pip install -q $(TORCH)
	.venv-segment/bin/python -m pip install -q -e ".[segment]"
	touch $@

setup-segment: .venv-segment/.installed
