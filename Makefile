# `make setup` (the venv), `make demo` (train on the bundled data) and `make test`, as the README's quick start
# uses them. All create .venv on first use. TORCH pins the CPU wheel these machines carry; on your own
# machine use e.g. `make demo TORCH=torch` to get your platform's build.
PYTHON ?= python3
TORCH ?= torch==2.13.0
PY := .venv/bin/python

.PHONY: demo test test-all test-sweeps lint setup setup-segment setup-peers bench

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

# The peers of inpaint.evaluate --methods (inpaint/peers.py), each in its own venv: their pins clash with ours and
# with each other. SOUP-GAN: TensorFlow 2.15 (Keras 2 SavedModel loading) and KevinSR's sdist, which ships the
# thin-to-thin model (--no-deps: it requires tensorflow-gpu). ECLARE: torch first, as above.
.venv-peer-soup_gan/.installed:
	$(PYTHON) -m venv .venv-peer-soup_gan
	.venv-peer-soup_gan/bin/python -m pip install -q "tensorflow-cpu==2.15.*" "numpy<2" scipy nibabel
	.venv-peer-soup_gan/bin/python -m pip install -q --no-deps KevinSR==0.1.20
	# the installed package lacks the model folder its sdist ships: copy it in from the sdist
	.venv-peer-soup_gan/bin/python -m pip download -q --no-deps --no-binary :all: KevinSR==0.1.20 -d .venv-peer-soup_gan/sdist
	tar -xzf .venv-peer-soup_gan/sdist/KevinSR-0.1.20.tar.gz -C .venv-peer-soup_gan/sdist
	cp -r .venv-peer-soup_gan/sdist/KevinSR-0.1.20/KevinSR/Thin-to-thin \
	    "$$(.venv-peer-soup_gan/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/KevinSR/"
	touch $@

.venv-peer-eclare/.installed:
	$(PYTHON) -m venv .venv-peer-eclare
	.venv-peer-eclare/bin/python -m pip install -q $(TORCH)
	.venv-peer-eclare/bin/python -m pip install -q eclare==1.0.1
	touch $@

comma := ,
setup: .venv/.installed
setup-segment: .venv-segment/.installed
setup-peers: .venv-peer-soup_gan/.installed .venv-peer-eclare/.installed

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
