"""Records each crawl in the store and writes what is pending when it ends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scrapy import signals

from crawler.runtime import ComplianceRuntime

if TYPE_CHECKING:
    from scrapy import Spider
    from scrapy.crawler import Crawler


class CrawlLifecycle:
    def __init__(self, crawler: Crawler) -> None:
        # Building the runtime validates every COMPLIANCE_* setting, so a crawl
        # with a missing contact or a bad value never sends a request.
        self.runtime = ComplianceRuntime.of(crawler)
        self.crawler = crawler
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CrawlLifecycle:
        return cls(crawler)

    def spider_opened(self, spider: Spider) -> None:
        config = self.runtime.config
        start_urls = [str(u) for u in getattr(spider, "start_urls", [])]
        self.runtime.store.start_crawl(config.crawl_id, spider.name, start_urls, config.user_agent)
        self.crawler.stats.set_value("compliance/crawl_id", config.crawl_id)
        spider.logger.info("Compliance crawl %s as %r, store %s", config.crawl_id, config.user_agent, config.store_url)

    def spider_closed(self, spider: Spider, reason: str) -> None:
        self.runtime.flush()
        self.runtime.store.finish_crawl(self.runtime.config.crawl_id, reason, self.crawler.stats.get_stats())
