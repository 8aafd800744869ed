PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow lint bench bench-gpu sweep-demo clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: a bare 'torch' requirement would pull a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/noisescope demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples scripts
	$(BIN)/python -m pytest -q --durations=15

test-slow: $(STAMP)
	$(BIN)/pip install -q 'ray[default]>=2.9'
	$(BIN)/python -m pytest -q -m slow

sweep-demo: $(STAMP)
	$(BIN)/noisescope sweep sweep_demo --workers 2
	$(BIN)/noisescope report sweeps/sweep_demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples scripts

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

# The GPU figures (packing, the device pipeline), for whenever a CUDA machine is lent: one
# prepared command, each part capped so the whole fits in 8 minutes (a part that hits its cap
# prints what it measured so far and the target goes on). GPU_PY: the interpreter to use.
GPU_PY ?= $(BIN)/python
bench-gpu:
	$(GPU_PY) -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
	-timeout 270 $(GPU_PY) benchmarks/bench_packed.py --gpu-only --ks 1 4 8 16 --sweep-repeats 1
	-timeout 190 $(GPU_PY) benchmarks/bench_pipeline.py --gpu-only

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
