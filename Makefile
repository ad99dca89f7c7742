# Set-up in two commands: `make install` (fresh venv, pinned torch, the package with its test extras), `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test
install:
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1 -e ".[test]"

test:
	$(PY) -m pytest -q
