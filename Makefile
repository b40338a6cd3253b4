# Everything a user runs goes through these targets; each depends on an idempotent `setup`.
PY := .venv/bin/python
SPEC ?= experiments/demo.yaml
RESULTS ?= results
PYTEST_ARGS ?=
# `make sweep` runs the example sweep unless SPEC is given (`make sweep SPEC=<file>`).
SWEEP_SPEC = $(if $(filter file,$(origin SPEC)),experiments/sweep_example.yaml,$(SPEC))
# `make bench`: every policy side by side, 5 seeds (~30 min); `make bench BENCH=quick`: 3 seeds, fat-tree.
BENCH ?= full

.PHONY: setup demo test test-unit lint experiment sweep bench bench-core bench-k8 bench-twin bench-optical bench-twin-scale bench-fidelity bench-scale chaos clean schema

setup:
	@./scripts/setup.sh

demo: setup
	$(PY) -m fabric.runner experiments/demo.yaml --results $(RESULTS)

experiment: setup
	$(PY) -m fabric.runner $(SPEC) --results $(RESULTS)

sweep: setup
	$(PY) -m fabric.sweep $(SWEEP_SPEC) --results $(RESULTS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	.venv/bin/ruff check .

# docs/schema/*.json from the models of fabric/config.py (tests/test_schema.py checks them).
schema: setup
	$(PY) -m fabric.schema --write docs/schema

test-unit: setup
	$(PY) -m pytest -m "not emulation" $(PYTEST_ARGS)

bench: setup
	$(PY) -m bench.policies $(if $(filter quick,$(BENCH)),--quick,) --results $(RESULTS)

bench-core: setup
	$(PY) -m bench.core_bench --results $(RESULTS)

bench-k8: setup
	$(PY) -m bench.alltoall_k8 --results $(RESULTS)

bench-twin: setup
	$(PY) -m bench.twin_bench $(if $(filter quick,$(BENCH)),--quick,) --results $(RESULTS)

bench-optical: setup
	$(PY) -m bench.optical --results $(RESULTS)

bench-twin-scale: setup
	$(PY) -m bench.twin_scale --results $(RESULTS)

bench-fidelity: setup
	$(PY) -m fabric.runner experiments/fidelity.yaml --results $(RESULTS)

bench-scale: setup
	$(PY) -m bench.scale --k 8 --results $(RESULTS)

# Seeded faults while an all-to-all and a training iteration run, then a 30-run teardown soak.
chaos: setup
	$(PY) -m fabric.chaos $(if $(filter file,$(origin SPEC)),,$(SPEC)) --results $(RESULTS)

clean: setup
	$(PY) -m fabric.cleanup
