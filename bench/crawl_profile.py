"""Scrapy extensions for ``bench/crawl_speed.py``.

``CrawlProfile`` (``--gate-shares``): cProfile from spider open to spider
close, the span the benchmark's pages/s is measured over (``scrapy
--profile`` profiles the whole process, start-up included, and spreads it
over the pages), and the garbage collector's time in that span, by
generation, written beside the profile as JSON. Settings:
``CRAWL_PROFILE_FILE=PATH``; ``CRAWL_PROFILE_CPROFILE=False`` keeps only the
collector's figures (cProfile slows the crawl).

``FreezeStartup`` (``--freeze-plain``): ``gc.freeze()`` at spider open, what
the add-on does (``COMPLIANCE_GC_FREEZE``), for a crawl without the add-on:
the comparison then leaves the collector out and shows the stack's own cost.

``CrawlCpu`` (every crawl of the benchmark): the CPU time from spider open
to spider close, in the stats as ``bench/crawl_cpu_s``.

Enable them with ``-s EXTENSIONS={"crawl_profile.CrawlProfile": 0}`` and
``bench/`` on ``PYTHONPATH`` (crawl_speed.py does both).
"""

from __future__ import annotations

import cProfile
import gc
import json
import resource
import time
from typing import Any

from scrapy import signals


class CrawlProfile:
    def __init__(self, path: str, profiling: bool) -> None:
        self.path = path
        self.profile = cProfile.Profile() if profiling else None
        self.gc_seconds = [0.0, 0.0, 0.0]  # by generation
        self.gc_runs = [0, 0, 0]
        self._gc_started = 0.0
        self.objects_at_open = 0

    @classmethod
    def from_crawler(cls, crawler: Any) -> CrawlProfile:
        extension = cls(crawler.settings["CRAWL_PROFILE_FILE"], crawler.settings.getbool("CRAWL_PROFILE_CPROFILE", True))
        crawler.signals.connect(extension.opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.closed, signal=signals.spider_closed)
        return extension

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_seconds[info["generation"]] += time.perf_counter() - self._gc_started
            self.gc_runs[info["generation"]] += 1

    def opened(self, spider: Any) -> None:
        self.objects_at_open = len(gc.get_objects())
        gc.callbacks.append(self._gc)
        if self.profile is not None:
            self.profile.enable()

    def closed(self, spider: Any) -> None:
        if self.profile is not None:
            self.profile.disable()
            self.profile.dump_stats(self.path)
        gc.callbacks.remove(self._gc)
        figures = {"objects_at_open": self.objects_at_open, "frozen": gc.get_freeze_count(),
                   "gc_seconds": self.gc_seconds, "gc_runs": self.gc_runs}  # fmt: skip
        with open(self.path + ".gc.json", "w") as out:
            json.dump(figures, out)


class FreezeStartup:
    @classmethod
    def from_crawler(cls, crawler: Any) -> FreezeStartup:
        extension = cls()
        crawler.signals.connect(extension.opened, signal=signals.spider_opened)
        return extension

    def opened(self, spider: Any) -> None:
        gc.collect()
        gc.freeze()


class CrawlCpu:
    """The crawl process's CPU time from spider open to spider close, in the stats (``bench/crawl_cpu_s``).

    On a shared machine a crawl's pages/s moves with the other load; the CPU
    time it spent on its pages moves much less, so the benchmark reports the
    ratio of CPU per page beside the ratio of pages/s (every kind runs this).
    """

    def __init__(self, crawler: Any) -> None:
        self.crawler = crawler
        self.started = 0.0
        crawler.signals.connect(self.opened, signal=signals.spider_opened)
        crawler.signals.connect(self.closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Any) -> CrawlCpu:
        return cls(crawler)

    @staticmethod
    def _cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def opened(self, spider: Any) -> None:
        self.started = self._cpu()

    def closed(self, spider: Any) -> None:
        self.crawler.stats.set_value("bench/crawl_cpu_s", round(self._cpu() - self.started, 3))
