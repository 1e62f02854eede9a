# seglib: `make demo` runs every notebook headless on the embedded synthetic data (results in runs/),
# `make test` runs the tests. Both create .venv on first use (Python 3.11, CPU torch).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.seglib-installed
export HF_HUB_OFFLINE ?= 1
export SEGLIB_ENV ?= local
export MPLBACKEND ?= Agg

.PHONY: demo test lint wheel repository clean-runs
WHEEL_DIR ?= dist

$(STAMP): requirements.txt requirements-catalyst.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# pip < 24.1 keeps Catalyst 22.4 installable (its metadata is rejected by newer pip); a fresh venv has 23.2
	$(PY) -m pip install -q "pip<24.1"
	# torch first: the CPU build from the local wheel folder; torchvision pinned in the same resolver run
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	# the optional Catalyst engine (ENGINE="catalyst"); tests cover both engines. pip < 24.1 installs catalyst 22.4 directly
	$(PY) -m pip install -q -r requirements-catalyst.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m seglib.nbrun demo

test: $(STAMP)
	# headless Chromium + chromedriver for the browser tests (Debian packages; nothing when present)
	bash tools/install_browser.sh
	# a PostgreSQL server for the study test over a real database (Debian package; nothing when present)
	bash tools/install_postgres.sh
	$(PY) -m pytest -q -n auto --dist loadfile

lint: $(STAMP)
	$(PY) -m ruff check seglib tests

# the wheel a Colab user drops into MyDrive/seglib/ on Google Drive (the notebooks install it from there)
wheel: $(STAMP)
	$(PY) -m pip wheel -q --no-deps --no-build-isolation -w $(WHEEL_DIR) .
	@ls -1 $(WHEEL_DIR)/seglib-*.whl

# point pyproject.toml, the notebooks' SEGLIB_SOURCE and every Colab badge at your repository:
#   make repository URL=https://github.com/<owner>/<name>
repository:
	$(PYTHON) tools/repository.py $(URL)

clean-runs:
	@echo "runs/ holds checkpoints and results; delete it yourself if you mean it: rm -rf runs/"

# the fault-injection campaign (>= 50 seeded SIGKILLs over the three notebooks' training paths, each checked
# against an uninterrupted run), the 300-epoch endurance run and the fast fault tests; rewrites RELIABILITY.md
# and fails if any check fails. Under 30 min on 2 cores. Try it first with: make reliability ARGS=--quick
.PHONY: reliability
reliability: $(STAMP)
	$(PY) -m tools.reliability $(ARGS)

# every benchmark (benchmarks/run_all.py: each script in its own process and time budget; about 27 min on
# 2 cores), then BENCHMARKS.md from benchmarks/results/*.json; fails, after the others ran, if a script fails.
# A smoke check in seconds per script (into a temporary folder, BENCHMARKS.md untouched): make bench ARGS=--quick
.PHONY: bench
bench: $(STAMP)
	$(PY) -m benchmarks.run_all $(ARGS)
