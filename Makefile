# make run   start the supervisor in the foreground, default state directory;
#            ARGS="--handlers mymodule ..." are its flags, and modules in this
#            directory can be named (it is put on PYTHONPATH)
# make test  ruff, mypy and the whole test suite (what CI runs)
# make chaos the slow crash-and-kill suite (minutes)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint chaos bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" $(BIN)/semanticad $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check semantica tests bench
	$(BIN)/ruff format --check semantica tests bench
	$(BIN)/mypy

# Most tests spend their time waiting on a supervisor they started, so two
# processes finish the suite in about half the time on two cores.
TEST_PROCS ?= 2

test: lint
	$(BIN)/python -m pytest -q -m "not chaos" -n $(TEST_PROCS)

# The wall-clock jump scenario moves the supervisor's clock with libfaketime
# (Debian's libfaketime; as root, as CI runs, it is installed here). Without it
# that one scenario is skipped.
chaos: $(STAMP)
	@ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || ! command -v apt-get >/dev/null \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libfaketime; } \
	  || echo "libfaketime could not be installed: the clock-jump scenario will be skipped"
	$(BIN)/python -m pytest -q -m chaos -o timeout=900 tests/chaos

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
