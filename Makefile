# The README's commands. Everything installs into .venv so a fresh clone needs only python3.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-quick bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Start the embedded simulator on 127.0.0.1, mirror a few thousand images from it, print status.
run: $(STAMP)
	$(PY) -m crawler.cli.demo --out mirror-demo

test: $(STAMP)
	$(PY) -m pytest -q

test-quick: $(STAMP)
	$(PY) -m pytest -q -m 'not slow'

# Throughput, latency hiding, CPU, rate accuracy, memory and resume start-up against the simulator
# (127.0.0.1 only); prints a table and writes bench/results.json. ~10 min; QUICK=1 or bench-quick: ~3 min.
# Installs aria2c with apt-get when it is missing (the ceiling's reference; skipped if that fails).
bench: $(STAMP)
	$(PY) bench/bench.py $(if $(QUICK),--quick)

.PHONY: bench-quick
bench-quick: $(STAMP)
	$(PY) bench/bench.py --quick

clean:
	rm -rf $(VENV) mirror-demo .pytest_cache
