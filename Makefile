# The two commands a newcomer needs: `make demo` and `make test`.
# Both build .venv/ first if it is missing or out of date.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Three workers on two cores: the end-to-end tests wait on subprocesses and servers
# (measured 2026-12-02, one quiet machine: 2 workers 11:50, 3 workers 10:22, 4 workers 11:18).
PYTEST_WORKERS ?= 3
# Exact versions for a reproducible .venv/ (pyproject.toml has the ranges).
CONSTRAINTS := requirements/constraints.txt
# The lowest versions pyproject.toml declares, tested in .venv-lowest/.
LOWEST := requirements/lowest.txt
LOWEST_VENV := .venv-lowest
LOWEST_STAMP := $(LOWEST_VENV)/.installed
# The pure core and the components, on the lowest versions: every floor in
# pyproject.toml is exercised here (robots.txt and Protego, policies and
# pydantic, opt-outs and http-sf, the store on SQLite and PostgreSQL with
# SQLAlchemy and psycopg, cassettes with vcrpy and requests), not the long
# end-to-end crawls.
LOWEST_TESTS := tests/test_robots_core.py tests/test_robots_conformance.py tests/test_patterns.py \
	tests/test_domains_identity.py tests/test_policy.py tests/test_notices.py tests/test_optouts.py \
	tests/test_images.py tests/test_components.py tests/test_store.py tests/test_cassettes.py \
	tests/test_dependencies.py tests/test_identity.py

.PHONY: install demo test test-adoption test-lowest lock stress-cluster bench bench-purge bench-ledger bench-cluster bench-commands bench-memory clean

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@$(PYTHON) -c 'import sys; sys.exit("Python >= 3.11 is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[test,cluster]'
	@touch $(STAMP)

$(LOWEST_STAMP): pyproject.toml $(LOWEST)
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOWEST_VENV)/bin/python -m pip install --quiet -c $(LOWEST) -e '.[test,cluster]'
	@touch $(LOWEST_STAMP)

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
	$(ADOPT)/bin/python -m pip install --quiet -c $(CONSTRAINTS) dist/ethical_crawler-*.whl pytest
	cd examples/bookshelf && ../../$(ADOPT)/bin/python -m pytest -q

# The fast part of the suite against the lowest declared versions (CI runs it after `make test`).
test-lowest: $(LOWEST_STAMP)
	$(LOWEST_VENV)/bin/python -m pytest -n $(PYTEST_WORKERS) -q -p no:cacheprovider $(LOWEST_TESTS)

# Refresh $(CONSTRAINTS): the newest versions pyproject.toml allows, then `make test`.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet -e '.[test,cluster]'
	{ sed -n '/^#/p' $(CONSTRAINTS); .venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^#'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf .venv-lock

# Not in `make test` (about 15 s a run): a worker killed between its store
# write and its lease release, 20 times in a row; each run must store every page once.
stress-cluster: $(STAMP)
	for run in $$(seq 1 20); do \
		echo "stress-cluster: run $$run of 20"; \
		COMPLIANCE_REQUIRE_SERVICES=1 $(BIN)/python -m pytest -q -x tests/test_cluster.py \
			-k test_a_worker_killed_after_storing_before_releasing_stores_each_page_once || exit 1; \
	done

bench: $(STAMP)
	$(BIN)/python bench/crawl_speed.py

bench-purge: $(STAMP)
	$(BIN)/python bench/purge_speed.py

# A million entries in the transparency log; proofs at that size (LEDGER_BENCH_ARGS=--quick: 20,000).
bench-ledger: $(STAMP)
	$(BIN)/python bench/ledger_scale.py $(LEDGER_BENCH_ARGS)

bench-cluster: $(STAMP)
	$(BIN)/python bench/cluster_speed.py

bench-commands: $(STAMP)
	$(BIN)/python bench/command_startup.py

bench-memory: $(STAMP)
	$(BIN)/python bench/hostile_memory.py

clean:
	rm -rf $(VENV) $(ADOPT) $(LOWEST_VENV) var build dist *.egg-info .pytest_cache
