# `make run` and `make test` each bootstrap .venv idempotently (scripts/install.sh).
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test bootstrap test-deps lint bench clean

bootstrap:
	@VENV=$(VENV) bash scripts/install.sh

test-deps:
	@bash scripts/test-deps.sh

run: bootstrap
	$(VENV)/bin/atrium seed-demo --if-empty
	$(VENV)/bin/atrium serve --host $(HOST) --port $(PORT)

test: bootstrap test-deps
	@VENV=$(VENV) bash scripts/test.sh

lint: bootstrap
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) data tests/artifacts
