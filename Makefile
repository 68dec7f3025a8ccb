# The README's two commands. Each creates .venv and installs on first use (and when setup.cfg changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test clean schemathesis

run: $(VENV)/.installed-run
	$(BIN)/python -m server serve

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The long fuzzing run: schemathesis with fresh seeds and many more cases per operation (tens of minutes).
schemathesis: $(VENV)/.installed-test
	SCHEMATHESIS_MAX_EXAMPLES=$${SCHEMATHESIS_MAX_EXAMPLES:-500} SCHEMATHESIS_SEED=$${SCHEMATHESIS_SEED:-random} \
		$(BIN)/python -m pytest -q tests/test_schemathesis.py

$(VENV)/.installed-run: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed-run

clean:
	rm -rf $(VENV) *.egg-info
