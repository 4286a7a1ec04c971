# Two commands on a fresh clone: `make demo` (the main job on embedded toy data) and `make test`.
# Both create the environment in .venv/ first when it is missing (scripts/setup_env.sh).
PY := .venv/bin/python

.PHONY: setup test bench
setup:
	bash scripts/setup_env.sh

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) tools/benchmark.py
