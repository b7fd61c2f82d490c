# The two commands a newcomer needs: `make demo` and `make test`.
# Both build .venv/ first if it is missing or out of date.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: install demo test test-adoption test-fast bench bench-purge bench-cluster bench-commands clean

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

# The adoption path, as a user meets it: the wheel, installed into a fresh
# virtualenv with a third-party project (examples/bookshelf), whose own tests
# run there: its spider by name through the test web, and the commands.
ADOPT := .venv-adopt
test-adoption: $(STAMP)
	rm -rf dist $(ADOPT)
	$(BIN)/python -m pip wheel --quiet --no-deps -w dist .
	$(PYTHON) -m venv $(ADOPT)
	$(ADOPT)/bin/python -m pip install --quiet --upgrade pip
	$(ADOPT)/bin/python -m pip install --quiet dist/ethical_crawler-*.whl pytest
	cd examples/bookshelf && ../../$(ADOPT)/bin/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/crawl_speed.py

bench-purge: $(STAMP)
	$(BIN)/python bench/purge_speed.py

bench-cluster: $(STAMP)
	$(BIN)/python bench/cluster_speed.py

bench-commands: $(STAMP)
	$(BIN)/python bench/command_startup.py

clean:
	rm -rf $(VENV) $(ADOPT) var build dist *.egg-info .pytest_cache
