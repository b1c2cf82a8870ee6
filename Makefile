# The two commands a newcomer needs: `make serve` and `make test` (README.md).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install serve cluster test unit bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Run the server on its embedded default (own nats-server, certificates, kubeconfig in .jetkube/).
serve: install
	$(BIN)/jetkube serve $(ARGS)

## The scale-out topology on loopback: 3 nats-servers, 2 gateways, a load balancer (README.md).
cluster: install
	$(BIN)/jetkube dev-cluster $(ARGS)

## The whole test suite: unit, integration (real nats-server) and end-to-end (real clients).
test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

unit: install
	$(BIN)/python -m pytest -q tests/unit

## Benchmarks: never fail; print a table and write $(BENCH_OUT). QUICK=1 for a short run.
bench: install
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python -m bench $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) .bench .pytest_cache
