# Two commands on a fresh clone: `make demo` (the main job on embedded toy data) and `make test`.
# Every target creates the environment in .venv/ first when it is missing (scripts/setup_env.sh).
PY := .venv/bin/python

.PHONY: setup demo demo-seg test bench
setup:
	bash scripts/setup_env.sh

demo: setup
	bash scripts/demo.sh det

demo-seg: setup
	bash scripts/demo.sh seg

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) tools/benchmark.py
