# The README's two commands: `make demo` (train on the bundled data) and `make test`.
# Both create .venv on first use. TORCH pins the CPU wheel these machines carry; on your own
# machine use e.g. `make demo TORCH=torch` to get your platform's build.
PYTHON ?= python3
TORCH ?= torch==2.13.0
PY := .venv/bin/python

.PHONY: demo test test-all test-sweeps lint setup setup-segment bench

# A venv with torch installed first (a later `-e .` would otherwise pull the newest CUDA build),
# then the project with the given extras. $(1): folder, $(2): extras.
define make_venv
	$(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install -q --upgrade pip
	$(1)/bin/python -m pip install -q $(TORCH)
	$(1)/bin/python -m pip install -q -e ".[$(2)]"
	touch $(1)/.installed
endef

.venv/.installed: pyproject.toml
	$(call make_venv,.venv,test$(comma)skull)

# wandb[sweeps] (the `sweeps` package) may pin numpy<2: it gets its own venv, never .venv.
.venv-sweeps/.installed: pyproject.toml
	$(call make_venv,.venv-sweeps,test$(comma)sweeps)

# antspyx (Atropos, for inpaint.evaluate --segment) pins numpy<2.4: its own venv too.
.venv-segment/.installed: pyproject.toml
	$(call make_venv,.venv-segment,segment)

# MONAI, for the peer comparison in benchmarks/bench.py.
.venv-bench/.installed: pyproject.toml
	$(call make_venv,.venv-bench,bench)

comma := ,
setup: .venv/.installed
setup-segment: .venv-segment/.installed

demo: setup
	$(PY) -m inpaint.fit experiment=demo

test: setup
	WANDB_MODE=disabled $(PY) -m pytest -m "not slow" -q

test-all: setup
	WANDB_MODE=disabled $(PY) -m pytest -q

# The W&B sweep files against W&B's own schema and agent command line; a skip here is an error.
test-sweeps: .venv-sweeps/.installed
	WANDB_MODE=disabled INPAINT_REQUIRE_SWEEPS=1 .venv-sweeps/bin/python -m pytest -q tests/inpaint/test_sweeps.py

lint: setup
	$(PY) -m pip install -q ruff
	.venv/bin/ruff check inpaint models tests scripts benchmarks

bench: .venv-bench/.installed
	.venv-bench/bin/python -m benchmarks.bench
