"""Page-level opt-outs: read on the response, enforced on the spider's output.

:class:`OptOutDownloaderMiddleware` reads the signals of every response
(headers, and robots/TDMRep meta tags of HTML) into ``response.meta
["compliance_optouts"]``. :class:`OptOutSpiderMiddleware` then drops the
items of a page that may not be stored for the crawl's purposes (its links
are still followed), and the links of a ``nofollow`` page.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from scrapy import Request
from scrapy.http import HtmlResponse

from crawler.compliance.optouts import collect_signals, storage_decision
from crawler.runtime import ComplianceRuntime

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Response

    from crawler.compliance.decision import Decision

logger = logging.getLogger(__name__)

META = "compliance_optouts"
_SIGNAL_HEADERS = (b"X-Robots-Tag", b"Content-Usage", b"Content-Signal", b"tdm-reservation", b"tdm-policy")


class OptOutDownloaderMiddleware:
    def __init__(self, crawler: Crawler) -> None:
        self.runtime = ComplianceRuntime.of(crawler)
        self.token = self.runtime.config.bot_name
        self.purposes = self.runtime.config.purposes
        # Most pages carry no signal at all. A byte search for the meta names
        # that matter decides whether the page's meta tags need an XPath
        # query, and pages with no signal share one precomputed answer.
        self._meta_hint = re.compile(
            rb"<meta[^>]*?name\s*=\s*[\"']?\s*(?:robots|tdm-|" + re.escape(self.token.encode()) + rb")", re.IGNORECASE
        )
        self._clean = {
            "signals": collect_signals({}, [], self.token).as_dict(),
            "purposes": sorted(self.purposes),
            "follow": True,
            "store": None,
        }

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> OptOutDownloaderMiddleware:
        return cls(crawler)

    def process_response(self, request: Request, response: Response) -> Response:
        if request.meta.get("compliance_robots_fetch") or request.meta.get("compliance_tdmrep_fetch"):
            return response
        headers = {
            name.decode().lower(): [v.decode("latin-1") for v in response.headers.getlist(name)]
            for name in _SIGNAL_HEADERS
            if name in response.headers
        }
        well_known = request.meta.get("compliance_tdmrep")
        robots_usage = request.meta.get("compliance_robots_usage")
        has_meta = isinstance(response, HtmlResponse) and self._meta_hint.search(response.body) is not None
        if not headers and not has_meta and not well_known and not robots_usage:
            request.meta[META] = self._clean
            return response
        metas: list[tuple[str, str]] = []
        if has_meta:
            for meta in response.xpath("//meta[@name][@content]"):
                metas.append((meta.attrib["name"], meta.attrib["content"]))
        well_known = well_known or {}
        signals = collect_signals(
            headers, metas, self.token,
            robots_usage=robots_usage,
            tdm_well_known=well_known.get("reservation"), tdm_well_known_source=well_known.get("source", ""),
            tdm_well_known_policy=well_known.get("policy", ""),
        )  # fmt: skip
        decision = storage_decision(signals, self.purposes)
        for problem in signals.problems:
            logger.info("Opt-out signal ignored on %s: %s", request.url, problem)
        request.meta[META] = {
            "signals": signals.as_dict(),
            "purposes": sorted(self.purposes),
            "follow": signals.follow,
            "store": None if decision.allowed else decision.as_dict(),
        }
        return response


class OptOutSpiderMiddleware:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.runtime = ComplianceRuntime.of(crawler)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> OptOutSpiderMiddleware:
        return cls(crawler)

    def _restrictions(self, response: Response | None) -> tuple[Decision | None, bool]:
        from crawler.compliance.decision import Decision

        info = response.meta.get(META) if response is not None else None
        if not info:
            return None, True
        refused = Decision(**info["store"]).at("response", response.url) if info["store"] else None  # type: ignore[union-attr]
        return refused, info["follow"]

    def _keep(self, obj: Any, response: Response, refused: Decision | None, follow: bool, state: dict[str, bool]) -> bool:
        if isinstance(obj, Request):
            if not follow:
                self.crawler.stats.inc_value("compliance/optouts/nofollow_dropped")
            return follow
        if refused is not None:
            if not state.get("counted"):
                state["counted"] = True
                self.runtime.refuse(refused)
            return False
        return True

    def process_spider_output(self, response: Response, result: Iterable[Any]) -> Iterable[Any]:
        refused, follow = self._restrictions(response)
        if refused is None and follow:
            return result  # the common case costs no extra generator layer
        state: dict[str, bool] = {}
        return (obj for obj in result if self._keep(obj, response, refused, follow, state))

    async def process_spider_output_async(self, response: Response, result: AsyncIterator[Any]) -> AsyncIterator[Any]:
        refused, follow = self._restrictions(response)
        state: dict[str, bool] = {}
        async for obj in result:
            if self._keep(obj, response, refused, follow, state):
                yield obj
