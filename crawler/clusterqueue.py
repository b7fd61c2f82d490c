"""The shared scheduler of a distributed crawl (``COMPLIANCE_DISTRIBUTED``).

A module of its own because it subclasses scrapy-redis' scheduler and queue,
which come with the ``cluster`` extra: Scrapy loads it (``SCHEDULER`` and
``SCHEDULER_QUEUE_CLASS``, set by the add-on) only in a distributed crawl.

scrapy-redis makes two round trips for every link a page yields (the
seen-set, then the queue) and one for every request it pops. Here they are
batched (see :meth:`crawler.cluster.Cluster.exchange`):

- a request the scheduler takes goes to the shared queue with the next
  exchange (when this worker needs work, or within ``FLUSH_EVERY`` seconds),
  together with the others: the seen-set and the queue in one script;
- the fingerprints this worker sent are kept here (the seen-set only grows):
  a link to one of them is a duplicate without asking Redis, and the
  scheduling gate leaves it to the dupefilter (crawler/extensions/scheduling.py);
- a pop leases as many requests as the engine has room for now (it asks for
  them one by one until its downloader is full): a worker takes no more than
  before, in fewer round trips.

The fingerprints and the queue's format are scrapy-redis' own, so
``scrapy purge`` and a crawl resumed from Redis read them as before.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from scrapy_redis.queue import PriorityQueue
from scrapy_redis.scheduler import Scheduler

from crawler.cluster import FLUSH_EVERY, LEASE_META

if TYPE_CHECKING:
    from scrapy import Request

logger = logging.getLogger("crawler.compliance")

#: After a pop found the queue empty, the next one waits this long (unless this worker has requests to push).
EMPTY_RETRY = 0.05
#: Fingerprints remembered locally; past it, the set starts over (Redis' seen-set stays the reference).
SEEN_MAX = 1_000_000


class LeasedPriorityQueue(PriorityQueue):
    """scrapy-redis' priority queue: its length and its request format (pops go through :class:`ClusterScheduler`)."""


class ClusterScheduler(Scheduler):
    """scrapy-redis' scheduler, its Redis traffic batched (see the module text)."""

    def open(self, spider: Any) -> None:
        super().open(spider)
        from crawler.runtime import ComplianceRuntime
        from scrapy.utils.asyncio import create_looping_call

        self.cluster = ComplianceRuntime.of(spider.crawler).cluster
        self.crawler = spider.crawler
        #: Leased for the engine, which takes them right away (see :meth:`_room`).
        self.reserve: deque[Request] = deque()
        #: The fingerprints this worker queued (read by the scheduling gate, crawler/extensions/scheduling.py).
        self.seen: set[str] = set()
        self._fingerprints: WeakKeyDictionary[Request, str] = WeakKeyDictionary()
        self._empty_until = 0.0
        self._failing = False
        self._loop = create_looping_call(self.flush)
        self._loop.start(FLUSH_EVERY, now=False)

    def close(self, reason: str) -> None:
        loop = getattr(self, "_loop", None)
        if loop is not None and loop.running:
            loop.stop()
        super().close(reason)

    def __len__(self) -> int:
        return len(self.reserve) + self.cluster.pushes_waiting() + len(self.queue)

    def has_pending_requests(self) -> bool:
        return bool(self.reserve) or self.cluster.has_pushes() or len(self.queue) > 0

    def fingerprint(self, request: Request) -> str:
        found = self._fingerprints.get(request)
        if found is None:
            found = self._fingerprints[request] = self.df.request_fingerprint(request)
        return found

    def enqueue_request(self, request: Request) -> bool:
        fingerprint = ""
        if not request.dont_filter:
            fingerprint = self.fingerprint(request)
            if fingerprint in self.seen:
                self.df.log(request, self.spider)
                if self.stats:
                    self.stats.inc_value("dupefilter/filtered")
                return False
            if len(self.seen) >= SEEN_MAX:
                self.seen.clear()
            self.seen.add(fingerprint)
        self.cluster.push(fingerprint, -request.priority, self.queue._encode_request(request), request.url)
        return True

    def next_request(self) -> Request | None:
        if not self.reserve:
            self._exchange(self._room())
        if not self.reserve:
            return None
        if self.stats:
            self.stats.inc_value("scheduler/dequeued/redis")
        return self.reserve.popleft()

    def _room(self) -> int:
        """How many requests the engine takes now: it asks until its downloader holds CONCURRENT_REQUESTS."""
        downloader = getattr(self.crawler.engine, "downloader", None)
        total = getattr(downloader, "total_concurrency", 0)
        if downloader is None or total <= 0:
            return 1
        return max(total - len(downloader.active), 1)

    def flush(self) -> None:
        """Every FLUSH_EVERY seconds: send what waits to be sent."""
        try:
            self._exchange(0, only_if_pending=True)
        except Exception as exc:  # noqa: BLE001 - kept for the next exchange; said once until it works again
            if not self._failing:
                logger.error("Could not reach Redis (%s: %s); retrying every %.2f s", type(exc).__name__, exc, FLUSH_EVERY)
            self._failing = True
        else:
            self._failing = False

    def _exchange(self, want: int, only_if_pending: bool = False) -> None:
        cluster = self.cluster
        if only_if_pending and not cluster.pending():
            return
        # Right after an empty pop, pop again only with requests of our own to push.
        pops = want if want > 0 and (cluster.has_pushes() or time.monotonic() >= self._empty_until) else 0
        leased = cluster.exchange(pops)
        for data, lease in leased:
            request = self.queue._decode_request(data)
            request.meta[LEASE_META] = lease
            self.reserve.append(request)
        if pops and len(leased) < pops:
            self._empty_until = time.monotonic() + EMPTY_RETRY
