"""End to end: a host in distress is paused, backed off and skipped, as its access log shows.

Gaps are measured on the test web's own clock: an access-log entry's time is
when its request line was read, so the gap between a failing answer's entry
and the next request's entry is at least the pause the crawler took after
receiving the answer. TOLERANCE covers only timer granularity (asyncio may
wake a hair early), not machine speed: a busy machine makes gaps longer,
never shorter. Each host allows one request at a time (the policy's
max_concurrency 1): a request already on the wire when a host fails cannot
be recalled, and the pause is about what is sent after.
"""

from __future__ import annotations

import re
import threading
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

from crawler.testing.runner import policy_dir_with_pace
from crawler.testing.web import Site, WebRequest, WebResponse, html, text

#: Seconds a measured gap may fall short of the pause (timer granularity only).
TOLERANCE = 0.02
ROBOTS = text("User-agent: *\nAllow: /\n")


class Scripted(Site):
    """Answers each path from a list of responses, one per request; the last one repeats."""

    def __init__(self, script: dict[str, list[WebResponse]]) -> None:
        self.script = script
        self.served: dict[str, int] = {}
        self.lock = threading.Lock()

    def handle(self, req: WebRequest) -> WebResponse:
        if req.path == "/robots.txt":
            return ROBOTS
        answers = self.script.get(req.path)
        if answers is None:
            return text("not found\n", status=404)
        with self.lock:
            n = self.served[req.path] = self.served.get(req.path, -1) + 1
        return answers[min(n, len(answers) - 1)]


def one_at_a_time(tmp_path: Path) -> Path:
    return policy_dir_with_pace(tmp_path / "one-at-a-time", 0, 1)


def gaps_after(entries: list[Any], status_filter: Any) -> list[tuple[Any, float]]:
    """(failing entry, seconds until the host's next request) for each entry matching ``status_filter``."""
    found = []
    for entry, following in zip(entries, entries[1:]):
        if status_filter(entry.status):
            found.append((entry, following.time - entry.time))
    return found


def created_of(req: WebRequest) -> int:
    return int(re.search(r";created=(\d+)", req.headers["signature-input"]).group(1))  # type: ignore[union-attr]


def test_retry_after_pauses_the_host_for_what_it_asks(web, crawl, tmp_path: Path) -> None:
    """503 Retry-After: 2 once: the host sees no request for 2 s; the retry is re-signed after the pause; stat and log line."""
    site = Scripted({
        "/": [WebResponse(503, [("Retry-After", "2")], "busy"), html('<a href="/next">next</a>')],
        "/next": [html("next page")],
    })  # fmt: skip
    web.add_site("busy.test", site)
    seen: list[WebRequest] = []
    web.request_verifier = lambda req: seen.append(req) or ""
    run = crawl(["http://busy.test/"], {"RETRY_ENABLED": True, "COMPLIANCE_POLICY_DIR": str(one_at_a_time(tmp_path))}).check()
    log = [e for e in web.log if e.host == "busy.test"]
    assert [(e.path, e.status) for e in log if e.path in ("/", "/next")] == [("/", 503), ("/", 200), ("/next", 200)]
    [(failed, gap)] = gaps_after(log, lambda status: status == 503)
    assert gap >= 2 - TOLERANCE, f"the host was asked again {gap:.3f}s after its 503 Retry-After: 2"
    # The retry was signed when it left after the pause, not when RetryMiddleware made it.
    retry = [r for r in seen if r.host == "busy.test" and r.path == "/"][1]
    assert created_of(retry) >= int(failed.time + 2 - TOLERANCE)
    assert run.stats["compliance/courtesy/paused/retry-after"] == "1"
    assert run.log.count("Pausing host busy.test for 2s (retry-after): HTTP 503 with Retry-After 2s, failure 1 in a row") == 1
    assert run.items and {i["url"] for i in run.items} == {"http://busy.test/", "http://busy.test/next"}


