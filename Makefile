# CryptoTA Pipelines. `make run` and `make test` work on a fresh machine (see README).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install system-packages run test test-timescale lint typecheck defs pytest bench ui stack clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The servers the tests run for real (PostgreSQL, redis-server, docker-compose), via apt-get
## when missing: a fresh machine needs nothing but `make test`.
system-packages:
	./tools/system-packages.sh

## The main job on the embedded default (SQLite store under CRYPTOTA_HOME, synthetic data).
run: install
	$(BIN)/cryptota demo

## Lint, type-check, import contracts, then the test suite against throwaway PostgreSQL + Redis.
test: install system-packages lint typecheck defs pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

## The code location loads and validates (`dg check defs`, which supersedes `dagster definitions
## validate`) on a throwaway instance: the dagster.yaml here is production's and needs its
## PostgreSQL.
defs: install
	home="$$(mktemp -d)" && printf 'telemetry:\n  enabled: false\n' > "$$home/dagster.yaml" && \
		DAGSTER_HOME="$$home" VIRTUAL_ENV="$(abspath $(VENV))" $(BIN)/dg check defs; \
		status=$$?; rm -rf "$$home"; exit $$status

pytest: install system-packages
	$(BIN)/python -m pytest

## The tests of the TimescaleDB store (hypertable, columnstore, continuous aggregates, every store
## test once more on TimescaleDB). The default run never needs the extension; this one needs it
## installed for this machine's PostgreSQL (no registry ships it: build 2.28 from source).
test-timescale: install system-packages
	@$(BIN)/python -c 'from tests.services import timescale_library as t; raise SystemExit(t() is None)' \
		|| { echo "make test-timescale: the timescaledb extension is not installed for this machine's PostgreSQL" >&2; exit 1; }
	$(BIN)/python -m pytest -m timescaledb

## The Dagster UI on the embedded default's instance (the one `make run` materialises into), via
## `dg dev` (which supersedes `dagster dev`; the location takes its name from [tool.dg]).
PORT ?= 3000
ui: install
	DAGSTER_HOME="$$($(BIN)/python -c 'from cryptota_core.settings import load_settings as s; h = s().resolved_dagster_home; h.mkdir(parents=True, exist_ok=True); print(h)')" \
		VIRTUAL_ENV="$(abspath $(VENV))" $(BIN)/dg dev --port $(PORT)

## The production deployment on this machine without Docker (docs/operations.md): PostgreSQL and
## Redis unless configured, user-code server, daemon, webserver, WORKERS Celery workers. Ctrl-C
## or SIGTERM stops it all.
WORKERS ?= 2
stack: install system-packages
	$(BIN)/cryptota stack --workers $(WORKERS) --port $(PORT)

## Benchmarks (never part of the tests): prints a table. The peers (vectorbt) are the bench extra.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

## What `pip install cryptota` gives a user (no dev or bench extra): the end-to-end benchmark
## times `cryptota optimize` there, because the extras bring scipy, which numba then imports
## at start-up (0.1 s) for its BLAS check.
RUNTIME_VENV  ?= .venv-runtime
RUNTIME_STAMP := $(RUNTIME_VENV)/.installed
$(RUNTIME_STAMP): pyproject.toml
	test -x $(RUNTIME_VENV)/bin/python || $(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(RUNTIME_VENV)/bin/python -m pip install --quiet -e .
	touch $(RUNTIME_STAMP)

bench: install $(BENCH_STAMP) $(RUNTIME_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(RUNTIME_VENV) .mypy_cache .ruff_cache .pytest_cache
