"""W3C TDMRep's well-known file, fetched once per origin and cached like robots.txt.

``/.well-known/tdmrep.json`` is the lowest TDMRep layer (the header and the
HTML meta override it). It only restricts the ``train-ai`` purpose, so a
crawl without that purpose never fetches it. An unreachable, missing or
invalid file leaves the layer unset, and says why in the log.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from crawler.cluster import decode_payload, encode_payload
from crawler.compliance.optouts import MAX_TDMREP_BYTES, TDMREP_PATH, TdmRule, parse_tdmrep, tdmrep_lookup
from crawler.compliance.robots import origin_of
from crawler.runtime import ComplianceRuntime
from crawler.singleflight import SingleFlight
from crawler.wellknown import fetch_following_redirects

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

#: Meta key marking our own tdmrep.json requests.
TDMREP_FETCH = "compliance_tdmrep_fetch"


@dataclass(frozen=True)
class TdmRepFile:
    url: str
    rules: tuple[TdmRule, ...]
    expires_at: float
    detail: str


class TdmRepMiddleware:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.runtime = ComplianceRuntime.of(crawler)
        config = self.runtime.config
        self.enabled = "train-ai" in config.purposes
        self.ttl = config.robots_ttl
        self.retry_delay = config.robots_retry_delay
        self.max_entries = config.robots_cache_size
        self._cache: OrderedDict[str, TdmRepFile] = OrderedDict()
        self._flights: SingleFlight[TdmRepFile] = SingleFlight()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> TdmRepMiddleware:
        return cls(crawler)

    async def process_request(self, request: Request) -> None:
        meta = request.meta
        if not self.enabled or meta.get(TDMREP_FETCH) or meta.get("compliance_robots_fetch"):
            return
        origin, _ = origin_of(request.url)
        entry = self._cache.get(origin)
        if entry is None or entry.expires_at <= time.time():
            entry = await self._flights.run(origin, lambda: self._fetch(origin, request.url), self._aborted)
        else:
            self._cache.move_to_end(origin)
        parts = urlsplit(request.url)
        rule = tdmrep_lookup(entry.rules, parts.path + (f"?{parts.query}" if parts.query else ""))
        if rule is not None:
            meta["compliance_tdmrep"] = {
                "reservation": rule.reservation, "policy": rule.policy, "source": f"{entry.url} entry {rule.index}",
            }  # fmt: skip
        else:  # a redirected request must not keep its parent URL's rule
            meta.pop("compliance_tdmrep", None)

    def _aborted(self, exc: BaseException) -> TdmRepFile:
        return TdmRepFile("", (), 0, f"fetch aborted ({exc!r})")

    async def _download(self, file_url: str) -> dict[str, Any]:
        """The well-known file as fetched: status (0: none), body, what happened, and how long to keep it.

        Redirects are followed as for robots.txt (five hops, RFC 9309
        section 2.3.1.2), so a file behind an http-to-https or CDN redirect is
        read. A definite answer (2xx, 4xx) is kept for the robots.txt TTL; a
        failure (5xx, network error, too many redirects) only until the
        robots.txt retry delay, so a passing outage does not hide the file
        for a day.
        """
        fetched = await fetch_following_redirects(
            self.crawler, file_url, meta={TDMREP_FETCH: True, "download_maxsize": MAX_TDMREP_BYTES + 1},
            stat="compliance/tdmrep/request_count",
        )  # fmt: skip
        if fetched.refused is not None:
            return self._failed(f"not fetched ({fetched.refused})")
        if fetched.error is not None:
            return self._failed(f"unreachable: {type(fetched.error).__name__}: {fetched.error}")
        response = fetched.response
        if response is None:
            return self._failed(fetched.problem)
        detail = f"HTTP {response.status}" + (f" after {fetched.hops} redirect(s) to {fetched.final_url}" if fetched.hops else "")
        if response.status >= 500 or 300 <= response.status < 400:
            return self._failed(detail)
        return {"status": response.status, "body": encode_payload(response.body), "detail": detail, "ttl": self.ttl}

    def _failed(self, detail: str) -> dict[str, Any]:
        return {"status": 0, "body": "", "detail": detail, "ttl": min(self.ttl, self.retry_delay)}

    async def _fetch(self, origin: str, url: str) -> TdmRepFile:
        parts = urlsplit(url)
        file_url = f"{parts.scheme}://{parts.netloc}{TDMREP_PATH}"
        cluster = self.runtime.cluster
        if cluster is None:
            fetched = await self._download(file_url)
        else:  # distributed: one worker fetches it for the whole cluster
            fetched = await cluster.once("tdmrep", origin, self.ttl, lambda: self._download(file_url))
        rules: tuple[TdmRule, ...] = ()
        detail = fetched["detail"]
        spider = {"spider": self.crawler.spider}
        if 200 <= fetched["status"] < 300:
            problems: list[str] = []
            try:
                rules = parse_tdmrep(decode_payload(fetched["body"]), problems)
                detail = f"{len(rules)} rule(s)"
            except ValueError as exc:
                detail = f"invalid: {exc}"
            for problem in problems[:20]:
                logger.info("TDMRep %s: %s", file_url, problem, extra=spider)
        if not rules and not detail.endswith("rule(s)"):
            level = logging.INFO if detail.startswith("HTTP 404") else logging.WARNING
            logger.log(level, "TDMRep %s: %s; the well-known layer is unset", file_url, detail, extra=spider)
        keep = float(fetched.get("ttl", self.ttl))
        entry = TdmRepFile(file_url, rules, time.time() + keep, detail)
        self._cache[origin] = entry
        self._cache.move_to_end(origin)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return entry
