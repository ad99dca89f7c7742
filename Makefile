# Set-up in three commands: `make install` (fresh venv, pinned torch, the package with its test extras), `make demo`
# (a video detector on the clip shipped with vfe_hub), `make test` (the full suite; `make test-fast` skips the slow
# tests). `make gpu-check` is the GPU proof on a CUDA machine (docs/precision.md).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test test-fast gpu-check
install:
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1 -e ".[test]"

demo:
	$(VENV)/bin/vfe-hub demo

test:
	$(PY) -m pytest -q

test-fast:
	$(PY) -m pytest -q -m "not slow"

gpu-check:
	$(PY) benchmarks/gpu_check.py
