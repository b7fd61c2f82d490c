"""Scrubs image data and image URLs from every item before it is stored."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from itemadapter import ItemAdapter

from crawler.compliance.decision import Decision
from crawler.compliance.images import SOURCE, scrub_fields
from crawler.itemfields import item_fields
from crawler.runtime import ComplianceRuntime

if TYPE_CHECKING:
    from scrapy.crawler import Crawler


class ImageScrubPipeline:
    """Removes image fields, ``data:image/...`` URIs and image URLs (any item type)."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.runtime = ComplianceRuntime.of(crawler)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ImageScrubPipeline:
        return cls(crawler)

    def process_item(self, item: Any) -> Any:
        adapter = ItemAdapter(item)
        original = item_fields(item)
        cleaned, removed = scrub_fields(original)
        if not removed:
            return item
        for key in original:
            if key not in cleaned:
                try:
                    del adapter[key]
                except (KeyError, NotImplementedError, TypeError, AttributeError):
                    adapter[key] = None  # a declared field that cannot be deleted
            elif cleaned[key] != original[key]:
                adapter[key] = cleaned[key]
        self.crawler.stats.inc_value("compliance/images/scrubbed", removed)
        url = str(original.get("url") or "")
        self.runtime.refuse(
            Decision.refuse("image.item", rule=f"removed {removed} image field(s), data URI(s) or image URL(s)", source=SOURCE).at("store", url)
        )
        return item


class FinalImageScrubPipeline(ImageScrubPipeline):
    """The same scrub, as the last pipeline before the store: fields that a
    project's own pipelines added (``image_urls``, a thumbnail) are removed too.

    When no pipeline runs between the first scrub and this one, nothing can
    have added an image since, and the item is passed on as it is (the scrub
    is a tenth of the stack's time per item).
    """

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        from scrapy.utils.conf import build_component_list

        order = [
            c if isinstance(c, str) else f"{c.__module__}.{c.__qualname__}"
            for c in build_component_list(crawler.settings.getwithbase("ITEM_PIPELINES"))
        ]
        first, last = f"{__name__}.ImageScrubPipeline", f"{__name__}.FinalImageScrubPipeline"
        self.redundant = first in order and last in order and order.index(last) == order.index(first) + 1

    def process_item(self, item: Any) -> Any:
        return item if self.redundant else super().process_item(item)
