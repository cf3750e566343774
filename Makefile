# Two commands do everything on a fresh machine with Python >= 3.11 and pip:
#   make reproduce   set up .venv, then the default batch (built-in world, CPU) and every notebook (papermill)
#   make test        set up .venv, then every test and every notebook (nbmake, toy CI scale)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tifkit-installed
# Extra pip options, e.g. PIP_OPTS="--extra-index-url <your torch CUDA index>" (see README, GPU install).
PIP_OPTS ?=
# The extras `make setup` installs (pyproject.toml): the notebooks and the test suite; add gpu on a GPU host.
EXTRAS ?= notebooks,test
# The exact versions tested (torch==2.13.0 among them); pyproject.toml only declares compatible ranges.
CONSTRAINTS := constraints.txt
PARAMS ?= params/tiny.yaml
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup reproduce test smoke lab notebooks clean-runs families

setup: $(STAMP)

# pip installs without byte-compiling and compileall then compiles the installed files on every core
# (pip compiles them one at a time: about two thirds of its install time on 2 cores; docs/PERFORMANCE.md,
# "make setup"), all but the libraries' own test suites (folders named tests, a fifth of the files),
# which nothing imports. compileall's errors are files pip skips too (torch's Python-3.12-only helpers).
$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile $(PIP_OPTS) -c $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	@$(BIN)/python -m compileall -q -j 0 -x /tests/ "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null 2>&1 || true
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

# SEEDS="0 1 2 3 4" runs the batch on a subset of the seeds (the default: run.seeds of $(PARAMS), 25).
comma := ,
empty :=
space := $(empty) $(empty)
reproduce: setup
	$(BIN)/python -m tifkit batch $(PARAMS) $(if $(strip $(SEEDS)),--set 'run.seeds=[$(subst $(space),$(comma),$(strip $(SEEDS)))]')
	$(BIN)/python -m tifkit notebooks --scale full --params $(PARAMS)

smoke: setup
	$(BIN)/python -m tifkit run $(PARAMS)

# The family grid (the paper's main table): every tiny family x DPO and SLiC x the registry's headline
# rules over the default batch's seeds, one worker pool; writes figures/grid-<family>-<objective>_* with
# provenance, then regenerates the README's family-grid table. SEEDS="0 1" runs a subset of the seeds.
# Time: docs/PERFORMANCE.md, "The family grid".
families: setup
	$(BIN)/python -m tifkit.family_grid $(if $(SEEDS),--seeds $(SEEDS))
	$(BIN)/python -m tifkit.results

# Every test, then every notebook under nbmake at the toy CI scale (nbmake runs notebooks as committed,
# so the scale comes through the environment), in one pytest run, on one pytest-xdist worker per CPU
# (at most TEST_WORKERS_MAX; TEST_WORKERS=0 runs them in this one process). Each worker takes a
# contiguous half of the tests and steals from the other when done (worksteal); they share the toy run
# root (tests/conftest.py) and the notebooks' CI run root, so a stage trains once under its lock.
TEST_WORKERS ?= logical
TEST_WORKERS_MAX ?= 8
test: setup
	TIFKIT_NOTEBOOK_SCALE=ci $(BIN)/python -m pytest -n $(TEST_WORKERS) --maxprocesses=$(TEST_WORKERS_MAX) --dist worksteal \
		--nbmake --nbmake-timeout=300 --durations=15 tests notebooks

# JupyterLab on the notebooks (their default scale: the real world size, one seed).
lab: setup
	$(BIN)/jupyter lab notebooks/

# Regenerate notebooks/*.ipynb from their jupytext sources notebooks/*.py (outputs stripped).
notebooks: setup
	$(BIN)/python -m tifkit.notebooks --sync

clean-runs:
	rm -rf runs
