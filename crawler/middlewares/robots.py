"""robots.txt enforcement at download time, per RFC 9309.

Replaces Scrapy's RobotsTxtMiddleware, which allows everything when
robots.txt answers 5xx or times out, keeps a file for the whole crawl,
shares one file between http and https, and ignores Crawl-delay.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, NoReturn

from scrapy import Request, signals
from scrapy.exceptions import StopDownload

from crawler.compliance.decision import Decision
from crawler.compliance.robots import (
    MAX_PARSE_BYTES,
    RobotsCache,
    RobotsFile,
    RobotsState,
    classify_status,
    origin_of,
)
from crawler.cluster import decode_payload, encode_payload
from crawler.pacing import pace
from crawler.runtime import ComplianceRuntime
from crawler.singleflight import SingleFlight
from crawler.wellknown import fetch_following_redirects

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

#: Added to every published delay. Scrapy measures the delay between the
#: moments requests leave its queue; the host sees them after connection
#: set-up, which varies by a few milliseconds (the first request to a host
#: opens a connection, the next reuses it). The margin keeps the gap the
#: host observes at or above what it published.
PACING_MARGIN = 0.05

#: Meta key marking our own robots.txt requests (they are not checked against themselves).
ROBOTS_FETCH = "compliance_robots_fetch"
#: Meta key of a site owner's proof of control (crawler/portal/proof.py). robots.txt
#: governs crawling; this file is one the site owner placed for this crawler to
#: read, at the owner's request, like robots.txt itself (RFC 9309 2.3 does not
#: apply robots.txt to robots.txt): a Disallow: / meant to keep the crawler out
#: must not also stop the owner proving control so as to object.
OWNERSHIP_PROOF_FETCH = "compliance_ownership_proof"


def _fetched(state: RobotsState, detail: str, *, body: bytes = b"", final_url: str = "") -> dict[str, Any]:
    return {"state": state, "detail": detail, "body": body, "final_url": final_url}


class RobotsTxtMiddleware:
    DOWNLOAD_PRIORITY = 1000

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.runtime = ComplianceRuntime.of(crawler)
        config = self.runtime.config
        self.token = config.bot_name
        self.max_crawl_delay = config.max_crawl_delay
        self.cache = RobotsCache(
            ttl=config.robots_ttl, max_entries=config.robots_cache_size, retry_delay=config.robots_retry_delay
        )
        self._flights: SingleFlight[RobotsFile] = SingleFlight()
        # Signal receivers are weak references: this bound method lives as
        # long as the middleware does.
        crawler.signals.connect(self._limit_robots_size, signal=signals.bytes_received)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RobotsTxtMiddleware:
        return cls(crawler)

    async def process_request(self, request: Request) -> None:
        if request.meta.get(ROBOTS_FETCH) or request.meta.get(OWNERSHIP_PROOF_FETCH):
            return
        if not request.url.startswith(("http://", "https://")):
            self._refuse(Decision.refuse("url.scheme", rule="only http and https URLs are crawled"), request)
        origin, robots_url = origin_of(request.url)
        entry = self.cache.get(origin, time.time()) or await self._robots_file(origin, robots_url)
        decision = entry.decide(request.url, self.token)
        if not decision.allowed:
            self._refuse(decision, request)
        delay = entry.crawl_delay(self.token)
        if delay:
            if delay > self.max_crawl_delay:
                self._refuse(
                    Decision.refuse(
                        "robots.crawl-delay-too-long",
                        rule=f"Crawl-delay {delay:g}s > COMPLIANCE_MAX_CRAWL_DELAY {self.max_crawl_delay:g}s",
                        source=entry.robots_url,
                        detail="the host asks for a pace this crawl will not keep; skipped rather than hammered",
                    ),
                    request,
                )
            pace(self.crawler, request, delay + PACING_MARGIN)
        request.meta["compliance_robots"] = {"reason": decision.reason, "rule": decision.rule, "source": decision.source}
        # Set or cleared for this URL: a redirected request carries its
        # parent's meta, and the old URL's rules must not apply to the new one.
        usage = entry.rules.usage_rules(request.url, self.token) if entry.rules is not None else {}
        if usage:
            request.meta["compliance_robots_usage"] = usage
        else:
            request.meta.pop("compliance_robots_usage", None)

    def _refuse(self, decision: Decision, request: Request) -> NoReturn:
        self.runtime.refuse_request(decision, "download", request)

    async def _robots_file(self, origin: str, robots_url: str) -> RobotsFile:
        """Fetch once per origin; concurrent requests wait for the same fetch."""
        return await self._flights.run(
            origin,
            lambda: self._fetch_once(origin, robots_url),
            lambda exc: self.cache.store(  # engine stopping: fail closed for the waiters
                origin, robots_url, RobotsState.UNREACHABLE, time.time(), detail=f"fetch aborted ({exc!r})"
            ),
        )

    async def _fetch_once(self, origin: str, robots_url: str) -> RobotsFile:
        """Fetch, or (distributed) take the copy another worker fetched within the TTL."""
        cluster = self.runtime.cluster
        if cluster is None:
            return self._store(origin, robots_url, **await self._fetch(origin, robots_url))
        config = self.runtime.config

        async def fetch() -> dict[str, Any]:
            found = await self._fetch(origin, robots_url)
            ttl = config.robots_ttl if found["state"] is not RobotsState.UNREACHABLE else config.robots_retry_delay
            return {**found, "state": found["state"].value, "body": encode_payload(found["body"]), "ttl": ttl}

        shared = await cluster.once("robots", origin, config.robots_ttl, fetch)
        self.crawler.stats.inc_value("compliance/robots/shared_lookups")
        entry = self.cache.store(
            origin, robots_url, RobotsState(shared["state"]), shared["fetched_at"], detail=shared["detail"],
            body=decode_payload(shared["body"]), final_url=shared["final_url"],
        )  # fmt: skip
        return entry

    async def _fetch(self, origin: str, robots_url: str) -> dict[str, Any]:
        stats = self.crawler.stats
        # Redirects and retries are ours to count (RFC 9309 2.3.1.2 / 2.3.1.4).
        fetched = await fetch_following_redirects(
            # No transfer limit: a robots.txt announcing 50 MB is still read
            # up to MAX_PARSE_BYTES (RFC 9309 2.5), then _limit_robots_size
            # stops it. Decompression stays bounded by DOWNLOAD_MAXSIZE
            # (crawler/middlewares/bounds.py).
            self.crawler, robots_url, meta={ROBOTS_FETCH: True, "dont_obey_robotstxt": True, "download_maxsize": 0},
            stat="compliance/robots/request_count", priority=self.DOWNLOAD_PRIORITY,
            on_response=lambda r: stats.inc_value(f"compliance/robots/response_status_count/{r.status}"),
        )  # fmt: skip
        url, response = fetched.final_url, fetched.response
        if fetched.refused is not None:
            return _fetched(RobotsState.UNREACHABLE, f"fetch of {url} refused ({fetched.refused})")
        if fetched.error is not None:
            return _fetched(RobotsState.UNREACHABLE, f"network error fetching {url}: {type(fetched.error).__name__}: {fetched.error}")
        if response is None:
            return _fetched(RobotsState.UNREACHABLE, fetched.problem)
        state = classify_status(response.status)
        assert state is not None  # redirects were followed
        if state is RobotsState.RULES and "dataloss" in response.flags:
            return _fetched(RobotsState.UNREACHABLE, f"incomplete body from {url}")
        detail = f"HTTP {response.status}" + (f" after {fetched.hops} redirect(s) to {url}" if fetched.hops else "")
        return _fetched(state, detail, body=response.body, final_url=url)

    def _store(
        self, origin: str, robots_url: str, state: RobotsState, detail: str, *, body: bytes = b"", final_url: str = ""
    ) -> RobotsFile:
        """Cache what a fetch found (for RobotsCache's TTL and retry schedule) and report it."""
        entry = self.cache.store(origin, robots_url, state, time.time(), detail=detail, body=body, final_url=final_url)
        self.crawler.stats.inc_value(f"compliance/robots/{state.value}")
        log = logger.warning if state is RobotsState.UNREACHABLE else logger.debug
        log("robots.txt for %s: %s (%s)", origin, state.value, detail, extra={"spider": self.crawler.spider})
        return entry

    def _limit_robots_size(self, data: bytes, request: Request, spider: object = None) -> None:
        """Stop reading a robots.txt past the parse limit (RFC 9309 2.5)."""
        if not request.meta.get(ROBOTS_FETCH):
            return
        received = request.meta.get("compliance_robots_bytes", 0) + len(data)
        request.meta["compliance_robots_bytes"] = received
        if received > MAX_PARSE_BYTES + 1:
            raise StopDownload(fail=False)
