# Everything a user runs goes through these targets; each depends on an idempotent `setup`.
PY := .venv/bin/python
SPEC ?= experiments/demo.yaml
RESULTS ?= results
PYTEST_ARGS ?=

.PHONY: setup demo test test-unit experiment bench-fidelity bench-scale clean

setup:
	@./scripts/setup.sh

demo: setup
	$(PY) -m fabric.runner experiments/demo.yaml --results $(RESULTS)

experiment: setup
	$(PY) -m fabric.runner $(SPEC) --results $(RESULTS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(PY) -m pytest -m "not emulation" $(PYTEST_ARGS)

bench-fidelity: setup
	$(PY) -m fabric.runner experiments/fidelity.yaml --results $(RESULTS)

bench-scale: setup
	$(PY) -m bench.scale --k 8 --results $(RESULTS)

clean: setup
	$(PY) -m fabric.cleanup
