# `make run`: set up and train the default job. `make test`: set up, run the test suite, build the docs strictly.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU machine gets the local CPU wheel; on a GPU machine use e.g. TORCH_SPEC='torch==2.13.0'
# from the CUDA index. Installing torch first keeps pip from pulling CUDA wheels as a dependency.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup run test docs bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e '.[test,docs]'
	touch $@

setup: $(VENV)/.installed

run: setup
	$(BIN)/gnn1000 train

test: setup
	$(BIN)/python -m pytest
	$(BIN)/mkdocs build --strict --site-dir build/site

docs: setup
	$(BIN)/mkdocs serve

bench: setup
	$(BIN)/python -m pytest tests/benchmarks --benchmark-enable

clean:
	rm -rf $(VENV) runs .pytest_cache .benchmarks .whl
