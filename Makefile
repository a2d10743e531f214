# The two commands: `make demo` (the main job) and `make test` (everything CI checks).
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint format typecheck pytest bench clean

# uv installs in seconds what pip takes most of a minute for (measured on a fresh clone:
# ~7 s against ~48 s); pip still does it where uv cannot be had.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	($(BIN)/pip install -q uv && $(BIN)/uv pip install -q --python $(BIN)/python -e '.[dev]') \
	  || ($(BIN)/pip install -q --upgrade pip && $(BIN)/pip install -q -e '.[dev]')
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/traction demo

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .build traction-data .pytest_cache .mypy_cache .ruff_cache
