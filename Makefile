# The README's two commands. Each creates .venv and installs on first use (and when setup.cfg changes).
# .venv's interpreter: the distribution's python3.11 where it can make a venv (Debian builds it with PGO and
# LTO), else python3 from PATH. pyenv's default build has neither; a cache hit is served about a fifth faster
# on Debian's (perf/README.md, "The interpreter"). An existing .venv is kept: `make clean` first.
PYTHON ?= $(shell /usr/bin/python3.11 -c 'import ensurepip, sys; print(sys.executable)' 2>/dev/null || echo python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test clean perf perf-setup schemathesis faults

run: $(VENV)/.installed-run
	$(BIN)/python -m server serve

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The long fuzzing run: schemathesis with fresh seeds and many more cases per operation (tens of minutes).
schemathesis: $(VENV)/.installed-test
	SCHEMATHESIS_MAX_EXAMPLES=$${SCHEMATHESIS_MAX_EXAMPLES:-500} SCHEMATHESIS_SEED=$${SCHEMATHESIS_SEED:-random} \
		$(BIN)/python -m pytest -q tests/test_schemathesis.py

# The fault suite at full length (README, "Resilience"); `make test` runs it briefly. Its figures go to
# docs/faults-latest.md.
faults: $(VENV)/.installed-test
	FAULTS=full FAULTS_REPORT=docs/faults-latest.md $(BIN)/python -m pytest -q tests/test_faults.py $(PYTEST_ARGS)
	@cat docs/faults-latest.md

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

# The load tests (perf/README.md): wrk from Debian, autocannon from npm into perf/node_modules.
# PERF_CHECK: the reads measured again on 10^6 posts, each right after its run on the first scale (the
# first run seeds that data set once, which takes a while: perf/README.md). `make perf PERF_CHECK=` skips it.
PERF_CHECK ?= --scale-check 1e6
perf: perf-setup
	$(BIN)/python -m perf run $(PERF_CHECK) $(PERF_ARGS)

perf-setup: $(VENV)/.installed-perf perf/node_modules/.installed
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)

$(VENV)/.installed-perf: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[perf]'
	touch $@ $(VENV)/.installed-run

perf/node_modules/.installed: perf/package.json perf/package-lock.json
	cd perf && npm ci --no-audit --no-fund
	touch $@

clean:
	rm -rf $(VENV) *.egg-info
