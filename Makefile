# slurm-graphql — `make run` serves GraphiQL over a real local Slurm cluster; `make test` proves it.
PYTHON ?= python3
VENV   ?= .venv
HOST   ?= 127.0.0.1
PORT   ?= 8000
BIN    := $(VENV)/bin
export LOCAL_CLUSTER_DIR ?= $(CURDIR)/.local-cluster
export SLURM_CONF ?= $(LOCAL_CLUSTER_DIR)/slurm.conf

.PHONY: install system-deps cluster-start cluster-stop run test test-debian13 check format golden \
	bench clean build-Function schema

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --config-settings editable_mode=compat -e . --group dev
	touch $@

install: $(BIN)/.installed

# Debian packages the tests drive: Slurm (installed by scripts/local-cluster) and Chromium.
system-deps:
	scripts/install-system-deps

cluster-start:
	scripts/local-cluster start

cluster-stop:
	scripts/local-cluster stop

run: install cluster-start
	SLURM_GRAPHQL_UI=$${SLURM_GRAPHQL_UI:-true} $(BIN)/slurm-graphql serve --host $(HOST) --port $(PORT)

# The suite starts the local cluster itself when it is not running, and stops what it started.
test: install system-deps
	$(BIN)/pytest
	$(MAKE) check

# The same suite on Debian 13 (Slurm 24.11, Python 3.13), in a cached chroot; root only.
test-debian13:
	scripts/debian13 test

SHELL_SCRIPTS := .ci/run scripts/debian13 scripts/install-system-deps scripts/local-cluster \
	scripts/test-users scripts/vendor-graphiql

check: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python scripts/schema-contract check
	$(BIN)/hadolint Dockerfile
	$(BIN)/cfn-lint deploy/*.yaml
	shellcheck $(SHELL_SCRIPTS)

# schema.graphql, the contract frontends generate code from (tests/test_schema_file.py: current).
schema: install
	$(BIN)/python scripts/schema-contract write

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

golden: install cluster-start
	$(BIN)/python scripts/capture-golden

bench: install
	$(BIN)/python bench/parse.py
	$(BIN)/python bench/query.py

# `sam build -t deploy/lambda.yaml` runs this (BuildMethod: makefile) with ARTIFACTS_DIR set: the
# package and its dependencies as wheels for Lambda's runtime, whatever machine builds it.
LAMBDA_PYTHON   ?= 3.12
LAMBDA_PLATFORM ?= manylinux2014_x86_64
build-Function:
	rm -rf build/lambda-wheel
	$(PYTHON) -m pip wheel --quiet --no-deps --wheel-dir build/lambda-wheel .
	$(PYTHON) -m pip install --quiet --target "$(ARTIFACTS_DIR)" --only-binary=:all: \
		--platform $(LAMBDA_PLATFORM) --implementation cp --python-version $(LAMBDA_PYTHON) \
		build/lambda-wheel/*.whl

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
