"""Distributed crawling on scrapy-redis with every guarantee intact.

With ``COMPLIANCE_DISTRIBUTED = True`` the add-on switches the scheduler and
dupefilter to scrapy-redis (one queue and one seen-set per crawl id, shared by
every worker) and this module makes politeness and start-up work global:

- **Pacing**: before a transfer starts, the worker asks Redis for the host's
  next free moment (one Lua script: the host's delay, from Crawl-delay or the
  policy, and its concurrency cap). The host sees the published pace whatever
  the number of workers.
- **Once per cluster**: robots.txt and tdmrep.json are fetched by one worker
  (a lock per origin) and shared through Redis for their TTL.
- **Leases**: a worker that pops a request holds it in its lease hash until
  the response's output has been handled and its items written to the store;
  a worker whose heartbeat stops (SIGKILL, crash) has its leases put back in
  the queue by the others, so nothing it held is lost.

Requests are pickled by scrapy-redis (``meta`` must be picklable).

Redis and scrapy-redis come with the ``cluster`` extra
(``pip install 'ethical-crawler[cluster]'``). This module imports them only
where a distributed crawl uses them, so that the middlewares can import its
payload helpers in a single-process crawl without the extra;
:meth:`crawler.config.Config.from_settings` refuses ``COMPLIANCE_DISTRIBUTED``
when they are missing. The scheduler's queue, a scrapy-redis subclass, lives in
:mod:`crawler.clusterqueue`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

logger = logging.getLogger("crawler.compliance")

#: A worker whose heartbeat is older than this is dead; its leases go back to the queue.
WORKER_TIMEOUT = 10.0
LEASE_META = "compliance_lease"

# Atomically: a skipped host answers -1; a paused host (Retry-After, back-off:
# crawler/compliance/courtesy.py) answers how many ms it stays paused; then
# drop expired holders; if the host is at its concurrency cap or its next
# free moment is in the future, answer how many ms to wait; otherwise take a
# place and set the next free moment. The second value is the host's
# courtesy generation, which the request leaving now belongs to.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('EXISTS', KEYS[4]) == 1 then return {-1, 0} end
local paused = tonumber(redis.call('GET', KEYS[3]) or '0')
if paused > now then return {paused - now, 0} end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return {20, 0} end
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
if nxt > now then return {nxt - now, 0} end
local delay = tonumber(ARGV[1])
redis.call('SET', KEYS[1], now + delay, 'PX', delay + 60000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]) + 60000)
return {0, tonumber(redis.call('HGET', KEYS[5], 'gen') or '0')}
"""

# Pause a host for ARGV[1] ms from Redis' own clock (every worker shares it),
# unless a longer pause is in force; answers the ms the host stays paused.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local want = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if want > cur then
  redis.call('SET', KEYS[1], want, 'PX', tonumber(ARGV[1]) + 60000)
  return want - now
