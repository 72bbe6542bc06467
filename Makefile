# The README's two commands: `make demo` and `make test`. Each creates the virtual
# environment on first use (Python 3.11), installs the project, and runs.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
SAMPLE := data/sample/oxe_augment_sample/1.0.0

.PHONY: demo test test-fast format install clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

# Generate the sample data if absent, run the demo recipe, say where the results are.
demo: install
	@test -f $(SAMPLE)/dataset_info.json || $(BIN)/oxe-augment sample-data $(SAMPLE)
	$(BIN)/oxe-augment run configs/demo.yaml

# Lint and format check, then every test, the learning tests (marked slow) included, on
# every core (pytest-xdist): most tests are single-threaded Beam runs. The slow ones are
# started first (tests/conftest.py), so the other cores run the rest beside them.
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@sh tests/setup_browser.sh  # Chromium for the report.html test; never fails the build
	$(BIN)/python -m pytest -q -n auto -m "slow or not slow" tests

test-fast: install
	$(BIN)/python -m pytest -q -n auto tests

# Reformat the tree (what `make test` checks).
format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf out data/sample