def test_repeated_failures_back_off_exponentially_and_a_success_resets(web, crawl, tmp_path: Path) -> None:
    """A host failing five times sees growing gaps (each at least its back-off); one that recovers starts again at one."""
    failing = [WebResponse(500), WebResponse(503), WebResponse(502), WebResponse(429), WebResponse(504)]
    web.add_site("failing.test", Scripted({"/": failing}))
    web.add_site("recovers.test", Scripted({
        "/": [WebResponse(500), WebResponse(500), html('<a href="/a">a</a>')],
        "/a": [WebResponse(503), html("a")],
    }))  # fmt: skip
    base = 0.2
    run = crawl(
        ["http://failing.test/", "http://recovers.test/"],
        {"RETRY_ENABLED": True, "RETRY_TIMES": 4, "COMPLIANCE_BACKOFF_BASE": base, "COMPLIANCE_BACKOFF_MAX": 10,
         "COMPLIANCE_POLICY_DIR": str(one_at_a_time(tmp_path))},
    ).check()  # fmt: skip
    log = [e for e in web.log if e.host == "failing.test" and e.path == "/"]
    assert [e.status for e in log] == [500, 503, 502, 429, 504]  # RetryMiddleware still retries: later, not sooner
    gaps = [b.time - a.time for a, b in zip(log, log[1:])]
    for n, gap in enumerate(gaps, 1):
        assert gap >= base * 2 ** (n - 1) - TOLERANCE, f"gap {n} after {n} failure(s) is {gap:.3f}s: {gaps}"
    failures = [int(n) for n in re.findall(r"Pausing host failing\.test for [\d.e+]+s \(backoff\): HTTP \d+, failure (\d+) in a row", run.log)]
    assert failures == [1, 2, 3, 4, 5]
    # The host that answered again after two failures starts its count over.
    counts = [int(n) for n in re.findall(r"Pausing host recovers\.test .*failure (\d+) in a row", run.log)]
    assert counts == [1, 2, 1], run.log
    assert "Host recovers.test answered again after 2 failure(s) in a row" in run.log
    # Eight pauses, all back-off (a 503 without Retry-After backs off too).
    assert run.stats["compliance/courtesy/paused/backoff"] == run.stats["compliance/courtesy/paused"] == "8"
    assert {i["url"] for i in run.items} == {"http://recovers.test/", "http://recovers.test/a"}


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_above_the_cap_skips_the_host_with_a_reason(web, crawl, tmp_path: Path, form: str) -> None:
    """Retry-After two hours (seconds or HTTP-date) with a 60 s cap: one request, not retried; the host's other pages are refused."""

    def closed(req: WebRequest) -> WebResponse:
        import time

        now = time.time()
        after = "7200" if form == "seconds" else formatdate(now + 7200, usegmt=True)
        return WebResponse(503, [("Retry-After", after), ("Date", formatdate(now, usegmt=True))], "closed for maintenance")

    class Closed(Site):
        def handle(self, req: WebRequest) -> WebResponse:
            if req.path == "/.well-known/tdmrep.json":
                return text("not found\n", status=404)
            return ROBOTS if req.path == "/robots.txt" else closed(req)

    web.add_site("closed.test", Closed())
    run = crawl(
        ["http://closed.test/", "http://closed.test/other", "http://closed.test/third"],
        {"RETRY_ENABLED": True, "COMPLIANCE_MAX_RETRY_AFTER": 60, "COMPLIANCE_POLICY_DIR": str(one_at_a_time(tmp_path))},
    ).check()  # fmt: skip
    pages = [e for e in web.log if e.host == "closed.test" and e.path not in ("/robots.txt", "/.well-known/tdmrep.json")]
    assert len(pages) == 1 and pages[0].status == 503, pages
    refused = {r["url"]: r for r in run.refusals if r["reason"] == "courtesy.retry-after-too-long"}
    assert set(refused) == {"http://closed.test/", "http://closed.test/other", "http://closed.test/third"}
    assert all("COMPLIANCE_MAX_RETRY_AFTER 60s" in r["rule"] for r in refused.values())
    assert all("HTTP 503 with Retry-After 7200s" in r["detail"] for r in refused.values())
    assert "Skipping host closed.test" in run.log
    assert run.stats["compliance/courtesy/skipped_hosts"] == "1"
    assert "retry/count" not in run.stats


