# One entry point: `make test` sets everything up and runs the tests; `make demo` runs the
# agent on the bundled example with a scripted model (no network, no model service).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

lint: $(STAMP)
	$(BIN)/ruff check cwm_agent tests examples
	$(BIN)/ruff format --check cwm_agent tests examples

format: $(STAMP)
	$(BIN)/ruff format cwm_agent tests examples
	$(BIN)/ruff check --fix cwm_agent tests examples

clean:
	rm -rf $(VENV) build dist .pytest_cache
