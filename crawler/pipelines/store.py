"""Writes items to the compliance store in batches, filed under the page they came from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import DropItem
from scrapy.http import Response

from crawler.cluster import LEASE_META
from crawler.compliance.decision import Decision
from crawler.itemfields import item_fields
from crawler.runtime import ComplianceRuntime

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

#: The refusal of an item nothing could file under a site (see StorePipeline._response_less_source).
UNKNOWN_SOURCE = "provenance.unknown"


class StorePipeline:
    """The last pipeline: a last notice check; the item is stored once every pipeline has passed it.

    Any item type works (dict, ``scrapy.Item``, dataclass, attrs, through
    ItemAdapter), with or without a ``url`` field: the URL, host, domain,
    fetch time and provenance are those of the response that produced the
    item (Scrapy's ``item_scraped`` signal names it), so a purge of that site
    finds the item. The item itself, as the project's pipelines and feeds see
    it, is never changed. An errback's item is filed under the request that
    failed; one with no response, request or ``url`` (yielded from
    ``start()``) is not stored, ``provenance.unknown``.

    Batches are written when ``COMPLIANCE_STORE_BATCH_SIZE`` rows are waiting
    or ``COMPLIANCE_STORE_FLUSH_INTERVAL`` seconds have passed, and at spider
    close: a crash loses at most the batch not yet written, and a batch the
    store refuses is saved for later and fails the crawl (see the runtime).
    """

    def __init__(self, crawler: Crawler) -> None:
        self.runtime = ComplianceRuntime.of(crawler)
        self.crawler = crawler
        self._gate: Any = None
        crawler.signals.connect(self.item_scraped, signal=signals.item_scraped)
        crawler.signals.connect(self.item_left, signal=signals.item_dropped)
        crawler.signals.connect(self.item_left, signal=signals.item_error)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> StorePipeline:
        return cls(crawler)

    def _source_url(self, item: Any) -> str:
        source = self.runtime.known_source(item)
        if source is not None:
            return str(source["url"])
        return str(item_fields(item).get("url") or "")

    def process_item(self, item: Any) -> Any:
        # The last notice check before the feeds export the item (DESIGN:
        # before storing): a response that was in flight when a notice
        # arrived is not stored. The store's write checks once more inside
        # its transaction (see Store.write).
        url = self._source_url(item)
        decision = self.runtime.notices.decide(url)
        if not decision.allowed:
            decision = decision.at("store", url)
            self.runtime.refuse(decision)
            raise DropItem(str(decision), log_level="INFO")
        # The suppression list (erasure requests): an erased person's data is neither stored nor exported.
        gate = self._erasures()
        if gate is not None:
            refusal = gate.check(url, item)
            if refusal is not None:
                refusal = refusal.at("store", url)
                self.runtime.refuse(refusal)
                raise DropItem(str(refusal), log_level="INFO")
        return item

    def _erasures(self) -> Any:
        """The crawl's DataProtection extension (its suppression list), found once."""
        if self._gate is None:
            from crawler.extensions.dataprotection import DataProtection

            self._gate = DataProtection.of(self.crawler) or False
        return self._gate or None

    def item_scraped(self, item: Any, response: Any) -> None:
        noted = self.runtime.known_source(item, forget=True)
        source = noted
        if isinstance(response, Response) and (noted is None or noted["url"] != response.url):
            source = self.runtime.source_of(response)
        fields = item_fields(item)
        if source is None and not fields.get("url"):
            source = self._response_less_source(item, response)
            if source is None:
                return
        # Checked against the notices again as it is queued (see add_item).
        self.runtime.add_item(fields, source, _lease(response))

    def _response_less_source(self, item: Any, response: Any) -> dict[str, Any] | None:
        """Where an item with no response and no url is filed: an errback's under its request; else refused (None).

        An errback's item comes with the Failure, which names the request
        that failed. An item yielded from ``start()`` comes with nothing: no
        notice, purge or erasure by site could ever reach it, so it is not
        stored (``provenance.unknown``).
        """
        request = getattr(response, "request", None)
        url = getattr(request, "url", None)
        if isinstance(url, str) and url:
            failure = getattr(response, "value", None)
            return self.runtime.source_of_url(url, {"status": None, "failure": type(failure).__name__ if failure is not None else ""})
        refusal = Decision.refuse(
            UNKNOWN_SOURCE, rule="an item is stored under the response (or failed request) that produced it, or its own url field",
            source="StorePipeline", detail=f"{type(item).__name__} yielded with no response or request (from start()) and no url field",
        ).at("store", "")  # fmt: skip
        self.runtime.refuse(refusal)
        return None

    def item_left(self, item: Any, response: Any = None) -> None:
        """Dropped by a pipeline, or a pipeline failed on it: it is settled, and will not be stored."""
        self.runtime.known_source(item, forget=True)
        lease = _lease(response)
        if lease:
            self.runtime.settle_items([lease])

    def close_spider(self) -> None:
        self.runtime.final_flush()


def _lease(response: Any) -> str | None:
    """The cluster lease of the response that produced an item (distributed crawls only)."""
    return response.meta.get(LEASE_META) if isinstance(response, Response) else None