class CountsInFlight(Site):
    """A host that counts the requests it is answering at once; its front page links to 12 pages.

    Each page is answered after 0.3 s, or, with ``wait_for``, once that many
    requests were in flight together (at most 10 s): then "they overlapped"
    is a fact the host saw, however slow the machine.
    """

    def __init__(self, wait_for: int = 0) -> None:
        self.changed = threading.Condition()
        self.now = 0
        self.most = 0
        self.wait_for = wait_for

    def handle(self, req: WebRequest) -> WebResponse:
        if req.path == "/robots.txt":
            return ROBOTS
        with self.changed:
            self.now += 1
            self.most = max(self.most, self.now)
            self.changed.notify_all()
        try:
            if self.wait_for and req.path != "/":
                with self.changed:
                    self.changed.wait_for(lambda: self.most >= self.wait_for, timeout=10)
            else:
                time.sleep(0.3)
        finally:
            with self.changed:
                self.now -= 1
        links = "".join(f'<a href="/p/{i}">page {i}</a>' for i in range(12)) if req.path == "/" else ""
        return html(f"<p>{req.path}</p>{links}")


@pytest.mark.parametrize("limit", [2, 8])
def test_a_policy_max_concurrency_is_held_with_no_delay(web, crawl, tmp_path: Path, limit: int) -> None:
    """max_concurrency N and min_delay 0: the host never answers more than N requests at once (counted by the host)."""
    # Under a limit of 8 the host holds each page until three are in flight together (see CountsInFlight).
    site = CountsInFlight(wait_for=3 if limit == 8 else 0)
    web.add_site("wide.test", site)
    policies = policy_dir_with_pace(tmp_path / f"at-most-{limit}", 0, limit)
    crawl(["http://wide.test/"], {"COMPLIANCE_POLICY_DIR": str(policies), "CONCURRENT_REQUESTS": 32,
                                 "CONCURRENT_REQUESTS_PER_DOMAIN": 32}).check()  # fmt: skip
    assert len([e for e in web.log if e.host == "wide.test" and e.path.startswith("/p/")]) == 12
    assert site.most <= limit, f"{site.most} requests in flight at once; the policy allows {limit}"
    if limit == 8:
        # The host does see requests side by side (so the bound above is the policy's, not a serial crawl).
        assert site.most > 2


def test_a_project_downloader_that_cannot_hold_the_pace_is_named(web, crawl, tmp_path: Path) -> None:
    """A project that sets its own DOWNLOADER (here Scrapy's) gets one warning naming it and what it risks."""
    web.add_site("wide.test", CountsInFlight())
    run = crawl(["http://wide.test/"], {"DOWNLOADER": "scrapy.core.downloader.Downloader",
                                       "COMPLIANCE_POLICY_DIR": str(policy_dir_with_pace(tmp_path / "p", 0, 2))}).check()  # fmt: skip
    assert "DOWNLOADER is scrapy.core.downloader.Downloader, not crawler.pacing.SlotBoundDownloader" in run.log


def test_the_crawl_checks_the_scrapy_downloader_it_relies_on() -> None:
    """The installed Scrapy's downloader has the method SlotBoundDownloader overrides; one that lacks it is named."""
    from scrapy.core.downloader import Downloader

    from crawler.pacing import downloader_problem

    assert downloader_problem() is None

    class Renamed(Downloader):
        _wait_for_download = None  # type: ignore[assignment]

    class Reshaped(Downloader):
        async def _wait_for_download(self, slot: Any, request: Any) -> None:  # type: ignore[override]
            return None

    for changed in (Renamed, Reshaped):
        assert "has no _wait_for_download(slot, request, queue_dfd) coroutine" in (downloader_problem(changed) or "")
