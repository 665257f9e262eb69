# The two commands of the README: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
# Every install comes from the lock files in requirements/, each package checked against its hash.
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes
# fauxqs, the fast SQS and SNS emulator of the integration tests and the benchmark (Node 20),
# installed from its package-lock.
FAUXQS_DIR := tests/support/fauxqs
FAUXQS := $(FAUXQS_DIR)/node_modules/.installed
# dynalite, the DynamoDB emulator of the same (its conditional writes are atomic, moto's are not),
# installed likewise.
DYNALITE_DIR := tests/support/dynalite
DYNALITE := $(DYNALITE_DIR)/node_modules/.installed

.PHONY: demo test lint lock lock-check unit integration bench soak clean fauxqs dynalite

$(STAMP): pyproject.toml requirements/dev.txt requirements/build.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) --requirement requirements/build.txt
	$(PIP) --requirement requirements/dev.txt
	# The project itself: its dependencies are all above, its build backend is the locked one.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps \
		--no-build-isolation --editable .
	touch $(STAMP)

$(FAUXQS): $(FAUXQS_DIR)/package-lock.json
	npm ci --prefix $(FAUXQS_DIR) --no-audit --no-fund --loglevel=error
	touch $(FAUXQS)

fauxqs: $(FAUXQS)

$(DYNALITE): $(DYNALITE_DIR)/package-lock.json
	npm ci --prefix $(DYNALITE_DIR) --no-audit --no-fund --loglevel=error
	touch $(DYNALITE)

dynalite: $(DYNALITE)

# checkov lives in a venv of its own: its pins conflict with the dev set's (see tools/lock.py).
$(CHECKOV_STAMP): requirements/checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes \
		--requirement requirements/checkov.txt
	touch $(CHECKOV_STAMP)

demo: $(STAMP)
	$(BIN)/python -m worker demo

test: lint lock-check $(FAUXQS) $(DYNALITE)
	$(BIN)/pytest

lint: $(STAMP) $(CHECKOV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile
	$(BIN)/cfn-lint deploy/cloudformation.yaml
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation \
		--file deploy/cloudformation.yaml

# Regenerate requirements/ after editing pyproject.toml's dependencies; `lock-check` fails until then.
lock: $(STAMP)
	$(BIN)/python tools/lock.py

lock-check: $(STAMP)
	$(BIN)/python tools/lock.py --check

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP) $(FAUXQS) $(DYNALITE)
	$(BIN)/pytest tests/integration

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info \
		$(FAUXQS_DIR)/node_modules $(DYNALITE_DIR)/node_modules

bench: $(STAMP) $(FAUXQS) $(DYNALITE)
	$(PIP) --requirement requirements/bench.txt
	$(BIN)/python -m bench

soak: $(STAMP) $(FAUXQS) $(DYNALITE)
	SOAK_JOBS=20000 $(BIN)/pytest -s tests/integration/test_soak.py
