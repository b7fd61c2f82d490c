# The two commands a newcomer needs: `make demo` and `make test`.
# Both build .venv/ first if it is missing or out of date.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: install demo test test-fast bench bench-purge bench-cluster clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python >= 3.11 is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m crawler.demo

test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q

bench: $(STAMP)
	$(BIN)/python bench/crawl_speed.py

bench-purge: $(STAMP)
	$(BIN)/python bench/purge_speed.py

bench-cluster: $(STAMP)
	$(BIN)/python bench/cluster_speed.py

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache
