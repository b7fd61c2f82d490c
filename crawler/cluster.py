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

Round trips are batched (``bench/cluster_speed.py`` counts them): the
requests a worker discovers, the leases it releases and the requests it
takes next travel together in one script call (:meth:`Cluster.exchange`),
when its scheduler needs work or every :data:`FLUSH_EVERY` seconds; the
pace script takes back the places this worker's finished transfers held.
Nothing is released early by batching: a lease leaves in the same atomic
step as (or after) the requests its response yielded, a place under a
host's cap is given back later, never sooner.

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
#: Seconds at most between a worker's exchanges with Redis while it has
#: something to send: discovered requests, leases and pace places to give back.
FLUSH_EVERY = 0.1

# Atomically: give back the places of this worker's finished transfers
# (ARGV[5...]); a skipped host answers -1; a paused host (Retry-After,
# back-off: crawler/compliance/courtesy.py) answers how many ms it stays
# paused; then drop expired holders; if the host is at its concurrency cap or
# its next free moment is in the future, answer how many ms to wait;
# otherwise take a place and set the next free moment. The second value is
# the host's courtesy generation, which the request leaving now belongs to,
# the third its failures in a row (see Cluster.host_succeeded), the fourth
# whether a worker found the host at its cap in the last second (KEYS[6]):
# then places go back as soon as they are free (see Cluster.release).
#
# Turns of a paced host go first come, first served: a request told to wait
# for a pause or for the next free moment joins the host's line (KEYS[7]: by
# when it first asked; KEYS[8]: by when it will have asked again, or it
# leaves the line), and a free moment goes to the head of the line. Without
# it, the worker whose own download slot wakes its next request at the very
# moment took every turn.
_ACQUIRE = """
if #ARGV > 4 then redis.call('ZREM', KEYS[2], unpack(ARGV, 5)) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function wait_in_line(ms)
  redis.call('ZADD', KEYS[7], 'NX', now, ARGV[3])
  redis.call('HSET', KEYS[8], ARGV[3], now + ms + 1000)
  redis.call('PEXPIRE', KEYS[7], ms + 60000)
  redis.call('PEXPIRE', KEYS[8], ms + 60000)
  return {ms, 0, 0, 0}
end
if redis.call('EXISTS', KEYS[4]) == 1 then return {-1, 0, 0, 0} end
local paused = tonumber(redis.call('GET', KEYS[3]) or '0')
if paused > now then return wait_in_line(paused - now) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[6], 1, 'PX', 1000)
  return {20, 0, 0, 0}
end
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
if nxt > now then return wait_in_line(nxt - now) end
while true do
  local head = redis.call('ZRANGE', KEYS[7], 0, 0)[1]
  if not head or head == ARGV[3] then break end
  if tonumber(redis.call('HGET', KEYS[8], head) or '0') >= now then return wait_in_line(5) end
  redis.call('ZREM', KEYS[7], head)
  redis.call('HDEL', KEYS[8], head)
end
redis.call('ZREM', KEYS[7], ARGV[3])
redis.call('HDEL', KEYS[8], ARGV[3])
local delay = tonumber(ARGV[1])
redis.call('SET', KEYS[1], now + delay, 'PX', delay + 60000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]) + 60000)
local state = redis.call('HMGET', KEYS[5], 'gen', 'failures')
return {0, tonumber(state[1] or '0'), tonumber(state[2] or '0'), redis.call('EXISTS', KEYS[6])}
"""

