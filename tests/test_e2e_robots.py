"""End-to-end: real crawls through the CLI; the test web's access log is the oracle."""

from __future__ import annotations

import sqlalchemy as sa

from crawler.compliance.store import refusals
from crawler.testing.sites import TEST_CONTACT

UA = f"EthicalCrawler/0.1.0 (+{TEST_CONTACT})"


def refusal_reasons(run) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with run.store.engine.connect() as conn:
        return {r.url: r.reason for r in conn.execute(sa.select(refusals))}


def test_disallowed_paths_never_requested(web, crawl) -> None:
    """Disallowed paths are never fetched; allowed ones, robots.txt and same-domain hosts are."""
    run = crawl(["http://shop.test/"]).check()
    paths = web.paths("shop.test")
    assert paths[0] == "/robots.txt" and paths.count("/robots.txt") == 1
    assert "/private/secret" not in paths and "/members/list" not in paths
    assert {"/", "/about", "/products/1", "/products/2", "/private/ok", "/report.pdf"} <= set(paths)
    assert sorted(web.paths("blog.shop.test")) == sorted(["/robots.txt", "/.well-known/tdmrep.json", "/", "/post"])
    assert web.paths("other.test") == []
    assert {e.user_agent for e in web.log} == {UA}
    reasons = refusal_reasons(run)
    assert reasons["http://shop.test/private/secret"] == "robots.disallow"
    assert reasons["http://shop.test/members/list"] == "robots.disallow"
    assert "compliance/refused/robots.disallow': 2" in run.stderr
    # One item per HTML page; the PDF produced none.
    stored = {item["url"] for item in run.store.iter_items()}
    assert "http://shop.test/report.pdf" not in stored
    assert {"http://shop.test/", "http://shop.test/private/ok", "http://blog.shop.test/post"} <= stored


def test_unreachable_robots_blocks_the_host(web, crawl) -> None:
    """503, 429, a hanging and a dropped robots.txt each leave the host untouched but for robots.txt."""
    run = crawl(
        ["http://down.test/", "http://busy.test/", "http://hang.test/", "http://drop.test/", "http://open.test/"],
        {"DOWNLOAD_TIMEOUT": 1},
    ).check()
    for host in ("down.test", "busy.test", "hang.test", "drop.test"):
        paths = web.paths(host)
        assert set(paths) == {"/robots.txt"}, (host, paths)
        # Twisted's HTTP client resends a request once, by itself, when a
        # pooled keep-alive connection dies before any response: a dropped
        # connection can show up twice. Our own middleware never refetches.
        assert len(paths) <= (2 if host == "drop.test" else 1), (host, paths)
    assert refusal_reasons(run)["http://down.test/"] == "robots.unreachable"
    assert refusal_reasons(run)["http://hang.test/"] == "robots.unreachable"
    # 404: everything may be fetched.
    assert sorted(web.paths("open.test")) == sorted(["/robots.txt", "/.well-known/tdmrep.json", "/", "/a", "/b"])


def test_redirected_robots_applies_to_original_host(web, crawl) -> None:
    """robots.txt redirects are followed for 5 hops (not 6) within the crawl's domains; one leaving them is not followed.

    A redirect hop of a well-known file obeys the offsite filter like a
    page's redirect (issue #15): the robots.txt of moved.test lives on
    rules.test, outside the crawl, so it is unreachable and moved.test is
    not crawled (fail closed).
    """
    run = crawl(["http://moved.test/", "http://five.test/", "http://loop.test/"]).check()
    assert web.paths("moved.test") == ["/robots.txt"]
    assert web.paths("rules.test") == []
    assert refusal_reasons(run)["http://moved.test/"] == "robots.unreachable"
    five = web.paths("five.test")
    assert "/no/x" not in five and "/yes" in five
    assert [p for p in web.paths("loop.test") if not p.startswith(("/robots.txt", "/r"))] == []
    assert refusal_reasons(run)["http://loop.test/"] == "robots.unreachable"


def test_crawl_delay_paces_requests(web, crawl) -> None:
    """Gaps between requests to a Crawl-delay host are never shorter than the delay; Request-rate too."""
    crawl(["http://slow.test/", "http://rate.test/"]).check()
    for host, delay in (("slow.test", 0.6), ("rate.test", 0.5)):
        times = [e.time for e in web.requests(host=host)]
        assert len(times) >= 4, host
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert min(gaps) >= delay - 0.02, (host, gaps)


