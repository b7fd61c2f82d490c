"""The gate before scheduling leaves to Scrapy's dupefilter what it will drop anyway, and nothing else."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from crawler.testing.plugin import ComplianceResult
from crawler.testing.sites import page, robots
from crawler.testing.web import StaticSite, TestWeb

PAGES = 30


@pytest.fixture
def web() -> Iterator[TestWeb]:
    """``PAGES`` pages, each linking to the next five and to one picture (an image URL the gate refuses)."""
    content: dict[str, object] = {
        f"/p/{i}": page(f"Page {i}", [*(f"/p/{(i + k) % PAGES}" for k in range(1, 6)), "/pic.png"]) for i in range(PAGES)
    }
    content["/robots.txt"] = robots("User-agent: *\nAllow: /\n")
    content["/pic.png"] = "not fetched"
    with TestWeb({"links.test": StaticSite(content)}) as server:  # type: ignore[arg-type]
        yield server


def test_links_to_queued_pages_skip_the_gate_but_refused_links_do_not(web: TestWeb, crawl: Callable[..., ComplianceResult]) -> None:
    """Every request the gate left to the dupefilter was one it dropped; a link to a refused URL is refused every time."""
    result = crawl(["http://links.test/p/0"]).check()
    stats = result.stats
    assert sorted(i["url"] for i in result.store.iter_items()) == sorted(f"http://links.test/p/{i}" for i in range(PAGES))
    skipped = int(stats["compliance/schedule/seen_skipped"])
    assert skipped == int(stats["dupefilter/filtered"]) > 0, stats
    # The picture was never queued (refused at the gate), so no page's link to it was left to the dupefilter.
    assert int(stats["compliance/refused/image.url"]) == PAGES, stats
    assert "/pic.png" not in {e.path for e in web.requests(host="links.test")}
