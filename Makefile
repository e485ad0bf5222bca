# Two entry points on a fresh machine (needs only python3 >= 3.10 and make):
#   make demo   set up .venv and run the main job: Meta-World demos -> training -> closed-loop eval -> report
#   make test   set up .venv and run the test suite
#   make bench  decoding latency of the three inference paths
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0 is pinned here (not in pyproject) so users can bring any CUDA/CPU build of their own.
TORCH ?= torch==2.13.0

.PHONY: setup demo test bench lint

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[all,test]"
	touch $@

demo: setup
	MUJOCO_GL=egl $(BIN)/gwp demo

bench: setup
	$(BIN)/gwp bench latency --preset bench

test: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q --durations=15

lint: setup
	$(BIN)/ruff check src tests benchmarks
