# make run   start the supervisor in the foreground, default state directory;
#            ARGS="--handlers mymodule ..." are its flags, and modules in this
#            directory can be named (it is put on PYTHONPATH)
# make test  ruff, mypy and the whole test suite (what CI runs)
# make chaos the slow crash-and-kill suite (minutes)
# make screenshots  the browser tests, saving docs/images/web-*.png for docs/web.md

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint browsers screenshots chaos bench clean

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

test: lint browsers
	$(BIN)/python -m pytest -q -m "not chaos" -n $(TEST_PROCS)

# The browser tests (tests/browser) drive Debian's headless chromium through its
# chromedriver: as root on Debian (as CI runs) they are installed here. Those tests
# are the web view's acceptance tests, so a machine that cannot have them fails
# here rather than skipping them. (The fonts: screenshots with readable text.)
CHROMIUM   := /usr/bin/chromium
DRIVER     := /usr/bin/chromedriver
BROWSER_DEBS := chromium chromium-driver fonts-liberation fonts-dejavu-core

browsers:
	@test -x $(CHROMIUM) && test -x $(DRIVER) || { \
	  command -v apt-get >/dev/null \
	    || { echo "the browser tests need $(CHROMIUM) and $(DRIVER) (Debian: $(BROWSER_DEBS))" >&2; exit 1; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $(BROWSER_DEBS) \
	  || { echo "could not install $(BROWSER_DEBS): the browser tests cannot run" >&2; exit 1; }; }

# The browser tests alone, saving their screenshots into docs/images/web-*.png
# (ordinary runs never rewrite those tracked files); commit them with docs/web.md.
screenshots: $(STAMP) browsers
	SEMANTICA_SCREENSHOTS=1 $(BIN)/python -m pytest -q -n 0 tests/browser

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
