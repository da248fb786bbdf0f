# Salesbot: `make run` serves (sandbox mode without credentials), `make test` tests.
# Dependencies install from the hashed lock files (`make lock` refreshes them).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install lock run test lint unit bench format clean

$(STAMP): pyproject.toml requirements-dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Re-resolve both lock files to the newest versions pyproject.toml allows, with every file's
# hash, for CPython 3.11 on Linux x86_64 (what CI and the Docker image run). The resolver lives
# in its own venv, .venv-lock, and ignores the machine's pip configuration (local wheel
# folders, extra indexes) so the locks name PyPI's files only. The runtime lock is resolved
# from the dev lock's pins, so both carry the same versions. Review the diff, `make test`,
# commit both files.
LOCK_VENV := .venv-lock
LOCK_ENV := env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL PIP_CONFIG_FILE=/dev/null
LOCK_FLAGS := --quiet --generate-hashes --strip-extras --no-emit-find-links --no-emit-index-url
lock:
	test -x $(LOCK_VENV)/bin/python || $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -c "import sys, platform; assert sys.version_info[:2] == (3, 11) and platform.machine() == 'x86_64', 'make lock needs CPython 3.11 on x86_64: PYTHON=python3.11 make lock'"
	$(LOCK_ENV) $(LOCK_VENV)/bin/python -m pip install --quiet "pip-tools==7.6.2"
	$(LOCK_ENV) $(LOCK_VENV)/bin/python -m piptools compile $(LOCK_FLAGS) --upgrade --extra dev -o requirements-dev.lock pyproject.toml
	grep -E '^[A-Za-z0-9]' requirements-dev.lock | cut -d' ' -f1 > requirements.lock
	$(LOCK_ENV) $(LOCK_VENV)/bin/python -m piptools compile $(LOCK_FLAGS) -o requirements.lock pyproject.toml

# A local .env with a fresh secret key, made once; edit it to add real credentials.
.env:
	$(BIN)/python -c "import secrets; print('SALESBOT_SECRET_KEY=' + secrets.token_urlsafe(48))" > .env
	@echo "created .env with a new SALESBOT_SECRET_KEY"

run: install .env
	$(BIN)/salesbot db upgrade
	$(BIN)/salesbot serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy domain storage bot handlers
	$(BIN)/lint-imports
	$(BIN)/python tools/check_commits.py

test: install lint
	tools/ensure_chromium.sh
	$(BIN)/python -m pytest -n 2 -q

unit: install
	$(BIN)/python -m pytest -q tests/unit

# Every benchmark; figures and the machine go to bench/results.json (see README, "Latest figures").
bench: install
	$(BIN)/python -m bench --json bench/results.json

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) $(LOCK_VENV) .pytest_cache .mypy_cache .ruff_cache salesbot.db*
