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

from scrapy import Request
from scrapy.exceptions import IgnoreRequest
from scrapy.http.request import NO_CALLBACK

from crawler.cluster import decode_payload, encode_payload
from crawler.compliance.optouts import TDMREP_PATH, TdmRule, parse_tdmrep, tdmrep_lookup
from crawler.compliance.robots import origin_of
from crawler.runtime import ComplianceRuntime
from crawler.singleflight import SingleFlight

if TYPE_CHECKING:
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

    def _aborted(self, exc: BaseException) -> TdmRepFile:
        return TdmRepFile("", (), 0, f"fetch aborted ({exc!r})")

    async def _download(self, file_url: str) -> dict[str, Any]:
        """The well-known file as fetched: status (0: none), body and what happened."""
        request = Request(file_url, callback=NO_CALLBACK, dont_filter=True, meta={TDMREP_FETCH: True, "handle_httpstatus_all": True})
        self.crawler.stats.inc_value("compliance/tdmrep/request_count")
        try:
            response = await self.crawler.engine.download_async(request)
        except IgnoreRequest as exc:
            return {"status": 0, "body": "", "detail": f"not fetched ({exc})"}
        except Exception as exc:  # noqa: BLE001 - unreachable means unset, logged
            return {"status": 0, "body": "", "detail": f"unreachable: {type(exc).__name__}: {exc}"}
        return {"status": response.status, "body": encode_payload(response.body), "detail": f"HTTP {response.status}"}

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
        if 200 <= fetched["status"] < 300:
            try:
                rules = parse_tdmrep(decode_payload(fetched["body"]))
                detail = f"{len(rules)} rule(s)"
            except ValueError as exc:
                detail = f"invalid: {exc}"
        if not rules and not detail.endswith("rule(s)"):
            level = logging.INFO if detail.startswith("HTTP 404") else logging.WARNING
            logger.log(level, "TDMRep %s: %s; the well-known layer is unset", file_url, detail, extra={"spider": self.crawler.spider})
        entry = TdmRepFile(file_url, rules, time.time() + self.ttl, detail)
        self._cache[origin] = entry
        self._cache.move_to_end(origin)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return entry
