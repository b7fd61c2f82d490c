"""Writes items to the compliance store in batches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crawler.compliance.domains import host_of, registered_domain
from crawler.compliance.store import utcnow
from crawler.itemfields import item_fields
from crawler.runtime import ComplianceRuntime

if TYPE_CHECKING:
    from scrapy.crawler import Crawler


class StorePipeline:
    """Queues every item for the store; the runtime writes batches.

    Batches are flushed when ``COMPLIANCE_STORE_BATCH_SIZE`` rows are waiting
    or ``COMPLIANCE_STORE_FLUSH_INTERVAL`` seconds have passed, and at spider
    close: a crash loses at most the batch not yet written. Any item type
    works (through ItemAdapter); fields the store has no column for are kept
    in its JSON ``data``.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.runtime = ComplianceRuntime.of(crawler)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> StorePipeline:
        return cls(crawler)

    def process_item(self, item: Any) -> Any:
        fields = item_fields(item)
        url = str(fields.get("url") or "")
        fields.setdefault("host", host_of(url))
        fields.setdefault("domain", registered_domain(fields["host"]))
        fields.setdefault("fetched_at", utcnow())
        fields["crawl_id"] = self.runtime.config.crawl_id
        self.runtime.add_item(fields)
        return item

    def close_spider(self) -> None:
        self.runtime.flush()
