# clinic: `make run` serves the app with demo data; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi
HOST ?= 127.0.0.1
PORT ?= 5000
PYTEST_ARGS ?=
BENCH_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help run serve test test-postgres lint format migrate-check bench bench-reports bench-load clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.run-installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed ## Install, migrate, load demo data (first time: passwords printed last) and serve on http://127.0.0.1:5000
	$(FLASK) db upgrade
	$(FLASK) seed-demo
	$(FLASK) run --host $(HOST) --port $(PORT)

serve: $(VENV)/.run-installed ## Serve in production with gunicorn (gunicorn.conf.py): DATABASE_URL, SECRET_KEY, ALLOWED_HOSTS, AUDIT_HMAC_KEYS, MFA_ENCRYPTION_KEYS; refuses unsafe settings
	CLINIC_ENV=production $(BIN)/gunicorn --config gunicorn.conf.py wsgi:app

test: $(VENV)/.dev-installed ## Install dev requirements and run the whole test suite (SQLite)
	$(BIN)/pytest $(PYTEST_ARGS)

test-postgres: $(VENV)/.dev-installed ## Run the suite on PostgreSQL (TEST_DATABASE_URL, default local postgres)
	TEST_DATABASE_URL=$${TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test} $(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev-installed ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev-installed ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrate-check: $(VENV)/.dev-installed ## Check that the migrations match the models, on a scratch SQLite database
	@tmp=$$(mktemp -d); \
	DATABASE_URL=sqlite:///$$tmp/check.db $(FLASK) db upgrade && \
	DATABASE_URL=sqlite:///$$tmp/check.db $(FLASK) db check; \
	status=$$?; rm -rf $$tmp; exit $$status

# The load test's tools (bench/load.py), when the repository lists them apart.
BENCH_REQUIREMENTS := $(wildcard requirements-bench.txt)

$(VENV)/.bench-installed: $(VENV)/.dev-installed $(BENCH_REQUIREMENTS)
	$(if $(BENCH_REQUIREMENTS),$(BIN)/pip install --quiet -r $(BENCH_REQUIREMENTS))
	touch $@

bench: $(VENV)/.bench-installed ## Time every page at sizes S and M on SQLite and PostgreSQL (BENCH_DATABASE_URL; BENCH_ARGS; bench/README.md)
	$(BIN)/python bench/pages.py $(BENCH_ARGS)

bench-reports: $(VENV)/.dev-installed ## Time every report on 100,000 patients, ~11 M dose rows (PostgreSQL: BENCH_DATABASE_URL)
	$(BIN)/python bench/reports.py

bench-load: $(VENV)/.bench-installed ## 20 nurses recording doses over HTTP for 60 s under gunicorn, then the ledger checked (PostgreSQL: BENCH_DATABASE_URL; Redis)
	$(BIN)/python bench/load.py

clean: ## Remove the virtualenv and caches (keeps instance/ and its database)
	rm -rf $(VENV) .pytest_cache .ruff_cache
