# The two commands of the quickstart: `make demo` and `make test`. Both install first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export REELFLOW_HOME ?= $(CURDIR)/var
DEMO_SCALE ?= demo
DEMO_RAW := $(REELFLOW_HOME)/demo-data/KuaiRec 2.0

.PHONY: install demo ui cluster-up cluster-down test test-fast lint format bench clean

# The Spark class archive (lake/spark.py) is built once per pyspark and JDK: ~30 s, then
# every Spark driver JVM starts ~2.5 s faster.
install: $(STAMP)
	@$(PY) -m lake.spark

# Re-installs only when the project's dependency pins change. torch is taken from the
# CPU wheel on this machine's disk by pip (uv would not see it).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $(STAMP)

demo: install
	$(VENV)/bin/reelflow generate --dataset kuairec --scale $(DEMO_SCALE) --out "$(DEMO_RAW)"
	$(VENV)/bin/reelflow run --dataset kuairec --raw "$(DEMO_RAW)"
	$(VENV)/bin/reelflow recommend --user $$($(PY) -c "import pandas as pd, sys; print(pd.read_csv(sys.argv[1], nrows=1)['user_id'][0])" "$(DEMO_RAW)/big_matrix.csv") --k 10

# The Airflow, MLflow and Feast UIs of the home on 127.0.0.1 (`reelflow ui --stop` stops them).
ui: install
	$(VENV)/bin/reelflow ui

# A Spark standalone master and two workers on 127.0.0.1 for the daily DAG's Spark tasks
# (`reelflow cluster status` prints the connection that sends them there).
cluster-up: install
	$(VENV)/bin/reelflow cluster up

cluster-down: install
	$(VENV)/bin/reelflow cluster down

# Two workers, a test module each at a time (--dist loadscope keeps a module's fixtures on one
# worker), in the order tests/conftest.py gives: the slowest modules first. TEST_WORKERS=0: one
# process.
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

# Everything but the end-to-end DAG runs: the loop while developing.
test-fast: install
	$(PY) -m pytest -q -m "not e2e"

# lint-imports: the layers of ARCHITECTURE.md, as contracts in pyproject.toml ([tool.importlinter]).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf "$(REELFLOW_HOME)"
