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
from typing import TYPE_CHECKING, Any

from scrapy import Request
from scrapy.http import HtmlResponse
from scrapy.spidermiddlewares.depth import DepthMiddleware

from crawler.compliance.decision import Decision

from crawler.compliance.optouts import collect_signals, storage_decision
from crawler.compliance.store import utcnow
from crawler.runtime import ComplianceRuntime

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Response

logger = logging.getLogger(__name__)

META = "compliance_optouts"
_REFUSAL_LOGGED = "compliance_optouts_refused"
#: Requests a response has produced so far (COMPLIANCE_MAX_LINKS_PER_PAGE).
_LINKS_FOLLOWED = "_compliance_links_followed"
_SIGNAL_HEADERS = (b"X-Robots-Tag", b"Content-Usage", b"Content-Signal", b"tdm-reservation", b"tdm-policy")


class OptOutDownloaderMiddleware:
    def __init__(self, crawler: Crawler) -> None:
        self.runtime = ComplianceRuntime.of(crawler)
        self.token = self.runtime.config.bot_name
        self.purposes = self.runtime.config.purposes
        # Most pages carry no signal at all. A byte search for "<meta" decides
        # whether the page's meta tags need an XPath query (the spider's own
        # parse reuses the same parsed tree), and pages with no signal share
        # one precomputed answer. The search is deliberately broad: a quoted
        # ">" or an entity in an attribute must not hide a robots meta, and
        # a page in UTF-16/32 is always parsed.
        self._meta_hint = re.compile(rb"<meta", re.IGNORECASE)
        self._meta_names = {"robots", self.token.lower(), "tdm-reservation", "tdm-policy"}
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
        # When the page arrived: the fetch time of every item made from it.
        request.meta["compliance_fetched_at"] = utcnow()
        headers = {
            name.decode().lower(): [v.decode("latin-1") for v in response.headers.getlist(name)]
            for name in _SIGNAL_HEADERS
            if name in response.headers
        }
        well_known = request.meta.get("compliance_tdmrep")
        robots_usage = request.meta.get("compliance_robots_usage")
        has_meta = isinstance(response, HtmlResponse) and (
            self._meta_hint.search(response.body) is not None or response.encoding.lower().startswith(("utf-16", "utf-32"))
        )
        metas: list[tuple[str, str]] = []
        if has_meta:
            # The parsed tree is cached on the response, and the spider reuses it.
            for meta in response.xpath("//meta[@name][@content]"):
                if meta.attrib["name"].strip().lower() in self._meta_names:
                    metas.append((meta.attrib["name"], meta.attrib["content"]))
        if not headers and not metas and not well_known and not robots_usage:
            request.meta[META] = self._clean
            return response
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


class OptOutSpiderMiddleware(DepthMiddleware):
    """Drops items of opted-out pages and links of nofollow pages; otherwise Scrapy's DepthMiddleware.

    It replaces DepthMiddleware (same order, same behaviour) instead of adding
    a layer: in Scrapy 2.19 every spider-middleware layer is an async
    generator over every object a callback yields, and one more layer cost
    about 0.1 ms per page in the benchmark. Reusing the layer Scrapy already
    runs costs two dict look-ups per object.
    """

    runtime: ComplianceRuntime

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> OptOutSpiderMiddleware:
        middleware = super().from_crawler(crawler)
        middleware.runtime = ComplianceRuntime.of(crawler)
        if middleware.runtime.config.distributed:
            # Distributed crawls only: release the response's lease once its
            # output is handled and its items settled (an instance attribute, so single-machine
            # crawls keep the plain, cheaper method).
            middleware.process_spider_output_async = middleware._output_then_release  # type: ignore[method-assign]
        return middleware

    async def _output_then_release(self, response: Response, result: Any) -> Any:
        try:
            async for output in DepthMiddleware.process_spider_output_async(self, response, result):
                yield output
        finally:
            lease = response.meta.get("compliance_lease") if response is not None else None
            if lease:
                self.runtime.cluster.output_done(lease)

    def get_processed_request(self, request: Request, response: Response | None) -> Request | None:
        if response is not None:
            meta = response.meta
            info = meta.get(META)
            if info is not None and not info["follow"]:
                self.stats.inc_value("compliance/optouts/nofollow_dropped")
                return None
            # COMPLIANCE_MAX_LINKS_PER_PAGE: a page of 200,000 links must not
            # become 200,000 queued requests (memory), whatever the spider.
            # Keyed by the response's id: a spider that copies response.meta
            # into its requests must not hand the count on to their pages.
            counted = meta.get(_LINKS_FOLLOWED)
            followed = counted[1] + 1 if counted is not None and counted[0] == id(response) else 1
            meta[_LINKS_FOLLOWED] = (id(response), followed)
            if followed > self.runtime.config.max_links_per_page:
                if followed == self.runtime.config.max_links_per_page + 1:
                    logger.info(
                        "%s has more than COMPLIANCE_MAX_LINKS_PER_PAGE (%d) links; the rest are dropped",
                        response.url, self.runtime.config.max_links_per_page, extra={"spider": self.crawler.spider},
                    )  # fmt: skip
                    self.stats.inc_value("compliance/links/pages_over_limit")
                self.stats.inc_value("compliance/links/dropped")
                return None
        return super().get_processed_request(request, response)

    def get_processed_item(self, item: Any, response: Response | None) -> Any:
        if response is not None:
            info = response.meta.get(META)
            if info is not None and info["store"] is not None:
                if not response.meta.get(_REFUSAL_LOGGED):
                    response.meta[_REFUSAL_LOGGED] = True
                    self.runtime.refuse(Decision(**info["store"]).at("response", response.url))
                return None
            # Which page the item came from, for the pipelines' last notice
            # check (the store files it under the same page).
            self.runtime.note_source(item, response)
            lease = response.meta.get("compliance_lease")
            if lease and self.runtime.cluster is not None:
                self.runtime.cluster.item_opened(lease)  # its lease waits for it (see Cluster.items_settled)
        return item