# One round trip for the scheduler's traffic (see Cluster.exchange), atomically:
# push each new request (a fingerprint the seen-set did not have yet, or ''
# for dont_filter) into the queue; then release leases; then give back pace
# places; then pop up to ARGV[3] requests and lease them to this worker.
# KEYS: queue, seen-set, this worker's lease hash, then the hosts' holder sets.
# ARGV: pushes, leases, pops, holder sets; then (fingerprint, score, request)
# per push; the lease fields; per holder set its count and tokens.
# Answers the number of requests pushed, then (request, lease) per pop.
_EXCHANGE = """
local pushes, acks, pops, holders = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local i, added = 5, 0
for _ = 1, pushes do
  if ARGV[i] == '' or redis.call('SADD', KEYS[2], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i + 2])
    added = added + 1
  end
  i = i + 3
end
for _ = 1, acks do
  redis.call('HDEL', KEYS[3], ARGV[i])
  i = i + 1
end
for h = 1, holders do
  local n = tonumber(ARGV[i])
  for j = 1, n do redis.call('ZREM', KEYS[3 + h], ARGV[i + j]) end
  i = i + n + 1
end
local out = {added}
if pops > 0 then
  local found = redis.call('ZPOPMIN', KEYS[1], pops)
  for j = 1, #found, 2 do
    local lease = redis.sha1hex(found[j])
    redis.call('HSET', KEYS[3], lease, found[j + 1] .. '|' .. found[j])
    out[#out + 1] = found[j]
    out[#out + 1] = lease
  end
end
return out
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

#: Hosts whose courtesy state a worker remembers (see Cluster.host_succeeded); past it, it starts over.
_MAX_HOSTS = 100_000

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

    def __init__(self, redis_url: str, job: str, worker_id: str, stats: Any = None) -> None:
        import redis

        self.redis: redis.Redis = redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5)
        self.redis_url = redis_url
        self.job = job
        self.worker_id = worker_id
        self.keys = keys_for(job)
        self.stats = stats
        self._acquire = self.redis.register_script(_ACQUIRE)
        self._exchange = self.redis.register_script(_EXCHANGE)
        self._pause = self.redis.register_script(_PAUSE)
        self._failed = self.redis.register_script(_FAILED)
        self._succeeded = self.redis.register_script(_SUCCEEDED)
        self._open_items: dict[str, int] = {}
        self._output_done: set[str] = set()
        #: Sent with the next exchange: requests to push (fingerprint or "", score, request, URL), leases to release.
        self._pushes: list[tuple[str, float, bytes, str]] = []
        self._acks: list[str] = []
        #: Per host key: the pace tokens of this worker's finished transfers, given back with its next acquire or exchange.
        self._releases: dict[str, list[str]] = {}
        #: Per host key: the places this worker holds (transfers under way), and the acquires waiting for one of them.
        self._held: dict[str, int] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        #: Per host: (courtesy generation, failures in a row) as this worker's last acquire found them.
        self._courtesy: dict[str, tuple[int, int]] = {}
        #: Host keys whose places go back at once (see :meth:`release`): paced, or contended by other workers.
        self._prompt: set[str] = set()
        #: Per host key: the lock one request holds while it asks Redis for a turn, and how many want it.
        self._asking: dict[str, tuple[asyncio.Lock, int]] = {}

    def ping(self) -> None:
        self.redis.ping()

    # -- pacing -------------------------------------------------------------------

    async def acquire(self, host: str, delay: float, cap: int, lease: float, courtesy_host: str = "") -> tuple[str, int] | None:
        """Wait for the host's next free moment across the cluster.

        Returns the token to release and the courtesy generation of the
        request (see crawler/compliance/courtesy.py), or None when
        ``courtesy_host`` (the URL's host; ``host`` is the download slot's
        key) is skipped. A pause of ``courtesy_host`` holds every worker.
        One round trip, unless the host must be waited for.
        """
        cap = max(cap, 1)
        courtesy_host = courtesy_host or host
        token = f"{self.worker_id}:{time.monotonic_ns()}"
        keys = self._pace_keys(host, courtesy_host)
        args = [int(delay * 1000), cap, token, int(lease * 1000)]
        wait_ms = 0
        if host not in self._asking:
            await self._own_place(host, cap)
            wait_ms, generation = self._ask(host, keys, args, delay, courtesy_host)
            if wait_ms <= 0:
                return None if wait_ms < 0 else (token, generation)
        # The host must be waited for: one request of this worker at a time
        # waits and asks again; the others queue here instead of polling too.
        lock, users = self._asking.get(host) or (asyncio.Lock(), 0)
        self._asking[host] = (lock, users + 1)
        try:
            async with lock:
                while True:
                    if wait_ms:
                        await asyncio.sleep(wait_ms / 1000)
                    await self._own_place(host, cap)
                    wait_ms, generation = self._ask(host, keys, args, delay, courtesy_host)
                    if wait_ms <= 0:
                        return None if wait_ms < 0 else (token, generation)
        finally:
            lock, users = self._asking[host]
            if users > 1:
                self._asking[host] = (lock, users - 1)
            else:
                del self._asking[host]

    def _pace_keys(self, host: str, courtesy_host: str) -> list[str]:
        pace, courtesy = self.keys["pace"] + host, self.keys["pace"] + courtesy_host
        return [pace + ":next", pace + ":holders", courtesy + ":paused", courtesy + ":skipped", courtesy + ":courtesy",
                pace + ":contended", pace + ":line", pace + ":line:until"]  # fmt: skip

    async def _own_place(self, host: str, cap: int) -> None:
        """Wait while this worker's own transfers fill the host's cap (for one of them to end, not on Redis)."""
        while self._held.get(host, 0) >= cap:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(host, []).append(waiter)
            await waiter

    def _ask(self, host: str, keys: list[str], args: list[Any], delay: float, courtesy_host: str) -> tuple[int, int]:
        """One pace decision (a round trip): (0, the courtesy generation) when the place is taken, else (ms to wait, 0), -1: skipped."""
        given_back = self._releases.pop(host, [])
        try:
            wait_ms, generation, failures, contended = self._acquire(keys=keys, args=[*args, *given_back])
        except BaseException:
            self._releases.setdefault(host, [])[:0] = given_back
            raise
        if int(wait_ms) == 0:
            self._held[host] = self._held.get(host, 0) + 1
            if len(self._courtesy) >= _MAX_HOSTS:
                self._courtesy.clear()
                self._prompt.clear()
            self._courtesy[courtesy_host] = (int(generation), int(failures))
            if delay > 0 or int(contended):
                self._prompt.add(host)
            else:
                self._prompt.discard(host)
        return int(wait_ms), int(generation)

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
        """Reset the host's count if the request is current; the failures it had.

        No round trip when this worker's last acquire of the host proves there
        is nothing to reset: a later generation (the request is stale), or the
        request's generation with no failure (a failure counted on a
        generation also ends it, so the count is still 0 while it lasts).
        """
        seen = self._courtesy.get(host)
        if seen is not None and (seen[0] > generation or seen == (generation, 0)):
            return 0
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
        """A transfer ended: its place under the host's cap goes back with the next acquire or exchange.

        It goes back at once when the host is paced (its next request waits
        for the delay anyway, so one round trip per delay costs nothing, and
        every worker then races for the next turn on equal terms) or when
        another worker found it at its cap in the last second (waiting for the
        place this one holds).
        """
        if host in self._prompt:
            self.redis.zrem(self.keys["pace"] + host + ":holders", token)
        else:
            self._releases.setdefault(host, []).append(token)
        held = self._held.get(host, 0) - 1
        if held > 0:
            self._held[host] = held
        else:
            self._held.pop(host, None)
        for waiter in self._waiters.pop(host, ()):
            if not waiter.done():  # each checks again whether a place is free
                waiter.set_result(None)

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

    # -- the scheduler's traffic: one round trip for many requests and leases -------

    def push(self, fingerprint: str, score: float, data: bytes, url: str) -> None:
        """Queue a request for the shared queue (sent with the next exchange); ``fingerprint`` "" for dont_filter."""
        self._pushes.append((fingerprint, score, data, url))

    def has_pushes(self) -> bool:
        return bool(self._pushes)

    def pushes_waiting(self) -> int:
        return len(self._pushes)

    def pending(self) -> bool:
        """Something waits for the next exchange: requests to push, leases or pace places to give back."""
        return bool(self._pushes or self._acks or self._releases)

    def drop_pushes(self, refused: Callable[[str], bool]) -> list[str]:
        """Take back the requests not sent yet whose URL ``refused`` (a notice just adopted): their URLs."""
        kept, dropped = [], []
        for entry in self._pushes:
            (dropped if refused(entry[3]) else kept).append(entry)
        self._pushes = kept
        return [entry[3] for entry in dropped]

    def exchange(self, pops: int = 0) -> list[tuple[bytes, str]]:
        """One round trip: push the queued requests, release the leases and pace places to give back, lease up to ``pops`` requests.

        Atomic (one script), in that order: a lease never leaves before the
        requests its response yielded are in the queue. Returns the leased
        (request, lease) pairs. On a failure nothing queued here is lost: it
        goes with the next exchange.
        """
        pushes, acks, releases = self._pushes, self._acks, self._releases
        if not (pushes or acks or releases or pops):
            return []
        self._pushes, self._acks, self._releases = [], [], {}
        keys = [self.keys["requests"], self.keys["dupefilter"], self.keys["leases"] + self.worker_id]
        args: list[Any] = [len(pushes), len(acks), pops, len(releases)]
        for fingerprint, score, data, _ in pushes:
            args += (fingerprint, score, data)
        args += acks
        for host, tokens in releases.items():
            keys.append(self.keys["pace"] + host + ":holders")
            args += (len(tokens), *tokens)
        try:
            answer = self._exchange(keys=keys, args=args)
        except BaseException:
            self._pushes[:0], self._acks[:0] = pushes, acks
            for host, tokens in releases.items():
                self._releases.setdefault(host, [])[:0] = tokens
            raise
        if self.stats is not None and pushes:
            added = int(answer[0])
            self.stats.inc_value("scheduler/enqueued/redis", added)
            if added < len(pushes):
                self.stats.inc_value("dupefilter/filtered", len(pushes) - added)  # another worker queued them first
        leased = answer[1:]
        return [(leased[j], leased[j + 1].decode()) for j in range(0, len(leased), 2)]

    # -- leases and heartbeats ----------------------------------------------------------

    def heartbeat(self) -> None:
        self.redis.hset(self.keys["workers"], self.worker_id, time.time())

    # A response's lease is released in the step that makes its last item
    # durable: its output is done (every request it yielded is queued for
    # the shared queue, and goes in the same exchange as the release or an
    # earlier one) and every item it yielded is settled (committed to the
    # store, saved as unwritten, dropped or refused). Never earlier, so a
    # killed worker loses nothing; never on a timer, so a slow pipeline
    # cannot race it.

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
        """One item of each lease in ``leases`` is settled; release the leases with nothing left."""
        for lease in leases:
            left = self._open_items.get(lease, 0) - 1
            if left > 0:
                self._open_items[lease] = left
                continue
            self._open_items.pop(lease, None)
            if lease in self._output_done:
                self._output_done.discard(lease)
                self._acks.append(lease)

    def ack_now(self, lease: str) -> None:
        """Nothing more will come of the request holding ``lease``: released with the next exchange."""
        self._acks.append(lease)

    def leave(self) -> None:
        """A clean close: every request this worker took was handled."""
        self.exchange()
        pipe = self.redis.pipeline()
        pipe.delete(self.keys["leases"] + self.worker_id)
        pipe.hdel(self.keys["workers"], self.worker_id)
        pipe.execute()

    def release_all(self) -> None:
        """This worker is idle: everything it took was handled, so it holds nothing."""
        self.exchange()  # what it discovered goes to the queue before its leases go
        self._open_items.clear()
        self._output_done.clear()
        self.redis.delete(self.keys["leases"] + self.worker_id)

    def others_hold_work(self) -> bool:
        """True while another worker (alive, or dead and not yet requeued) holds leased requests."""
        workers = [w.decode() for w in self.redis.hkeys(self.keys["workers"])]
        return any(self.redis.hlen(self.keys["leases"] + w) for w in workers if w != self.worker_id)

    def requeue_dead(self, *, including_self: bool = False) -> int:
        """Put the leases of workers whose heartbeat stopped (or, on an early close, our own) back into the queue."""
        if including_self:
            self.exchange()  # first what this worker discovered, then its leases go back
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
