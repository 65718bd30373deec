# The two commands of the README: `make demo` and `make test`. Both create .venv/ when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export FTI_HOME ?= $(CURDIR)/.fti
export PREFECT_HOME ?= $(CURDIR)/.fti/prefect
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export OMP_WAIT_POLICY ?= PASSIVE
export DBT_SEND_ANONYMOUS_USAGE_STATS ?= false

.PHONY: install demo test test-fast redis java bench clean

# The spark extra: the Spark engine's tests run too. --compile-bytecode: every process (CLI, dbt, server
# workers, the tests' subprocesses) imports from .pyc files, also where PYTHONDONTWRITEBYTECODE keeps Python
# from writing them (each process would otherwise compile dbt's and Prefect's sources again).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv
	$(VENV)/bin/uv pip install -q -p $(PY) --compile-bytecode -e '.[dev,spark]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	mkdir -p "$(PREFECT_HOME)"
	$(VENV)/bin/fti demo

# Test files are spread over one worker per core (a file's tests stay together, so its module fixtures
# are built once); each worker builds its own session fixtures.
PYTEST_WORKERS ?= auto

test: $(STAMP) redis java
	mkdir -p "$(PREFECT_HOME)"
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile

# The edit-run loop: everything but the end-to-end and server-starting tests (marked slow).
test-fast: $(STAMP)
	mkdir -p "$(PREFECT_HOME)"
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not slow" -q

# The Redis online-store tests need a real redis-server: installed from Debian where we may (root with
# apt-get, as CI runs), otherwise they are skipped and the run says so loudly.
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server; \
	  else \
	    echo "WARNING: redis-server is not installed and cannot be installed here (needs root and apt-get):" \
	         "the Redis online-store tests will be SKIPPED. Install it (apt-get install redis-server) to run them." >&2; \
	  fi; }

# Spark (the spark engine's tests) needs a Java runtime: installed from Debian where we may, as for Redis.
java:
	@command -v java >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless; \
	  else \
	    echo "WARNING: java is not installed and cannot be installed here (needs root and apt-get):" \
	         "the Spark tests will be SKIPPED. Install it (apt-get install openjdk-17-jre-headless) to run them." >&2; \
	  fi; }

bench: $(STAMP)
	$(PY) bench/feature_pipeline.py
	$(PY) bench/pit_join.py
	$(PY) bench/batch_inference.py
	$(PY) bench/online.py
	FTI_DUCKDB_MEMORY_LIMIT=1GB $(PY) bench/monitoring.py  # add --evidently-python PATH for Evidently beside
	$(PY) bench/spark.py

clean:
	rm -rf .fti