def test_excessive_crawl_delay_skips_host(web, crawl) -> None:
    """A Crawl-delay above COMPLIANCE_MAX_CRAWL_DELAY skips the host with a logged reason."""
    run = crawl(["http://glacial.test/"]).check()
    assert web.paths("glacial.test") == ["/robots.txt"]
    assert refusal_reasons(run)["http://glacial.test/"] == "robots.crawl-delay-too-long"
    assert "Crawl-delay 3600s > COMPLIANCE_MAX_CRAWL_DELAY 30s" in run.stderr


def test_robots_ttl_refetch(web, crawl, tmp_path) -> None:
    """robots.txt is fetched once within the TTL and again after it."""
    from crawler.testing.sites import ttl_site

    web.add_site("ttl.test", ttl_site())
    crawl(["http://ttl.test/", "http://slow.test/"], {"COMPLIANCE_ROBOTS_TTL": 1.5}).check()
    assert web.paths("ttl.test").count("/robots.txt") >= 2
    web.clear_log()
    crawl(["http://slow.test/"]).check()
    assert web.paths("slow.test").count("/robots.txt") == 1


def test_parse_limit(web, crawl) -> None:
    """Rules beyond the first 500 KiB of robots.txt are not applied."""
    crawl(["http://big.test/"]).check()
    paths = web.paths("big.test")
    assert "/early/x" not in paths and "/late/x" in paths


def test_http_and_https_have_separate_robots(web, crawl) -> None:
    """Each scheme's robots.txt governs only that scheme."""
    crawl(["http://dual.test/", "https://dual.test/"]).check()
    http_paths, https_paths = web.paths("dual.test", scheme="http"), web.paths("dual.test", scheme="https")
    assert http_paths.count("/robots.txt") == 1 and https_paths.count("/robots.txt") == 1
    assert "/http-secret/x" not in http_paths and "/https-secret/x" in http_paths
    assert "/https-secret/x" not in https_paths and "/http-secret/x" in https_paths


def test_registered_domain_scope(web, crawl) -> None:
    """Links within the start URL's registered domain are followed, others are not."""
    run = crawl(["http://news.test/"]).check()
    assert "/local" in web.paths("a.news.test")
    assert web.paths("elsewhere.test") == []
    domains = {item["domain"] for item in run.store.iter_items()}
    assert domains == {"news.test"}


def test_missing_contact_refuses_to_start(web, crawl) -> None:
    """Without COMPLIANCE_CONTACT the crawl exits non-zero, says what to set, and sends nothing."""
    run = crawl(["http://shop.test/"], contact=False)
    assert run.returncode == 2
    assert "COMPLIANCE_CONTACT is not set" in run.stderr and "Traceback" not in run.stderr
    assert web.log == []


def test_robotstxt_obey_true_means_our_enforcement(web, crawl) -> None:
    """ROBOTSTXT_OBEY = True (Scrapy's template) is accepted, said once, and robots.txt is fetched once, by us."""
    run = crawl(["http://shop.test/"], {"ROBOTSTXT_OBEY": True}).check()
    assert run.stderr.count("ROBOTSTXT_OBEY = True: robots.txt is obeyed by the compliance stack") == 1
    paths = [e.path for e in web.log if e.host == "shop.test"]
    assert paths.count("/robots.txt") == 1 and paths[0] == "/robots.txt"
    assert "/private/secret" not in paths and "Traceback" not in run.stderr


def test_no_disallowed_fetch_on_any_robots_host(run_compliance_crawl) -> None:  # type: ignore[no-untyped-def]
    """Through the pytest plugin users get: every robots.txt edge-case host, and not one disallowed fetch."""
    from crawler.testing.assertions import assert_no_disallowed_fetch, assert_refused
    from crawler.testing.sites import robots_sites

    hosts = sorted(h for h in robots_sites() if ":" not in h and not h.startswith(("https", "http")))
    result = run_compliance_crawl("site", [f"http://{h}/" for h in hosts]).check()
    assert_no_disallowed_fetch(result)
    assert_refused(result, "http://shop.test/private/secret", "robots.disallow")
    assert len({e.host for e in result.requests}) >= 8
