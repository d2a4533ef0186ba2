# Two commands on a fresh machine:
#   make demo   trains NASS-SepFormer and its baseline on the mini WHAM! corpus
#   make test   creates the environment if needed and runs the whole suite
# The environment is requirements-lock.txt, installed exactly (uv pip sync:
# every package at its locked version and hash, nothing else); `make lock`
# rewrites the lock from requirements.txt.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
LOCK := requirements-lock.txt
UV_VERSION := $(shell sed -n 's/^uv==\([^ ]*\).*/\1/p' $(LOCK))

.PHONY: env demo test lint lock tables clean

env: $(STAMP)

$(STAMP): $(LOCK) pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(UV) pip sync --quiet --python $(PY) --require-hashes $(LOCK)
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
# The check imports every runtime dependency: keep their bytecode, even
# under PYTHONDONTWRITEBYTECODE, so that no later process compiles them.
	PYTHONDONTWRITEBYTECODE= $(PY) -m lobes.environment
	touch $(STAMP)

# Keeps every pin that still satisfies requirements.txt; to move every
# package to its newest allowed release: make lock LOCK_FLAGS=--upgrade
LOCK_FLAGS ?=
lock:
	test -x $(VENV)-lock/bin/uv || ( $(PYTHON) -m venv $(VENV)-lock && \
	    $(VENV)-lock/bin/pip install --quiet "uv==$(UV_VERSION)" )
	$(VENV)-lock/bin/uv pip compile requirements.txt $(LOCK_FLAGS) \
	    --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	    --generate-hashes --quiet -o $(LOCK)

demo: $(STAMP)
	$(PY) -m lobes.demo --out demo_output

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/yamllint -s .

tables: $(STAMP)
	$(PY) -m benchmarks.report

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/yamllint -s .
	$(PY) -m pytest -q --durations=15

clean:
	rm -rf $(VENV) $(VENV)-lock .pytest_cache .ruff_cache
