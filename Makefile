# Two commands on a fresh clone: `make demo` (the main job on embedded toy data) and `make test`.
# Every target creates the environment in .venv/ first when it is missing (scripts/setup_env.sh).
PY := .venv/bin/python

.PHONY: setup demo demo-seg demo-cls demo-hf test test-fast bench
setup:
	bash scripts/setup_env.sh

demo: setup
	bash scripts/demo.sh det

demo-seg: setup
	bash scripts/demo.sh seg

demo-cls: setup
	bash scripts/demo.sh cls

# a Hugging Face DiNAT folder (random DiNAT-Mini weights) in transformers and in mmpretrain: same top classes
demo-hf: setup
	$(PY) tools/make_toy_data.py hub data/toy_hub
	$(PY) tools/hf_compare.py data/toy_hub/model configs/imagenet/dinat_mini_in1k_224.py data/toy_hub/image.jpg

# Both tiers run on two pytest workers (pytest-xdist): most of a tool run is single-threaded
# importing, and each worker's torch gets one thread (tests/conftest.py).
test: setup
	$(PY) -m pytest -q -n 2 --dist loadgroup --durations=20 tests

# the unit tier, for after every change: everything but the tests marked slow (docs/development.md)
test-fast: setup
	$(PY) -m pytest -q -n 2 --dist loadgroup -m "not slow" tests

bench: setup
	$(PY) -m benchmarks
