# Two commands matter: `make demo` and `make test`. Each installs what it needs first
# (scripts/setup.sh is idempotent: a second run takes a second).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast test-env test-jvm dist bench clean

setup:
	./scripts/setup.sh

demo: setup
	$(VENV)/bin/candid demo

# The whole suite: the fast tier first (a broken unit stops the run within two minutes), then
# the tests that start Spark, an engine, a CLI or a browser, with the 25 slowest listed, on two
# test processes: the modules that start drivers, clusters and browsers run one after the other
# on one, beside the modules that work in a SparkSession (the groups: tests/conftest.py). One
# process left 30 % of the two cores idle and took 1,311 s; two took 979-1,027 s, CPU 96 % busy,
# on one warm clone the same morning (G1 then; with the parallel collector, tests/jvm_archive.py,
# 875 s and 996 s from two fresh clones of the same code half an hour apart; 1,005 s and 919 s
# the next day, with Delta's duplicate jars left out: this machine's speed varies that much;
# 765 s and 771 s from fresh clones once the session JVM inlined less, tests/jvm_archive.py,
# with 807 s for the commit before between them, the same hour).
test: test-fast test-env test-jvm
	./scripts/install_chromium.sh
	$(PY) -m pytest -q --durations=25 -n 2 --dist loadgroup tests/spark tests/e2e

# The tests that start no Spark and no engine (tests/unit: conftest refuses a unit test that
# asks for either); stops at the first failure. Two test processes: 52 s instead of 67 s here;
# 41-46 s on a warm clone (40 s and 51 s from two fresh ones) since the import check forks each
# module's clean interpreter from one that imported pandas and pydantic once
# (tests/import_alone.py; 16 s of one test process before, 5 s now).
test-fast: setup
	$(PY) -m pytest -q -x -n 2 tests/unit

# The class archive the JVMs that tests start map instead of loading Spark's classes one by one
# (tests/jvm_archive.py); built once per JDK and Spark version, by one fake-engine describe.
test-jvm: setup
	$(PY) -m tests.jvm_archive

# The packed environment the cluster test ships to its executors: the wheel and what executors
# import, no engine (tests/e2e/test_cluster.py). Packed again only when the sources change.
test-env: setup
	$(PY) scripts/pack_env.py --name executor --exclude pyspark,delta-spark,mlflow

# For a GPU cluster: build/dist/candid_vlm-0.1.0-py3-none-any.whl and
# build/dist/candid-env-gpu.tar.gz (the wheel with CUDA vLLM, packed with venv-pack) for
# `spark-submit --archives`; see docs/CLUSTER.md. EXTRAS=gpu by default.
EXTRAS ?= gpu
dist: setup
	$(PY) scripts/pack_env.py --name $(EXTRAS) --extras $(EXTRAS)

bench: setup
	$(PY) benchmarks/bench_image_prep.py

clean:
	rm -rf build .pytest_cache .hypothesis
