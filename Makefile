# Two commands on a fresh machine: `make run` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# PostgreSQL used by the second test pass (any empty-able server; tests create their own databases).
RAGQA_TEST_PG ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres

.PHONY: install run test test-fast lint test-sqlite test-postgres demo docs clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first: the CPU build that lies on this machine's disk (a bare `torch` pulls several GB).
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

test: install lint test-sqlite test-postgres

# ruff and mypy, configured in pyproject.toml.
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

# The edit-test loop: everything not marked slow, SQLite only (timings in the README).
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

test-sqlite:
	$(BIN)/python -m pytest -q

test-postgres:
	RAGQA_TEST_DATABASE_URL=$(RAGQA_TEST_PG) $(BIN)/python -m pytest -q -m db

demo: install
	$(BIN)/ragqa ingest docs --collection docs

run: demo
	@echo
	@echo "The demo library (this project's docs/) is ingested into .ragqa/."
	@echo "Open http://127.0.0.1:8501 and ask, e.g., \"how are documents chunked?\" (Ctrl+C stops the UI)."
	@echo "From a shell:  $(BIN)/ragqa ask \"how are documents chunked?\""
	$(BIN)/ragqa ui

# The README's settings table and .env.example's settings, from rag/settings.py (tests/test_docs.py checks them).
docs: install
	$(BIN)/python scripts/gen_docs.py

clean:
	rm -rf $(VENV) .ragqa .pytest_cache .mypy_cache .ruff_cache
