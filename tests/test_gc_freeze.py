"""COMPLIANCE_GC_FREEZE: what start-up built is kept out of the garbage collector's full passes while crawls run."""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.extensions.lifecycle import _StartupFreeze
from crawler.testing.runner import FAST_SETTINGS, scrapy_command
from crawler.testing.sites import TEST_CONTACT, robots
from crawler.testing.web import StaticSite, TestWeb

#: A spider of a user's project: it reports, from inside the crawl, how many objects the collector leaves alone.
SPIDER = """
import gc
import scrapy

class Frozen(scrapy.Spider):
    name = "frozen"
    start_urls = ["http://gc.test/"]

    def parse(self, response):
        yield {"title": "frozen", "text": f"frozen objects: {gc.get_freeze_count()}"}
"""


@pytest.fixture
def gc_web() -> Iterator[TestWeb]:
    site = StaticSite({"/robots.txt": robots("User-agent: *\nAllow: /\n"), "/": "<html><title>t</title><p>one page</p></html>"})
    with TestWeb({"gc.test": site}) as server:
        yield server


def _frozen_during_crawl(web: TestWeb, tmp_path: Path, policy_dir: Path, guard_env: dict, **settings: object) -> int:
    spider = tmp_path / "frozen_spider.py"
    spider.write_text(SPIDER)
    store = tmp_path / f"store-{len(list(tmp_path.glob('store-*')))}.sqlite3"
    done = scrapy_command(["runspider", str(spider)], web=web, env=guard_env, settings={
        **FAST_SETTINGS, "COMPLIANCE_CONTACT": TEST_CONTACT, "COMPLIANCE_STORE": f"sqlite:///{store}",
        "COMPLIANCE_POLICY_DIR": str(policy_dir), "COMPLIANCE_DATA_DIR": str(tmp_path / "var"), **settings})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    with sqlite3.connect(store) as conn:
        [(text,)] = conn.execute("SELECT text FROM items").fetchall()
    return int(text.removeprefix("frozen objects: "))


def test_a_crawl_freezes_what_start_up_built_unless_told_not_to(gc_web: TestWeb, tmp_path: Path, policy_dir: Path, guard_env: dict) -> None:
    """Seen from the spider's callback: tens of thousands of start-up objects frozen by default, none with the setting off."""
    assert _frozen_during_crawl(gc_web, tmp_path, policy_dir, guard_env) > 10_000
    assert _frozen_during_crawl(gc_web, tmp_path, policy_dir, guard_env, COMPLIANCE_GC_FREEZE=False) == 0


def test_the_freeze_lasts_while_any_crawl_of_the_process_runs() -> None:
    """Two crawls at once freeze once; the objects are given back when the last closes, not before."""
    assert gc.get_freeze_count() == 0
    try:
        _StartupFreeze.opened()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        _StartupFreeze.opened()
        assert gc.get_freeze_count() >= frozen  # not frozen again, not thawed
        _StartupFreeze.closed()
        assert gc.get_freeze_count() >= frozen
        _StartupFreeze.closed()
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


def test_a_process_that_froze_objects_itself_is_left_frozen() -> None:
    """A server that called gc.freeze() before starting a crawl keeps its freeze when the crawl ends."""
    gc.freeze()
    try:
        own = gc.get_freeze_count()
        _StartupFreeze.opened()
        _StartupFreeze.closed()
        assert gc.get_freeze_count() >= own > 0
    finally:
        gc.unfreeze()
