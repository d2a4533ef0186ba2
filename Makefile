# Two commands on a fresh machine:
#   make demo   trains NASS-SepFormer and its baseline on the mini WHAM! corpus
#   make test   creates the environment if needed and runs the whole suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: env demo test lint clean

env: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m lobes.demo --out demo_output

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/yamllint -s .

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/yamllint -s .
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
