# lienthong — the commands in the README.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export LIENTHONG_AMQP_URL       ?= amqp://guest:guest@127.0.0.1:5672/lienthong
export LIENTHONG_DATABASE_URL   ?= postgresql://postgres@127.0.0.1:5432/lienthong
export LIENTHONG_MANAGEMENT_URL ?= http://guest:guest@127.0.0.1:15672

.PHONY: setup services demo test test-unit test-integration lint bench bench-large bench-codec sdk-wheel clean \
        cluster cluster-down cluster-test

AXE    := tests/browser/node_modules/axe-core/axe.min.js

setup: $(STAMP) services $(AXE) ## venv, packages, RabbitMQ + management plugin, PostgreSQL

$(STAMP): pyproject.toml sdk/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ./sdk  # lienthong-gateway (adapters/ + schemas/), the hub's dependency
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# axe-core for the dashboard's accessibility check (tests/browser), pinned in its lock file
$(AXE): tests/browser/package.json tests/browser/package-lock.json
	cd tests/browser && npm ci --no-audit --no-fund --silent
	touch $@

services:
	@bash deploy/local/ensure-services.sh

demo: setup ## migrate, load the demo directory, route documents between gateways
	$(BIN)/python -m demo

test: setup ## unit, integration and chaos tests against the real services, then the cluster's
	$(BIN)/pytest
	@$(MAKE) --no-print-directory cluster-test

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: setup ## router throughput vs the raw relay limit of this machine
	$(BIN)/python -m bench

bench-large: setup ## large packages (100 MiB, 1 GiB): end to end, vs RabbitMQ alone, peak RSS
	$(BIN)/python -m bench.large

bench-codec: $(STAMP) ## parse + validate time per package size
	$(BIN)/pytest tests/bench --benchmark-only -q -p no:randomly

sdk-wheel: $(STAMP) ## the gateway SDK's wheel (lienthong-gateway) in dist/, offline
	$(BIN)/pip wheel -q --no-deps --no-build-isolation --no-index -w dist ./sdk

cluster: ## a 3-node RabbitMQ cluster + PostgreSQL primary/sync standby (Patroni, etcd), local
	@bash deploy/cluster/cluster.sh up

cluster-down: ## stop the local cluster and remove everything it made
	@bash deploy/cluster/cluster.sh down

# Starts the cluster when it is not up, and then removes it again; says how long it all took.
cluster-test: $(STAMP) ## kill cluster nodes under load (starts the cluster when it is not up)
	@start=$$(date +%s); \
	if bash deploy/cluster/cluster.sh running; then was_up=yes; else was_up=no; fi; \
	$(BIN)/pytest tests/cluster tests/integration/test_router_liveness.py \
	  -m cluster -p no:randomly -s; rc=$$?; \
	[ $$was_up = yes ] || bash deploy/cluster/cluster.sh down; \
	echo "cluster tests: $$(( $$(date +%s) - start )) s (cluster started by them: $$([ $$was_up = yes ] && echo no || echo yes))"; \
	exit $$rc

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .benchmarks
