# Salesbot: `make run` serves (sandbox mode without credentials), `make test` tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint unit bench format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

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
	$(BIN)/mypy domain storage bot handlers/slack
	$(BIN)/lint-imports
	$(BIN)/python tools/check_commits.py

test: install lint
	$(BIN)/python -m pytest -n 2 -q

unit: install
	$(BIN)/python -m pytest -q tests/unit

bench: install
	$(BIN)/python -m bench

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache salesbot.db*
