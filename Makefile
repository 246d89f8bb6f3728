# One entry point: `make test` sets everything up and runs the tests; `make demo` runs the
# agent on the bundled example with a scripted model (no network, no model service).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint typecheck format clean bench integration

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q --ignore=tests/integration $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

# A real model server (llama.cpp + SmolLM2-135M, scripts/provision-llama.sh; the first run
# builds the llama-cpp-python wheel, ~6 min, then it is cached): start it, run
# tests/integration against it (a skip fails here), stop it by its pidfile whatever happens.
integration: $(STAMP)
	@trap 'scripts/provision-llama.sh stop' EXIT; trap 'exit 130' INT TERM; \
	llama_env=$$(scripts/provision-llama.sh) || exit 1; eval "$$llama_env"; \
	CWM_REQUIRE_LLAMA=1 $(BIN)/python -m pytest -q tests/integration $(PYTEST_ARGS)

# Figures side by side with mini-swe-agent (installed into benchmarks/.venvs on first use);
# refreshes BENCHMARKS.md. BENCH_ARGS='--quick' for a short smoke run.
bench: $(STAMP)
	BENCH_COMMAND="make bench $(BENCH_ARGS)" $(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check cwm_agent tests examples
	$(BIN)/ruff format --check cwm_agent tests examples

typecheck: $(STAMP)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format cwm_agent tests examples
	$(BIN)/ruff check --fix cwm_agent tests examples

clean:
	rm -rf $(VENV) build dist .pytest_cache
