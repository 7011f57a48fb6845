# chaos-dynamo tasks. `make run` and `make test` work on a fresh machine with only Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml chaos_dynamo/_shim_boot/chaos_dynamo_shim.pth | cksum | cut -d' ' -f1)

.PHONY: run verify test test-fast bench soak lint typecheck clean lab-up lab-down

$(STAMP): pyproject.toml chaos_dynamo/_shim_boot/chaos_dynamo_shim.pth
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

## run: the main job: the DNS Enactor race of October 2025 on the embedded lab, and the rollback
run: $(STAMP)
	$(VENV)/bin/chaos-dynamo run experiments/dns-stale-plan-race.json

## verify: every experiment of this repository through the CI gate: JUnit XML, summary and report in reports/
verify: $(STAMP)
	$(VENV)/bin/chaos-dynamo verify experiments/ --jobs 2 --junit reports/junit.xml --report reports/report.html --summary reports/summary.md

## test: the whole suite (unit, integration on real sockets, the real chaos CLI)
test: $(STAMP)
	@$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; exit 1; fi; \
	exit $$rc

## test-fast: unit tests only
test-fast: $(STAMP)
	$(PY) -m pytest tests/unit -q

## bench: speed targets, measured side by side in one run
bench: $(STAMP)
	$(PY) bench/run.py $(ARGS)

## soak: the race experiment 20 times in a row on one lab; must report 20/20 (ARGS=--runs N)
soak: $(STAMP)
	$(PY) bench/soak_race.py $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check chaos_dynamo tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

lab-up: $(STAMP)
	$(VENV)/bin/chaos-dynamo lab up --detach

lab-down: $(STAMP)
	$(VENV)/bin/chaos-dynamo lab down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache journals reports .chaos-dynamo
