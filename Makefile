# The two commands of the README: `make demo` and `make test`. Both bootstrap first (idempotent).
SHELL := /bin/bash
PY := .venv/bin/python
PYTEST_ARGS ?=
# Test processes (pytest-xdist): the e2e tests on one worker (one airflow standalone), everything else on
# the other at nice 10 (tests/conftest.py), so it only takes the CPU the e2e tests leave while they wait
# on Airflow. TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2

.PHONY: bootstrap demo test test-fast lint fmt bench lock clean

bootstrap:
	@bash scripts/bootstrap.sh

## make demo: start local S3 + MariaDB, seed the demo world, run the pipelines (S3OPS_DEMO_UI=1 keeps the UI up)
# The demo's artifacts are kept in .s3ops/demo-artifacts (the servers' data is removed on exit).
demo: bootstrap
	@S3OPS_ARTIFACT_ROOT=$${S3OPS_ARTIFACT_ROOT:-$(CURDIR)/.s3ops/demo-artifacts} $(PY) -m scripts.stack run -- $(PY) -m scripts.demo

## make test: lint, then the whole suite (unit, integration, DAG integrity, e2e). `--fast` skips the slow ones.
test: bootstrap lint
	@$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

test-fast: bootstrap lint
	@$(PY) -m pytest -n $(TEST_WORKERS) --fast $(PYTEST_ARGS)

lint: bootstrap
	@.venv/bin/ruff check . && .venv/bin/ruff check --select AIR3 dags include plugins

fmt: bootstrap
	@.venv/bin/ruff check --fix .

## make bench: side-by-side benchmarks against s5cmd, rclone and the AWS CLI (see bench/README.md)
bench: bootstrap
	@bash scripts/bootstrap.sh --with-bench
	@$(PY) -m bench.run $(BENCH_ARGS)

## make lock: regenerate requirements.txt (runtime) from requirements.in and requirements-dev.txt from requirements-dev.in
lock:
	@rm -rf .s3ops/lockenv && python3 -m venv .s3ops/lockenv && .s3ops/lockenv/bin/pip install -q -r requirements.in
	@{ echo "# Runtime lock generated from requirements.in (make lock). Do not edit by hand."; .s3ops/lockenv/bin/pip freeze; } > requirements.txt
	@.s3ops/lockenv/bin/pip install -q -r requirements-dev.in
	@{ echo "# Dev/test lock generated from requirements-dev.in on top of requirements.txt (make lock). Do not edit by hand."; \
	   .s3ops/lockenv/bin/pip freeze | grep -vxFf requirements.txt; } > requirements-dev.txt

clean:
	rm -rf .s3ops
