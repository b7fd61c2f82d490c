"""Shared fixtures: the test web, a fresh store, and crawls through the real CLI.

No test touches the internet: this process and every crawl subprocess load
crawler/testing/netguard/sitecustomize.py, which refuses any name or address other
than 127.0.0.1, and made-up hosts are reached through the test web's proxy.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

# One harness: the guard, the runner and the test web are the ones the
# pytest plugin (crawler/testing/plugin.py) ships to users.
from crawler.testing.plugin import NETGUARD  # noqa: E402

sys.path.insert(0, str(NETGUARD))
import sitecustomize  # noqa: E402,F401  (installs the guard in this process)

from crawler.testing.plugin import ComplianceResult, run_crawl, serving  # noqa: E402
from crawler.testing.runner import policy_dir_with_pace  # noqa: E402
from crawler.testing.sites import robots_sites  # noqa: E402
from crawler.testing.web import TestWeb  # noqa: E402

GUARD_ENV = {"PYTHONPATH": os.pathsep.join(filter(None, [str(NETGUARD), os.environ.get("PYTHONPATH", "")]))}


@pytest.fixture
def web() -> Iterator[TestWeb]:
    """The robots.txt test web; fails the test if anything asked for an unknown host."""
    with serving(robots_sites()) as server:
        yield server


@pytest.fixture
def guard_env() -> dict[str, str]:
    """Environment for a crawl subprocess: the network guard on its path."""
    return dict(GUARD_ENV)


#: Where the PostgreSQL tests run (one fresh schema per test). On this
#: project's machines PostgreSQL listens on 127.0.0.1:5432 with trust auth.
POSTGRES_URL = os.environ.get("COMPLIANCE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("COMPLIANCE_REQUIRE_SERVICES") == "1"
_service_problems: dict[str, str | None] = {}


def service_unavailable(name: str, hint: str) -> None:
    """Skip (or, under COMPLIANCE_REQUIRE_SERVICES=1, fail) a test whose service is not reachable."""
    message = f"{name} is not reachable: {_service_problems[name]}. {hint}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (COMPLIANCE_REQUIRE_SERVICES=1: services are required)")
    pytest.skip(message)


def postgres_schema_url() -> Iterator[str]:
    """A store URL on PostgreSQL whose tables live in a fresh schema, dropped afterwards."""
    import uuid

    import sqlalchemy as sa

    if "postgresql" not in _service_problems:
        try:
            engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
            with engine.connect():
                pass
            engine.dispose()
            _service_problems["postgresql"] = None
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            _service_problems["postgresql"] = str(exc).splitlines()[0]
    if _service_problems["postgresql"] is not None:
        service_unavailable(
            "postgresql", f"Start PostgreSQL on 127.0.0.1:5432 (e.g. `service postgresql start`) or point "
            f"COMPLIANCE_TEST_POSTGRES at one (now {POSTGRES_URL})",
        )  # fmt: skip
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A fresh SQLite store for crawl-behaviour tests (the store-level suites use ``any_store_url``)."""
    return f"sqlite:///{tmp_path / 'store.sqlite3'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store: every test that takes it runs on both engines."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite3'}"
    else:
        yield from postgres_schema_url()


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """The shipped platform policies with a fast default pace, in a directory the test may edit."""
    return policy_dir_with_pace(tmp_path / "policies")


@pytest.fixture
def crawl(web: TestWeb, store_url: str, policy_dir: Path, tmp_path: Path) -> Callable[..., ComplianceResult]:
    """Run ``scrapy crawl site`` against the test web into the test's store, with the plugin's runner (one harness)."""

    def run(urls: Sequence[str], settings: dict[str, Any] | None = None, contact: bool = True) -> ComplianceResult:
        merged = {"COMPLIANCE_POLICY_DIR": str(policy_dir), "COMPLIANCE_STORE": store_url, **(settings or {})}
        return run_crawl(web, "site", urls, tmp_path, merged, contact=contact)

    return run
