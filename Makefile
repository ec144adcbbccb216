# The two commands that matter: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/exoplane serve

test: lint
	EXOPLANE_TEST_BACKEND=sqlite $(BIN)/pytest
	@if [ -n "$$EXOPLANE_TEST_POSTGRES_URL$$EXOPLANE_TEST_REDIS_URL" ]; then \
		echo "--- again on PostgreSQL + Redis"; \
		EXOPLANE_TEST_BACKEND=postgres $(BIN)/pytest; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src tests bench

bench: $(STAMP)
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python bench/api.py
	$(BIN)/python bench/webhooks.py
	$(BIN)/python bench/media.py
	$(BIN)/python bench/console.py
