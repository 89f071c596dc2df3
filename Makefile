# Both entry points create .venv and install what they need on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_FLAGS ?= -q --disable-pip-version-check

.PHONY: demo test lint bench model clean

$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) -U pip
	$(PY) -m pip install $(PIP_FLAGS) -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(PY) -m pip install $(PIP_FLAGS) -e '.[dev,train]'
	touch $@

demo: $(VENV)/.runtime
	$(VENV)/bin/finsignal demo

test: $(VENV)/.dev
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q -ra

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy worker kb_sync

bench: $(VENV)/.dev
	$(VENV)/bin/finsignal bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
