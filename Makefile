# Two commands do everything: `make run` and `make test`. Both bootstrap .venv first;
# the bootstrap is skipped when pyproject.toml has not changed since the last one.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# One test worker per CPU (pytest-xdist); `make test PYTEST_ARGS=` runs in one process.
PYTEST_ARGS ?= -n auto --dist worksteal

.PHONY: run test venv lint format clean help

help:
	@echo "make run    - set up, migrate, load the demo data and serve on http://127.0.0.1:5000"
	@echo "make test   - set up and run lint and the whole test suite"
	@echo "make lint   - ruff check and format check only"
	@echo "make format - apply ruff formatting"
	@echo "make clean  - remove the virtualenv and caches (keeps instance/ data)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/cbm db upgrade
	$(BIN)/cbm user ensure-admin
	$(BIN)/cbm demo load --if-empty
	$(BIN)/cbm serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
