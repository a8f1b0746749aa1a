# Two commands matter: `make demo` and `make test`. Each installs what it needs first
# (scripts/setup.sh is idempotent: a second run takes a second).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-unit bench clean

setup:
	./scripts/setup.sh

demo: setup
	$(VENV)/bin/candid demo

test: setup
	./scripts/install_chromium.sh
	$(PY) -m pytest -q

test-unit: setup
	$(PY) -m pytest -q tests/unit

bench: setup
	$(PY) benchmarks/bench_image_prep.py

clean:
	rm -rf build .pytest_cache .hypothesis
