"""Records each crawl in the store and writes what is pending when it ends."""

from __future__ import annotations

import gc
import logging
from typing import TYPE_CHECKING

from scrapy import signals

from crawler.config import flag
from crawler.runtime import ComplianceRuntime

if TYPE_CHECKING:
    from scrapy import Spider
    from scrapy.crawler import Crawler

logger = logging.getLogger("crawler.compliance")

#: The finish reason of a crawl some of whose output the store did not take.
STORE_WRITE_FAILED = "store_write_failed"


class _StartupFreeze:
    """While crawls run, what start-up built is left out of the garbage collector's full passes.

    A crawl's requests live long enough to reach the oldest generation and
    then die, so Python runs a full collection every few hundred pages, and
    each one walks every object the process holds: the imported modules, the
    policies, the suffix list, SQLAlchemy's tables, 120,000 to 140,000 objects
    that will live as long as the crawl. On this project's benchmark those
    passes took 12 % of a crawl's time (bench/README.md, "The garbage
    collector"). ``gc.freeze()`` when the first crawl of the process opens
    moves them out of the collector's sight; ``gc.unfreeze()`` when the last
    one closes gives them back, so nothing they hold is kept after the crawls
    (a process that runs several crawls, one after another or at once, is
    frozen once). A process that froze objects itself is left alone.
    ``COMPLIANCE_GC_FREEZE = False`` turns it off.
    """

    crawls = 0
    ours = False

    @classmethod
    def opened(cls) -> None:
        if cls.crawls == 0:
            cls.ours = gc.get_freeze_count() == 0
            if cls.ours:
                gc.collect()
                gc.freeze()
        cls.crawls += 1

    @classmethod
    def closed(cls) -> None:
        cls.crawls -= 1
        if cls.crawls == 0 and cls.ours:
            gc.unfreeze()
            cls.ours = False


class CrawlLifecycle:
    def __init__(self, crawler: Crawler) -> None:
        # Building the runtime validates every COMPLIANCE_* setting, so a crawl
        # with a missing contact or a bad value never sends a request.
        self.runtime = ComplianceRuntime.of(crawler)
        self.crawler = crawler
        self.frozen = False
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)
        if flag(crawler.settings, "ROBOTSTXT_OBEY"):
            logger.info(
                "ROBOTSTXT_OBEY = True: robots.txt is obeyed by the compliance stack (RFC 9309: 5xx and 429 "
                "disallow all, cached per scheme, host and port); Scrapy's RobotsTxtMiddleware stays off"
            )

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CrawlLifecycle:
        return cls(crawler)

    def spider_opened(self, spider: Spider) -> None:
        config = self.runtime.config
        start_urls = [str(u) for u in getattr(spider, "start_urls", [])]
        self.runtime.store.start_crawl(config.crawl_id, spider.name, start_urls, config.user_agent)
        self.crawler.stats.set_value("compliance/crawl_id", config.crawl_id)
        spider.logger.info("Compliance crawl %s as %r, store %s", config.crawl_id, config.user_agent, config.store_url)
        from crawler.pacing import SlotBoundDownloader

        downloader = getattr(self.crawler.engine, "downloader", None)
        if downloader is not None and not isinstance(downloader, SlotBoundDownloader):
            logger.warning(
                "DOWNLOADER is %s.%s, not crawler.pacing.SlotBoundDownloader (or a subclass): on the asyncio reactor "
                "Scrapy's downloader may exceed a policy's max_concurrency per host when no delay is set",
                type(downloader).__module__, type(downloader).__qualname__,
            )  # fmt: skip
        if config.gc_freeze:
            _StartupFreeze.opened()
            self.frozen = True

    def spider_closed(self, spider: Spider, reason: str) -> None:
        if self.frozen:
            _StartupFreeze.closed()
            self.frozen = False
        self.runtime.final_flush()
        if self.runtime.unwritten_path is not None:
            # The crawl did not keep all it collected where it was meant to:
            # its finish reason says so, and `scrapy crawl` exits non-zero.
            reason = STORE_WRITE_FAILED
            self.crawler.stats.set_value("compliance/finish_reason", reason)
            self.crawler.stats.set_value("compliance/store/unwritten_file", str(self.runtime.unwritten_path))
        try:
            self.runtime.store.finish_crawl(self.runtime.config.crawl_id, reason, self.crawler.stats.get_stats())
        except Exception as exc:  # noqa: BLE001 - the rows are saved; the record of the crawl is what is missing
            logger.error("Could not record the end of crawl %s in the store (%s: %s)", self.runtime.config.crawl_id, type(exc).__name__, exc)
