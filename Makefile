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

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv
	$(VENV)/bin/uv pip install -q -p $(PY) -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	mkdir -p "$(PREFECT_HOME)"
	$(VENV)/bin/fti demo

test: $(STAMP)
	mkdir -p "$(PREFECT_HOME)"
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/feature_pipeline.py
	$(PY) bench/pit_join.py
	$(PY) bench/batch_inference.py
	$(PY) bench/online.py

clean:
	rm -rf .fti
