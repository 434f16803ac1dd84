# Two commands set up everything on a fresh machine: `make demo` and `make test`.
# Both create and use the project's own virtualenv (.venv) and node_modules.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUF := node_modules/.bin/buf
STAMP := $(VENV)/.installed

.PHONY: all venv proto proto-check lint test soak demo demo-fleet bench interop clean

all: test

$(STAMP): pyproject.toml clients/python/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt \
		-e clients/python -e '.[test]'
	touch $@

venv: $(STAMP)

$(BUF): package.json package-lock.json
	# npm ci refuses lock files that omit other platforms' optional binaries; install honours the lock.
	npm install --no-audit --no-fund --loglevel=error
	touch $@

proto: $(STAMP)
	scripts/gen_proto.sh clients/python

# Fails when the committed generated code differs from what `make proto` writes.
proto-check: $(STAMP)
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	scripts/gen_proto.sh $$tmp; \
	for f in $$tmp/cts/v1/*_pb2*; do \
		cmp -s $$f clients/python/cts/v1/$$(basename $$f) || { \
			echo "generated code is stale: $$(basename $$f) (run make proto)"; exit 1; }; \
	done; \
	n_new=$$(ls $$tmp/cts/v1/*_pb2* | wc -l); n_old=$$(ls clients/python/cts/v1/*_pb2* | wc -l); \
	[ $$n_new -eq $$n_old ] || { echo "generated file set differs (run make proto)"; exit 1; }; \
	echo "generated code is up to date"

# The contract only grows: fails when proto/cts breaks compatibility (buf's
# FILE rules) with the previous commit. Skipped, with a message, when there is
# no previous commit (the first one, or a clone fetched with --depth=1).
# Override the baseline with e.g. `make proto-breaking BREAKING_AGAINST=origin/main`.
BREAKING_AGAINST ?= HEAD~1

.PHONY: proto-breaking node-deps

proto-breaking: $(BUF)
	@base=$$(git rev-parse --verify --quiet '$(BREAKING_AGAINST)^{commit}') || { \
		echo "proto-breaking: skipped, no commit $(BREAKING_AGAINST) to compare with (first commit or shallow clone)"; exit 0; }; \
	$(BUF) breaking --path proto/cts --against ".git#ref=$$base" && \
	echo "proto-breaking: no breaking changes against $(BREAKING_AGAINST) ($$base)"

# The Node client's packages (clients/node/package-lock.json), for its tests.
NODE_CLIENT_DEPS := clients/node/node_modules/.package-lock.json

$(NODE_CLIENT_DEPS): clients/node/package.json clients/node/package-lock.json
	npm ci --prefix clients/node --no-audit --no-fund --loglevel=error
	touch $@

node-deps: $(NODE_CLIENT_DEPS)

lint: $(STAMP) $(BUF)
	$(BUF) lint
	$(VENV)/bin/ruff check ctsd clients/python/cts tests bench scripts
	$(VENV)/bin/mypy

# systemd-analyze checks systemd/ctsd.service in tests/ops/test_systemd_unit.py
# (verify, and security --offline=yes <= 2.0); it runs without systemd as PID 1.
# Debian's `systemd` package provides it: installed here when missing and we are
# root, else the target says what to install.
.PHONY: systemd-tools systemd-check
systemd-tools:
	@command -v systemd-analyze >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get install -y -q --no-install-recommends systemd >/dev/null 2>&1 || \
			{ apt-get update -q >/dev/null && \
			  apt-get install -y -q --no-install-recommends systemd >/dev/null; }; \
		else echo "systemd-tools: systemd-analyze is missing; install the systemd package"; exit 1; fi; }
	@systemd-analyze --version | head -1

systemd-check: systemd-tools $(STAMP)
	$(VENV)/bin/pytest -q tests/ops/test_systemd_unit.py

# The fleet's servers: tests/support/servers.py starts private PostgreSQL and Redis
# instances from Debian's packages (postgresql, redis-server), installed here when
# missing and we are root, else the target says what to install. Not needed when
# CTS_TEST_POSTGRES_URL and CTS_TEST_REDIS_URL point the tests at running servers.
.PHONY: servers
servers:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
		[ -n "$$CTS_TEST_POSTGRES_URL" ] || missing="postgresql"; \
	command -v redis-server >/dev/null 2>&1 || [ -n "$$CTS_TEST_REDIS_URL" ] || \
		missing="$$missing redis-server"; \
	[ -z "$$missing" ] || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 || \
			{ apt-get update -q >/dev/null && \
			  apt-get install -y -q --no-install-recommends $$missing >/dev/null; }; \
		else echo "servers: missing$$missing; install Debian's $$missing (or set CTS_TEST_POSTGRES_URL / CTS_TEST_REDIS_URL)"; exit 1; fi; }
	@echo "servers: postgresql $$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sed 's|.*/postgresql/\([^/]*\)/bin|\1|' | tail -1), $$(command -v redis-server >/dev/null && redis-server --version | awk '{print "redis " substr($$3, 3)}' || echo 'redis at CTS_TEST_REDIS_URL')"

