"""Writes items to the compliance store in batches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scrapy.exceptions import DropItem

from crawler.compliance.domains import filed_under
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
        # The last notice check (DESIGN: before storing): a response that was
        # in flight when a notice arrived is not stored. The store's write
        # checks once more inside its transaction (see Store.write).
        decision = self.runtime.notices.decide(url)
        if not decision.allowed:
            decision = decision.at("store", url)
            self.runtime.refuse(decision)
            raise DropItem(str(decision), log_level="INFO")
        # Host and registered domain always come from the URL: purges select
        # on them, so an item's own "domain" field must not decide where it is filed.
        fields["host"], fields["domain"] = filed_under(url)
        fields.setdefault("fetched_at", utcnow())
        fields["crawl_id"] = self.runtime.config.crawl_id
        self.runtime.add_item(fields)
        return item

    def close_spider(self) -> None:
        self.runtime.final_flush()
