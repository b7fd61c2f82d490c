"""Per-host pacing through Scrapy's own download slots.

robots.txt (Crawl-delay, Request-rate) and platform policies (rate) each ask
for a minimum delay and a maximum concurrency; the slowest wins. A slot may
not exist yet, or may be garbage-collected after a quiet minute and re-built
from the per-slot settings, so the pace is written there too. Jitter is
switched off for paced slots: RANDOMIZE_DOWNLOAD_DELAY would otherwise go as
low as half the delay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scrapy.core.downloader import Downloader

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler


class SlotBoundDownloader(Downloader):
    """Scrapy's downloader, with a slot's concurrency held on the asyncio reactor.

    Scrapy 2.19 takes requests from a slot's queue while
    ``free_transfer_slots()`` (the slot's concurrency less its requests in
    transfer) is above zero, but counts a request as in transfer only when
    its download task first runs, which on the asyncio reactor is after the
    loop: with no delay, every queued request of a host started at once (12
    in flight under a policy's ``max_concurrency: 2``, in
    tests/test_e2e_courtesy.py). Here a request counts as in transfer from
    the moment it leaves the queue; Scrapy's ``_download`` adds it again
    (a set) and removes it when the transfer ends, as before.
    """

    def _wait_for_download(self, slot: Any, request: Any, queue_dfd: Any) -> Any:
        slot.transferring.add(request)
        return super()._wait_for_download(slot, request, queue_dfd)


def downloader_problem(downloader: type = Downloader) -> str | None:
    """Why :class:`SlotBoundDownloader` cannot work with the installed Scrapy, or None.

    It overrides a private method of Scrapy's downloader; a Scrapy release
    that renames it or changes its arguments would leave requests counted
    as in transfer for ever (a host stalls) or fail inside the downloader. The
    crawl command checks this before a compliance crawl starts.
    """
    import inspect

    import scrapy

    method = getattr(downloader, "_wait_for_download", None)
    wanted = ["self", "slot", "request", "queue_dfd"]
    if method is None or not inspect.iscoroutinefunction(method) or list(inspect.signature(method).parameters) != wanted:
        return (f"Scrapy {scrapy.__version__}'s downloader has no _wait_for_download(slot, request, queue_dfd) coroutine, "
                "which crawler.pacing.SlotBoundDownloader relies on to hold a policy's max_concurrency; "
                "install a Scrapy version this package supports (see pyproject.toml)")  # fmt: skip
    return None


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