# Most tests wait on sockets and child processes, so more workers than cores pay off:
# 4 workers halve the suite's wall time on two cores.
PYTEST_WORKERS ?= 4

test: lint proto-check proto-breaking node-deps systemd-tools servers
	$(VENV)/bin/pytest -q -n $(PYTEST_WORKERS)

# The long form of tests/robustness: 20 SIGKILL rounds, 300 fuzzed requests per RPC,
# 10 minutes of 200 clients and 500 watchers (30 s in `make test`), rotate-key under
# signals over 24,000 secrets (50 rounds); then the engines over 30 stretches of the path.
soak: $(STAMP)
	CTS_SOAK_ROUNDS=20 CTS_FUZZ_EXAMPLES=300 CTS_SOAK_SECONDS=600 CTS_ROTATION_SECRETS=24000 \
		$(VENV)/bin/pytest -q -s tests/robustness
	CTS_FLEET_EXAMPLES=100 $(VENV)/bin/pytest -q -p no:xdist tests/ratelimit/test_shared.py
	CTS_CORRUPTION_CASES=20000 $(VENV)/bin/pytest -q -s -p no:xdist tests/store/test_random_corruption.py
	CTS_SOAK_ROUNDS=20 $(VENV)/bin/pytest -q -p no:xdist tests/fleet/test_fencing.py \
		tests/fleet/test_failover.py
	CTS_SOAK_ROUNDS=20 $(VENV)/bin/pytest -q -p no:xdist tests/marketdata/test_partial_fill_fees.py \
		-k random
	# Every advertised engine over 30 more stretches of the seeded path (a minute each, 7 apart;
	# `make test` walks the current minute's): a failure prints the CTS_MARKET_MINUTE to replay.
	now=$$(( $$(date +%s) / 60 )); for k in $$(seq 1 30); do \
		CTS_MARKET_MINUTE=$$(( now - 7 * k )) $(VENV)/bin/pytest -q tests/wiring/test_hundred_cycles.py \
			|| exit 1; done

demo: $(STAMP)
	$(PY) scripts/demo.py

# Three daemons on one private PostgreSQL and Redis: a SIGKILL failover and a drain.
demo-fleet: $(STAMP) servers
	$(PY) scripts/demo_fleet.py

bench: $(STAMP)
	@for b in bench/*_bench.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# An unmodified Freqtrade against the simulator (not part of `make test`; ~20 minutes).
# Freqtrade 2026.9 is the newest release (September 2026) before ccxt 4.5.90 (October
# 2026), the ccxt this project pins; it is installed on that very ccxt.
INTEROP_VENV := .venv-interop
FREQTRADE_VERSION := 2026.9
$(INTEROP_VENV)/.installed:
	$(PYTHON) -m venv $(INTEROP_VENV)
	$(INTEROP_VENV)/bin/pip install --quiet --disable-pip-version-check \
		"freqtrade==$(FREQTRADE_VERSION)" "ccxt==4.5.90"
	touch $@

interop: $(STAMP) $(INTEROP_VENV)/.installed
	$(PY) scripts/interop.py

clean:
	rm -rf $(VENV) $(INTEROP_VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
