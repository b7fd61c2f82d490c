"""Per-host pacing through Scrapy's own download slots.

robots.txt (Crawl-delay, Request-rate) and platform policies (rate) each ask
for a minimum delay and a maximum concurrency; the slowest wins. A slot may
not exist yet, or may be garbage-collected after a quiet minute and re-built
from the per-slot settings, so the pace is written there too. Jitter is
switched off for paced slots: RANDOMIZE_DOWNLOAD_DELAY would otherwise go as
low as half the delay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler


def pace(crawler: Crawler, request: Request, delay: float = 0.0, concurrency: int | None = None) -> None:
    """Make ``request``'s slot at least ``delay`` apart and at most ``concurrency`` wide."""
    downloader = crawler.engine.downloader
    key = downloader.get_slot_key(request)
    settings = downloader.per_slot_settings.setdefault(key, {})
    if delay > settings.get("delay", 0):
        settings["delay"] = delay
        settings["jitter"] = 0
    if concurrency is not None and concurrency < settings.get("concurrency", 1 << 30):
        settings["concurrency"] = concurrency
    slot = downloader.slots.get(key)
    if slot is None:
        return
    if delay > slot.delay or (delay and slot.jitter):
        slot.delay = max(slot.delay, delay)
        slot.jitter = 0
    if concurrency is not None and concurrency < slot.concurrency:
        slot.concurrency = concurrency
