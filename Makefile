# Two commands do all the set-up on a fresh machine with Python >= 3.11 and make:
#   make run    creates .venv (emix and its test tools), fits the embedded Old Faithful data
#   make test   the same set-up, then ruff, the whole test suite and the benchmarks'
#               agreement check (bench/run.py --quick)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint clean

run: $(STAMP)
	$(BIN)/emix fit

test: $(STAMP)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/python -m pytest
	$(BIN)/python bench/run.py --quick

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache .hypothesis
