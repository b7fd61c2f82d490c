"""The pytest plugin: anyone's spider, crawled with the compliance stack, checked by assertions that name offenders."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from crawler.testing.assertions import (
    assert_no_disallowed_fetch, assert_no_images, assert_no_requests_to, assert_nothing_stored_for, assert_refused,
    assert_stored,
)  # fmt: skip
from crawler.testing.plugin import ComplianceResult, hostile_sites
from crawler.testing.web import TestWeb

from example_spider import CarelessSpider


def test_a_users_spider_in_ten_lines(run_compliance_crawl) -> None:  # type: ignore[no-untyped-def]
    """The docs/testing.md example: a careless spider, crawled with the stack, is compliant."""
    result = run_compliance_crawl(CarelessSpider, ["http://shop.test/", "http://images.test/", "http://www.facebook.com/"]).check()
    assert_no_disallowed_fetch(result)
    assert_no_images(result)
    assert_no_requests_to(result, "facebook.com")
    assert_nothing_stored_for(result, "facebook.com")
    assert_stored(result, "http://shop.test/")
    assert_refused(result, "http://www.facebook.com/", "terms")
    assert result.paths("shop.test")[0] == "/robots.txt"
    assert int(result.stats["item_scraped_count"]) >= 1


def test_the_site_spider_by_name(run_compliance_crawl) -> None:  # type: ignore[no-untyped-def]
    """`"site"` runs the project's generic spider; the result holds its refusals with reasons."""
    result = run_compliance_crawl("site", ["http://shop.test/"]).check()
    assert_no_disallowed_fetch(result)
    assert_refused(result, "http://shop.test/members/list", "robots.disallow")


def _fetch_through(web: TestWeb, url: str) -> None:
    """A request straight through the proxy, as a non-compliant crawler would send it."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": web.proxy_url}))
    try:
        opener.open(url, timeout=5).read()
    except OSError:
        pass


def test_assertions_fail_naming_the_offender(tmp_path: Path) -> None:
    """Each assertion fails on a real violation the server saw, and its message names the request or item."""
    with TestWeb(hostile_sites()) as web:
        before = len(web.log)
        _fetch_through(web, "http://shop.test/members/list")
        _fetch_through(web, "http://images.test/photo.jpg")
        _fetch_through(web, "http://www.facebook.com/profile/1")
        result = ComplianceResult(0, "", "x", "", web, requests=web.log[before:],
                                  items=[{"url": "http://www.facebook.com/profile/1", "host": "www.facebook.com",
                                          "pic": "http://cdn.test/face.png"}])  # fmt: skip
        with pytest.raises(AssertionError, match=r"(?s)robots.txt disallows these.*GET http://shop.test/members/list"):
            assert_no_disallowed_fetch(result)
        with pytest.raises(AssertionError, match=r"(?s)image URLs were requested:\s+GET http://images.test/photo.jpg"):
            assert_no_images(result)
        result.requests = [e for e in result.requests if "images.test" not in e.host]
        with pytest.raises(AssertionError, match=r"(?s)field 'pic' = 'http://cdn.test/face.png'"):
            assert_no_images(result)
        with pytest.raises(AssertionError, match=r"(?s)facebook.com saw requests:\s+GET http://www.facebook.com/profile/1"):
            assert_no_requests_to(result, "facebook.com")
        with pytest.raises(AssertionError, match=r"(?s)items of facebook.com were stored:\s+http://www.facebook.com/profile/1"):
            assert_nothing_stored_for(result, "facebook.com")
        with pytest.raises(AssertionError, match=r"(?s)http://shop.test/ was not refused"):
            assert_refused(result, "http://shop.test/")
