"""Optional dependencies: the framework without the cluster extra, and one-line errors naming the extra.

Redis, scrapy-redis and psycopg are installed in the test environment, so each
test runs the real CLI in a subprocess whose imports of them fail exactly as
they would if they were not installed (a finder at the head of sys.meta_path).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from crawler.compliance.store import Store, StoreError
from crawler.testing.runner import FAST_SETTINGS, project_dir
from crawler.testing.sites import TEST_CONTACT
from crawler.testing.web import TestWeb

from conftest import GUARD_ENV

CLUSTER_PACKAGES = ("redis", "scrapy_redis", "psycopg")

# Runs `scrapy ARGS` (or, with no ARGS, only the imports) with PACKAGES missing.
_WITHOUT = """
import sys

class NotInstalled:
    names = set(sys.argv[1].split(","))

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] in cls.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled)
for name in NotInstalled.names:
    try:
        __import__(name)
    except ModuleNotFoundError:
        pass
    else:
        sys.exit(f"{name} could still be imported")
if len(sys.argv) > 2:
    from scrapy.cmdline import execute

    sys.argv = ["scrapy", *sys.argv[2:]]
    execute()
else:
    import crawler.addon, crawler.runtime, crawler.cluster, crawler.config  # noqa: E401
    import crawler.middlewares.robots, crawler.middlewares.tdmrep, crawler.extensions.cluster  # noqa: E401
    import crawler.pipelines.store, crawler.compliance.store, crawler.compliance.purge  # noqa: E401
    print("imported")
"""


def without(packages: Sequence[str], args: Sequence[str] = (), *, settings: Mapping[str, Any] | None = None,
            web: TestWeb | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``scrapy ARGS -s K=V ...`` in a subprocess where ``packages`` cannot be imported."""
    command = [sys.executable, "-c", _WITHOUT, ",".join(packages), *args]
    for name, value in (settings or {}).items():
        command += ["-s", f"{name}={value}"]
    env = {**os.environ, **GUARD_ENV, **(web.env() if web is not None else {})}
    return subprocess.run(command, cwd=project_dir(), env=env, capture_output=True, text=True, timeout=180, check=False)


def crawl_settings(store_url: str, policy_dir: Path, **extra: Any) -> dict[str, Any]:
    return {**FAST_SETTINGS, "COMPLIANCE_CONTACT": TEST_CONTACT, "COMPLIANCE_STORE": store_url,
            "COMPLIANCE_POLICY_DIR": str(policy_dir), **extra}  # fmt: skip


def test_framework_imports_without_the_cluster_extra() -> None:
    """The add-on, the runtime, every middleware and extension import without redis, scrapy-redis and psycopg."""
    done = without(CLUSTER_PACKAGES)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported"


def test_single_process_crawl_on_sqlite_without_the_cluster_extra(web: TestWeb, store_url: str, policy_dir: Path) -> None:
    """A normal crawl (robots.txt, pacing, the store on SQLite) runs without redis, scrapy-redis and psycopg."""
    done = without(CLUSTER_PACKAGES, ["crawl", "site", "-a", "url=http://shop.test/"],
                   settings=crawl_settings(store_url, policy_dir), web=web)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    paths = web.paths("shop.test")
    assert paths[0] == "/robots.txt" and "/private/secret" not in paths and "/about" in paths
    stored = {item["url"] for item in Store(store_url).iter_items()}
    assert {"http://shop.test/", "http://shop.test/about"} <= stored


def test_distributed_without_the_cluster_extra_is_one_line(web: TestWeb, store_url: str, policy_dir: Path) -> None:
    """COMPLIANCE_DISTRIBUTED without redis or scrapy-redis: one line naming the extra, non-zero exit, nothing fetched."""
    for missing in (["redis", "scrapy_redis"], ["scrapy_redis"]):
        settings = crawl_settings(store_url, policy_dir, COMPLIANCE_DISTRIBUTED=True, COMPLIANCE_CRAWL_ID="no-extra")
        done = without(missing, ["crawl", "site", "-a", "url=http://shop.test/"], settings=settings, web=web)
        assert done.returncode != 0
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, done.stderr[-3000:]
        assert "COMPLIANCE_DISTRIBUTED" in errors[0] and "pip install 'ethical-crawler[cluster]'" in errors[0]
        assert f"No module named '{missing[0]}'" in errors[0]
        assert "Traceback" not in done.stderr
    assert web.log == []


def test_postgresql_store_without_psycopg_is_one_line(web: TestWeb, policy_dir: Path) -> None:
    """A postgresql:// store without psycopg: one line naming the extra, from a crawl and from a command."""
    for url in ("postgresql://crawler@127.0.0.1:5432/compliance", "postgresql+psycopg://crawler@127.0.0.1:5432/compliance"):
        crawl = without(["psycopg"], ["crawl", "site", "-a", "url=http://shop.test/"],
                        settings=crawl_settings(url, policy_dir), web=web)  # fmt: skip
        items = without(["psycopg"], ["items", "count"], settings={"COMPLIANCE_STORE": url})
        for done in (crawl, items):
            assert done.returncode != 0
            errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
            assert len(errors) == 1, done.stderr[-3000:]
            assert "COMPLIANCE_STORE" in errors[0] and "No module named 'psycopg'" in errors[0]
            assert "pip install 'ethical-crawler[postgres]'" in errors[0] and "ethical-crawler[cluster]" in errors[0]
            assert "Traceback" not in done.stderr
    assert web.log == []


def test_store_url_without_a_driver_means_psycopg() -> None:
    """postgresql:// names no driver: the store uses psycopg (the extra's), not SQLAlchemy's default psycopg2."""
    from crawler.compliance.store import database_url

    assert database_url("postgresql://u@127.0.0.1/db").drivername == "postgresql+psycopg"
    assert database_url("postgresql+psycopg://u@127.0.0.1/db").drivername == "postgresql+psycopg"
    assert database_url("sqlite:///var/x.sqlite3").drivername == "sqlite"
    with pytest.raises(StoreError, match="COMPLIANCE_STORE: cannot use 'nosuchdb://x'"):
        database_url("nosuchdb://x")
