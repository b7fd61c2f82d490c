"""One worker of a distributed crawl (``COMPLIANCE_DISTRIBUTED``): heartbeats, leases, staying open.

- Every second the worker says it is alive in Redis and puts back in the
  queue the requests leased by workers that stopped beating (SIGKILL, crash).
- A response's lease is released once its output was handled and its items
  written (see :mod:`crawler.cluster`); a failed transfer's by the transfer
  gate (crawler/extensions/notices.py), with the next exchange (within
  ``FLUSH_EVERY`` seconds: a retry it causes usually goes to the queue in
  the same step).
- While other workers still hold requests (their output may add more), an idle
  worker stays open instead of closing early; it looks for new work every
  0.25 s instead of Scrapy's default 5 s.
- At a clean close the worker drops its (handled) leases.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import DontCloseSpider, NotConfigured
from scrapy.utils.asyncio import create_looping_call

from crawler.runtime import ComplianceRuntime

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger("crawler.compliance")

IDLE_POLL = 0.25


class ClusterWorker:
    def __init__(self, crawler: Crawler) -> None:
        runtime = ComplianceRuntime.of(crawler)
        if not runtime.config.distributed:
            raise NotConfigured("COMPLIANCE_DISTRIBUTED is off")
        self.crawler = crawler
        self.runtime = runtime
        self.cluster = runtime.cluster
        self.cluster.ping()
        self.loop = create_looping_call(self.tick)
        for handler, signal in (
            (self.engine_started, signals.engine_started),
            (self.spider_opened, signals.spider_opened),
            (self.spider_idle, signals.spider_idle),
            (self.spider_closed, signals.spider_closed),
        ):
            crawler.signals.connect(handler, signal=signal)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ClusterWorker:
        return cls(crawler)

    def engine_started(self) -> None:
        # Scrapy asks the scheduler for work every 5 s when idle; other
        # workers keep adding work to the shared queue, so ask more often.
        # (A private attribute of ExecutionEngine, read when the engine starts
        # processing requests, right after this signal.)
        self.crawler.engine._SLOT_HEARTBEAT_INTERVAL = IDLE_POLL  # type: ignore[union-attr]

    def spider_opened(self) -> None:
        self.cluster.heartbeat()
        self.loop.start(1.0, now=False)

    def _requeue_dead(self) -> None:
        moved = self.cluster.requeue_dead()
        if moved and self.crawler.stats is not None:
            self.crawler.stats.inc_value("compliance/cluster/requeued", moved)

    def tick(self) -> None:
        try:
            self.cluster.heartbeat()
            self._requeue_dead()
        except Exception:  # noqa: BLE001 - Redis hiccup: logged, retried next second
            logger.exception("Cluster heartbeat failed; retrying in 1 s")

    def spider_idle(self) -> None:
        """Stay open while the shared queue has requests or a live worker holds some."""
        # Idle: every request this worker took is handled; write its items, then it holds nothing.
        self.runtime.flush()
        self.cluster.release_all()
        self._requeue_dead()
        if self.cluster.redis.zcard(self.cluster.keys["requests"]) > 0 or self.cluster.others_hold_work():
            raise DontCloseSpider

    def spider_closed(self, reason: str) -> None:
        if self.loop.running:
            self.loop.stop()
        if reason == "finished":
            self.cluster.leave()
        else:
            # Shut down early (e.g. a signal): give the leases back now, so
            # the others need not wait for the heartbeat to expire.
            self.cluster.requeue_dead(including_self=True)
