# The two commands: `make run` and `make test`. Both install what is missing first
# (scripts/bootstrap.sh: Debian packages, .venv, the project) and are safe to repeat.
# Everything else here is an internal step of those two.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := run

VENV := .venv
BIN := $(VENV)/bin
# The embedded single-machine instance `make run` starts: config, SQLite, keys under var/.
RUN_DIR := var
# -n auto: one worker per core; --dist loadfile keeps a module's tests (and its module-scoped
# servers and browser) on one worker.
PYTEST_FLAGS ?= -q -p no:cacheprovider --durations=10 -n auto --dist loadfile

.PHONY: run test setup setup-test lint typecheck pytest screenshots

## make run: set up, create var/ with demo data on first use, start every listener.
run: setup
	@echo "==> xgate init $(RUN_DIR) --demo"
	$(BIN)/xgate init $(RUN_DIR) --demo
	@echo "==> xgate serve (Ctrl-C stops it)"
	@echo "    On the first start, the demo mail init queued becomes tickets in the demo mailbox."
	@$(BIN)/xgate -c $(RUN_DIR)/xgate.toml demo web | sed 's/^/    /'
	@echo "    Mail the gateway sends out (notices to staff, bounces, mail to partners) is not"
	@echo "    delivered but kept by the demo catcher; read it in a second terminal with"
	@echo "      $(BIN)/xgate -c $(RUN_DIR)/xgate.toml demo mail list"
	@echo "      $(BIN)/xgate -c $(RUN_DIR)/xgate.toml demo mail show N"
	exec $(BIN)/xgate -c $(RUN_DIR)/xgate.toml serve

## make test: set up with test tools, then ruff, mypy and the whole pytest suite.
# Sequential on purpose (not prerequisites), so `make -j test` cannot interleave them.
test: setup-test
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory typecheck
	@$(MAKE) --no-print-directory pytest

## make screenshots: run the browser tests and keep their screenshots in docs/screenshots/.
screenshots: setup-test
	XGATE_SCREENSHOTS=1 $(BIN)/pytest $(PYTEST_FLAGS) -m browser tests/browser

# --- internal steps ---------------------------------------------------------------------------

setup:
	@bash scripts/bootstrap.sh

setup-test:
	@bash scripts/bootstrap.sh --extras test

lint:
	@echo "==> ruff check"
	$(BIN)/ruff check .

typecheck:
	@echo "==> mypy (packages from pyproject.toml)"
	$(BIN)/mypy

pytest:
	@echo "==> pytest"
	$(BIN)/pytest $(PYTEST_FLAGS)
