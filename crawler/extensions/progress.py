"""The crawl's live line of progress on a terminal (see crawler/progress_display.py).

Read from Scrapy's stats and the downloader's slots by a timer twice a
second, never per request: pages and pages/s, items stored, refusals per gate
and the hosts waiting and why. Off (``NotConfigured``) when stderr is not a
terminal or ``COMPLIANCE_PROGRESS`` is false.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import create_looping_call

from crawler.progress_display import SAMPLE_INTERVAL, CrawlSnapshot, LiveLine, RateMeter, crawl_line, refusals_by_gate, wanted
from crawler.runtime import ComplianceRuntime

if TYPE_CHECKING:
    from scrapy.crawler import Crawler


def hosts_waiting(crawler: Crawler) -> Counter[str]:
    """Hosts that have requests waiting, by why: a pause after distress (``retry-after``,
    ``backoff``), else the pace their download slot keeps (``crawl-delay``, ``concurrency``)."""
    from crawler.middlewares.courtesy import HostCourtesy

    paused = HostCourtesy.of(crawler).waiting()
    waiting: Counter[str] = Counter(paused.values())
    engine = crawler.engine
    if engine is None or engine.downloader is None:
        return waiting
    for key, slot in list(engine.downloader.slots.items()):
        if key in paused or not slot.queue:
            continue
        if slot.delay > 0:
            waiting["crawl-delay"] += 1
        elif len(slot.transferring) >= slot.concurrency:
            waiting["concurrency"] += 1
    return waiting


class CrawlProgress:
    def __init__(self, crawler: Crawler) -> None:
        runtime = ComplianceRuntime.of(crawler)
        if not wanted(runtime.config.progress):
            raise NotConfigured("COMPLIANCE_PROGRESS is off, or stderr is not a terminal")
        self.crawler = crawler
        self.started = time.monotonic()
        self.rate = RateMeter()
        self.live: LiveLine | None = None
        self.loop = create_looping_call(self.refresh)
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CrawlProgress:
        return cls(crawler)

    def snapshot(self, finished: str | None = None) -> CrawlSnapshot:
        stats: dict[str, Any] = self.crawler.stats.get_stats() if self.crawler.stats is not None else {}
        now = time.monotonic()
        pages = int(stats.get("response_received_count", 0))
        return CrawlSnapshot(
            elapsed=now - self.started,
            pages=pages,
            rate=self.rate.add(now, pages),
            stored=int(stats.get("compliance/store/items_written", 0)),
            refused=refusals_by_gate(stats),
            waiting={} if finished else dict(hosts_waiting(self.crawler)),
            finished=finished,
        )

    def spider_opened(self) -> None:
        self.started = time.monotonic()
        self.live = LiveLine()
        self.live.start(crawl_line(self.snapshot()))
        self.loop.start(SAMPLE_INTERVAL, now=False)

    def refresh(self) -> None:
        if self.live is not None:
            self.live.update(crawl_line(self.snapshot()))

    def spider_closed(self, reason: str) -> None:
        if self.loop.running:
            self.loop.stop()
        if self.live is not None:
            final = self.crawler.stats.get_value("compliance/finish_reason") if self.crawler.stats is not None else None
            self.live.stop(crawl_line(self.snapshot(finished=str(final or reason))))
            self.live = None
