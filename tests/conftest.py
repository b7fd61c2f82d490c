"""Shared fixtures: the test web, a fresh store, and crawls through the real CLI.

No test touches the internet: this process and every crawl subprocess load
tests/netguard/sitecustomize.py, which refuses any name or address other
than 127.0.0.1, and made-up hosts are reached through the test web's proxy.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

NETGUARD = Path(__file__).parent / "netguard"
sys.path.insert(0, str(NETGUARD))
import sitecustomize  # noqa: E402,F401  (installs the guard in this process)

from crawler.testing.runner import CrawlRun, policy_dir_with_pace, run_site_crawl  # noqa: E402
from crawler.testing.sites import robots_sites  # noqa: E402
from crawler.testing.web import TestWeb  # noqa: E402

GUARD_ENV = {"PYTHONPATH": os.pathsep.join(filter(None, [str(NETGUARD), os.environ.get("PYTHONPATH", "")]))}


@pytest.fixture
def web() -> Iterator[TestWeb]:
    """The robots.txt test web; fails the test if anything asked for an unknown host."""
    with TestWeb(robots_sites()) as server:
        yield server
        unknown = server.unknown_hosts()
        assert not unknown, f"requests for hosts the test web does not serve: {unknown}"


@pytest.fixture
def guard_env() -> dict[str, str]:
    """Environment for a crawl subprocess: the network guard on its path."""
    return dict(GUARD_ENV)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.sqlite3'}"


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """The shipped platform policies with a fast default pace, in a directory the test may edit."""
    return policy_dir_with_pace(tmp_path / "policies")


@pytest.fixture
def crawl(web: TestWeb, store_url: str, policy_dir: Path) -> Callable[..., CrawlRun]:
    """Run ``scrapy crawl site`` against the test web, guarded, into the test's store."""

    def run(urls: Sequence[str], settings: dict[str, Any] | None = None, **kwargs: Any) -> CrawlRun:
        merged = {"COMPLIANCE_POLICY_DIR": str(policy_dir), **(settings or {})}
        return run_site_crawl(web, urls, store_url, settings=merged, env=GUARD_ENV, **kwargs)

    return run
