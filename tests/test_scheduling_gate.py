"""The gate before scheduling remembers the URLs it allowed; refusals and notice domains are decided every time."""

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


def test_links_to_allowed_pages_are_remembered_but_refused_links_are_not(web: TestWeb, crawl: Callable[..., ComplianceResult]) -> None:
    """Every link the gate let through from memory was a repeat the dupefilter dropped; a link to a refused URL is refused every time."""
    result = crawl(["http://links.test/p/0"]).check()
    stats = result.stats
    assert sorted(i["url"] for i in result.store.iter_items()) == sorted(f"http://links.test/p/{i}" for i in range(PAGES))
    skipped = int(stats["compliance/schedule/remembered"])
    assert skipped == int(stats["dupefilter/filtered"]) > 0, stats
    # The picture is refused at the gate, so never remembered: every page's link to it is refused again.
    assert int(stats["compliance/refused/image.url"]) == PAGES, stats
    assert "/pic.png" not in {e.path for e in web.requests(host="links.test")}


def test_a_domain_named_by_a_notice_is_decided_at_every_link(web: TestWeb, crawl: Callable[..., ComplianceResult], policy_dir) -> None:  # type: ignore[no-untyped-def]
    """A notice not yet in force names links.test: its URLs are allowed today, but never from memory
    (the notice could take effect between two links), so nothing is remembered and the crawl is whole."""
    (policy_dir / "notices").mkdir(exist_ok=True)
    (policy_dir / "notices" / "later.yaml").write_text(
        "id: later\nsender_name: Links Inc.\ndate_received: 2026-11-20\nscope: {domains: [links.test]}\n"
        "effective_at: 2999-01-01T00:00:00Z\n", encoding="utf-8")  # fmt: skip
    result = crawl(["http://links.test/p/0"]).check()
    stats = result.stats
    assert int(stats["compliance/schedule/remembered"]) == 0 and int(stats["dupefilter/filtered"]) > 0, stats
    assert len(list(result.store.iter_items())) == PAGES
