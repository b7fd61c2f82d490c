"""The shared scheduler queue of a distributed crawl (``COMPLIANCE_DISTRIBUTED``).

A module of its own because it subclasses scrapy-redis' queue, which comes
with the ``cluster`` extra: Scrapy loads it (``SCHEDULER_QUEUE_CLASS``, set by
the add-on) only in a distributed crawl.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scrapy_redis.queue import PriorityQueue

from crawler.cluster import LEASE_META, keys_for

if TYPE_CHECKING:
    from scrapy import Request


# Pop the best request and lease it to this worker in one step.
_POP_AND_LEASE = """
local found = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #found == 0 then return nil end
redis.call('ZREM', KEYS[1], found[1])
local lease = redis.sha1hex(found[1])
redis.call('HSET', KEYS[2], lease, found[2] .. '|' .. found[1])
return {found[1], lease}
"""


class LeasedPriorityQueue(PriorityQueue):
    """scrapy-redis' priority queue, where a pop leases the request to this worker (see :class:`crawler.cluster.Cluster`)."""

    def __init__(self, server: Any, spider: Any, key: str, serializer: Any = None) -> None:
        super().__init__(server, spider, key, serializer)
        from crawler.runtime import ComplianceRuntime

        runtime = ComplianceRuntime.of(spider.crawler)
        self.lease_key = keys_for(runtime.config.crawl_id)["leases"] + runtime.worker_id
        self._pop = server.register_script(_POP_AND_LEASE)

    def pop(self, timeout: int = 0) -> Request | None:
        found = self._pop(keys=[self.key, self.lease_key])
        if not found:
            return None
        data, lease = found
        request = self._decode_request(data)
        request.meta[LEASE_META] = lease.decode() if isinstance(lease, bytes) else lease
        return request
