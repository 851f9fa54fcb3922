# The README's commands. Everything installs into .venv so a fresh clone needs only python3.
# `make run` installs the runtime only (~65 MB); `make test` adds the test extras (Ray, moto, pandas...).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
RUNTIME := $(VENV)/.installed-runtime
STAMP  := $(VENV)/.installed

.PHONY: run test test-quick lint mutate chromium bench bench-quick clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# An editable install compiles no bytecode, and where PYTHONDONTWRITEBYTECODE is set no run writes it:
# every command would compile the package again at start (~60 ms of CPU).
$(RUNTIME): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	$(PY) -m compileall -q crawler
	touch $(RUNTIME)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[test,lint,mutate]'
	$(PY) -m compileall -q crawler
	touch $(RUNTIME) $(STAMP)

# Start the embedded simulator on 127.0.0.1, mirror a few thousand images from it, print status.
run: $(RUNTIME)
	$(PY) -m crawler.cli.demo --out mirror-demo

test: $(STAMP) chromium
	$(PY) -m pytest -q

test-quick: $(STAMP) chromium
	$(PY) -m pytest -q -m 'not slow'

# The browser tests of `serve` drive Debian's headless Chromium over the DevTools protocol; a missing
# browser is installed here, and one that cannot be installed fails the build rather than skipping tests.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Style (ruff), the layering and no-cycle contracts of the package, and types on the seams.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) tools/check_cycles.py crawler
	$(PY) tools/check_module_size.py crawler bench
	$(VENV)/bin/mypy

# Mutation testing of the promise-carrying modules against their unit tests (~25 min); not in make test.
mutate: $(STAMP)
	$(PY) tools/mutate/run.py

# Throughput, latency hiding, CPU, rate accuracy, memory and resume start-up against the simulator
# (127.0.0.1 only); prints a table and writes bench/results.json. 15-20 min; QUICK=1 or bench-quick: ~3 min.
# Installs aria2c with apt-get when it is missing (the ceiling's reference; skipped if that fails).
bench: $(STAMP)
	$(PY) bench/bench.py $(if $(QUICK),--quick)

bench-quick: $(STAMP)
	$(PY) bench/bench.py --quick

clean:
	rm -rf $(VENV) mirror-demo .pytest_cache