end
return cur - now
"""

# A failure of a request of generation ARGV[1]: if it is the current one,
# count it and start a new generation (answer the count); else answer 0.
_FAILED = """
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
if tonumber(ARGV[1]) ~= gen then return 0 end
local n = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('HSET', KEYS[1], 'gen', gen + 1)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return n
"""

# A success of a request of generation ARGV[1]: if current, reset the count; answer what it was.
_SUCCEEDED = """
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
if tonumber(ARGV[1]) ~= gen then return 0 end
local n = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
if n > 0 then redis.call('HSET', KEYS[1], 'failures', 0) end
return n
"""

#: How long a host's courtesy state (failure count, generation) outlives its last failure.
COURTESY_STATE_TTL = 86_400.0


def keys_for(job: str) -> dict[str, str]:
    base = f"compliance:{job}"
    return {
        "requests": f"{base}:requests",
        "dupefilter": f"{base}:dupefilter",
        "workers": f"{base}:workers",
        "leases": f"{base}:leases:",
        "pace": f"{base}:pace:",
        "once": f"{base}:once:",
    }


class Cluster:
    """This worker's view of the cluster: pacing, shared fetches, leases, heartbeats."""

    def __init__(self, redis_url: str, job: str, worker_id: str) -> None:
        import redis

        self.redis: redis.Redis = redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5)
        self.redis_url = redis_url
        self.job = job
        self.worker_id = worker_id
        self.keys = keys_for(job)
        self._acquire = self.redis.register_script(_ACQUIRE)
        self._pause = self.redis.register_script(_PAUSE)
        self._failed = self.redis.register_script(_FAILED)
        self._succeeded = self.redis.register_script(_SUCCEEDED)
        self._open_items: dict[str, int] = {}
        self._output_done: set[str] = set()

    def ping(self) -> None:
        self.redis.ping()

    # -- pacing -------------------------------------------------------------------

    async def acquire(self, host: str, delay: float, cap: int, lease: float, courtesy_host: str = "") -> tuple[str, int] | None:
        """Wait for the host's next free moment across the cluster.

        Returns the token to release and the courtesy generation of the
        request (see crawler/compliance/courtesy.py), or None when
        ``courtesy_host`` (the URL's host; ``host`` is the download slot's
        key) is skipped. A pause of ``courtesy_host`` holds every worker.
        """
        token = f"{self.worker_id}:{time.monotonic_ns()}"
        courtesy = self.keys["pace"] + (courtesy_host or host)
        keys = [self.keys["pace"] + host + ":next", self.keys["pace"] + host + ":holders",
                courtesy + ":paused", courtesy + ":skipped", courtesy + ":courtesy"]  # fmt: skip
        while True:
            wait_ms, generation = self._acquire(keys=keys, args=[int(delay * 1000), max(cap, 1), token, int(lease * 1000)])
            wait_ms = int(wait_ms)
            if wait_ms < 0:
                return None
            if wait_ms == 0:
                return token, int(generation)
            await asyncio.sleep(wait_ms / 1000)

    # -- courtesy: one state per host for every worker ---------------------------------

    def pause_host(self, host: str, seconds: float) -> float:
        """No worker sends to ``host`` for ``seconds`` (a longer pause in force stays); the seconds it stays paused."""
        left = self._pause(keys=[self.keys["pace"] + host + ":paused"], args=[max(int(math.ceil(seconds * 1000)), 1)])
        return int(left) / 1000

    def host_failed(self, host: str, generation: int) -> int | None:
        """Count a failure of a request of ``generation``: the host's new count, or None if stale."""
        count = int(self._failed(keys=[self.keys["pace"] + host + ":courtesy"],
                                 args=[generation, int(COURTESY_STATE_TTL * 1000)]))  # fmt: skip
        return count or None

    def host_succeeded(self, host: str, generation: int) -> int:
        """Reset the host's count if the request is current; the failures it had."""
        return int(self._succeeded(keys=[self.keys["pace"] + host + ":courtesy"], args=[generation]))

    def skip_host(self, host: str, seconds: float, detail: str) -> None:
        """Every worker refuses requests to ``host`` for ``seconds``."""
        self.redis.set(self.keys["pace"] + host + ":skipped", detail, px=max(int(seconds * 1000), 1))

    def host_skipped(self, host: str) -> tuple[str, float] | None:
        """Why ``host`` is skipped and for how many more seconds, or None."""
        key = self.keys["pace"] + host + ":skipped"
        pipe = self.redis.pipeline()
        pipe.get(key)
        pipe.pttl(key)
        raw, left = pipe.execute()
        if raw is None:
            return None
        return raw.decode("utf-8", "replace"), max(int(left), 0) / 1000

    def release(self, host: str, token: str) -> None:
        self.redis.zrem(self.keys["pace"] + host + ":holders", token)

    # -- fetched once per cluster ----------------------------------------------------

    async def once(self, kind: str, origin: str, ttl: float, fetch: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """The shared result of ``fetch`` for ``origin``: fetched by one worker, reused by all for ``ttl`` s."""
        key = f"{self.keys['once']}{kind}:{origin}"
        lock = key + ":lock"
        deadline = time.monotonic() + 60
        while True:
            raw = self.redis.get(key)
            if raw is not None:
                return json.loads(raw)
            if self.redis.set(lock, self.worker_id, nx=True, px=30_000) or time.monotonic() > deadline:
                try:
                    payload = await fetch()
                    payload.setdefault("fetched_at", time.time())
                    keep = float(payload.get("ttl", ttl))  # e.g. an unreachable file is kept only until its retry
                    self.redis.set(key, json.dumps(payload), px=max(int(keep * 1000), 1))
                    return payload
                finally:
                    if self.redis.get(lock) == self.worker_id.encode():
                        self.redis.delete(lock)
            await asyncio.sleep(0.05)

    # -- leases and heartbeats ----------------------------------------------------------

    def heartbeat(self) -> None:
        self.redis.hset(self.keys["workers"], self.worker_id, time.time())

    # A response's lease is released in the step that makes its last item
    # durable: its output is done (every request it yielded is in the shared
    # queue) and every item it yielded is settled (committed to the store,
    # saved as unwritten, dropped or refused). Never earlier, so a killed
    # worker loses nothing; never on a timer, so a slow pipeline cannot race it.

    def item_opened(self, lease: str) -> None:
        """A response holding ``lease`` yielded an item, not yet settled."""
        self._open_items[lease] = self._open_items.get(lease, 0) + 1

    def output_done(self, lease: str) -> None:
        """The response holding ``lease`` yielded its last output: release it now, or when its items settle."""
        if self._open_items.get(lease, 0) > 0:
            self._output_done.add(lease)
        else:
            self._open_items.pop(lease, None)
            self.ack_now(lease)

    def items_settled(self, leases: list[str]) -> None:
        """One item of each lease in ``leases`` is settled; release the leases with nothing left, in one call."""
        ready = []
        for lease in leases:
            left = self._open_items.get(lease, 0) - 1
            if left > 0:
                self._open_items[lease] = left
                continue
            self._open_items.pop(lease, None)
            if lease in self._output_done:
                self._output_done.discard(lease)
                ready.append(lease)
        if ready:
            self.redis.hdel(self.keys["leases"] + self.worker_id, *ready)

    def ack_now(self, lease: str) -> None:
        self.redis.hdel(self.keys["leases"] + self.worker_id, lease)

    def leave(self) -> None:
        """A clean close: every request this worker took was handled."""
        pipe = self.redis.pipeline()
        pipe.delete(self.keys["leases"] + self.worker_id)
        pipe.hdel(self.keys["workers"], self.worker_id)
        pipe.execute()

    def release_all(self) -> None:
        """This worker is idle: everything it took was handled, so it holds nothing."""
        self._open_items.clear()
        self._output_done.clear()
        self.redis.delete(self.keys["leases"] + self.worker_id)

    def others_hold_work(self) -> bool:
        """True while another worker (alive, or dead and not yet requeued) holds leased requests."""
        workers = [w.decode() for w in self.redis.hkeys(self.keys["workers"])]
        return any(self.redis.hlen(self.keys["leases"] + w) for w in workers if w != self.worker_id)

    def requeue_dead(self, *, including_self: bool = False) -> int:
        """Put the leases of workers whose heartbeat stopped (or, on an early close, our own) back into the queue."""
        now = time.time()
        moved = 0
        for raw_worker, raw_beat in self.redis.hgetall(self.keys["workers"]).items():
            worker = raw_worker.decode()
            if worker == self.worker_id and not including_self:
                continue
            if worker != self.worker_id and now - float(raw_beat) < WORKER_TIMEOUT:
                continue
            lease_key = self.keys["leases"] + worker
            # Only one live worker requeues a given dead worker (the lock), and
            # the lease hash is deleted in the same transaction as the push.
            if not self.redis.set(lease_key + ":reaping", self.worker_id, nx=True, px=30_000):
                continue
            entries = self.redis.hgetall(lease_key)
            pipe = self.redis.pipeline()
            for value in entries.values():
                score, _, data = value.partition(b"|")
                pipe.zadd(self.keys["requests"], {data: float(score)})
            pipe.delete(lease_key)
            pipe.hdel(self.keys["workers"], worker)
            pipe.execute()
            moved += len(entries)
            if entries:
                logger.warning("Worker %s stopped without closing; %d request(s) it held are back in the queue", worker, len(entries))
        return moved


def queued_urls(redis_url: str, key: str) -> list[tuple[bytes, str | None]]:
    """Every request waiting in a scrapy-redis priority queue: (member, its URL)."""
    import pickle

    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    found = []
    for member, _ in client.zscan_iter(key):
        try:
            url = pickle.loads(member).get("url")  # noqa: S301 - scrapy-redis' own pickle format
        except Exception:  # noqa: BLE001
            url = None
        found.append((member, url))
    return found


def leased_urls(client: Any, queue_key: str) -> list[tuple[bytes, bytes, str | None]]:
    """Every request leased by a worker of the crawl owning ``queue_key``: (lease hash, field, URL)."""
    import pickle

    prefix = queue_key.removesuffix(":requests") + ":leases:"
    found = []
    for key in client.scan_iter(match=prefix + "*"):
        if key.endswith(b":reaping"):
            continue
        for field, value in client.hscan_iter(key):
            _, _, data = value.partition(b"|")
            try:
                url = pickle.loads(data).get("url")  # noqa: S301 - scrapy-redis' own pickle format
            except Exception:  # noqa: BLE001
                url = None
            found.append((key, field, url))
    return found


def encode_payload(body: bytes) -> str:
    return base64.b64encode(body).decode("ascii")


def decode_payload(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"))
