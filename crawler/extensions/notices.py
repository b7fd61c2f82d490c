"""Notices, live: polls the registry, gates every transfer, records where the crawl writes.

- Every ``COMPLIANCE_NOTICE_POLL_INTERVAL`` seconds (default 0.25) the store's
  registry version is read (one indexed row); when it moved, the notices are
  reloaded. A notice filed by ``scrapy notice add`` in another process, or on
  another machine sharing the store, is in force here well within a second.
- The transfer gate: requests that passed the downloader middlewares can wait
  in a download slot (behind Crawl-delay, the policy's pace, the concurrency
  cap) for many seconds. Scrapy has no hook between a slot releasing a request
  and the transfer starting, so the gate wraps the downloader's handler
  dispatcher (``Downloader.handlers.download_request_async``, public API) and
  checks notices and platform terms there: a queued request dies when dequeued.
- Where the crawl writes (local feed files, the HTTP cache, the JOBDIR) is
  recorded in the store, so ``scrapy purge`` can find every copy; a heartbeat
  says the crawl is alive. A purge defers the locations a running crawl owns;
  when the engine stops, the crawl applies those purges to them itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from scrapy import signals
from scrapy.exceptions import IgnoreRequest
from scrapy.utils.asyncio import call_later, create_looping_call

from crawler.cluster import LEASE_META
from crawler.compliance.decision import Decision
from crawler.compliance.notices import CLOCK_SKEW, CompiledScope, Notice, Scope
from crawler.compliance.purge import Location, label, scan
from crawler.middlewares.courtesy import GENERATION_META, HostCourtesy, host_of_request
from crawler.runtime import ComplianceRuntime

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response

logger = logging.getLogger("crawler.compliance")

HEARTBEAT_EVERY = 2.0
#: A request that waited longer than this for its turn in the cluster is signed again (its signature was made before).
RESIGN_AFTER = 1.0
#: Seconds without a successful registry poll after which no new request
#: starts: the "stops within a second" guarantee needs a fresh registry.
STALE_AFTER = 0.75
STALE_REGISTRY = Decision.refuse(
    "notice.registry-unreadable",
    rule="the notice registry could not be read; a notice may be in force that this crawl does not know",
    source="COMPLIANCE_STORE",
)


class NoticeWatcher:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.runtime = ComplianceRuntime.of(crawler)
        self.interval = crawler.settings.getfloat("COMPLIANCE_NOTICE_POLL_INTERVAL", 0.25)
        self.machine = self.runtime.machine
        self.started_at = datetime.now(UTC)
        self.outputs: dict[tuple[str, str], Location] = {}
        self.loop = create_looping_call(self.tick)
        self._last_beat = 0.0
        self._last_poll_ok = time.monotonic()
        #: True while the registry has not been readable for STALE_AFTER seconds.
        self.registry_stale = False
        for handler, signal in (
            (self.engine_started, signals.engine_started),
            (self.spider_opened, signals.spider_opened),
            (self.spider_closed, signals.spider_closed),
            (self.engine_stopped, signals.engine_stopped),
            (self.feed_slot_closed, signals.feed_slot_closed),
        ):
            crawler.signals.connect(handler, signal=signal)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> NoticeWatcher:
        return cls(crawler)

    # -- the transfer gate ------------------------------------------------------

    def engine_started(self) -> None:
        downloader = self.crawler.engine.downloader  # type: ignore[union-attr]
        handlers = downloader.handlers
        inner = handlers.download_request_async
        runtime = self.runtime
        cluster = runtime.cluster
        lease = self.crawler.settings.getfloat("DOWNLOAD_TIMEOUT", 180) + 10
        courtesy = HostCourtesy.of(self.crawler)

        async def gated_download(request: Request) -> Response:
            if self.registry_stale:
                # The registry could not be read for a while: a notice may be in
                # force that this crawl does not know. Hold the transfer until
                # it can be read again; refuse it if that takes too long.
                deadline = time.monotonic() + lease
                while self.registry_stale and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                if self.registry_stale:
                    runtime.refuse_request(STALE_REGISTRY, "transfer", request)
            decision = runtime.notices.decide(request.url)
            if decision.allowed:
                decision = runtime.policies.decide(request.url, datetime.now(UTC).date())
            if not decision.allowed:
                runtime.refuse_request(decision, "transfer", request)
            if cluster is None:
                # A host in distress (429, 5xx, timeouts) is paused: the
                # request waits here, after its slot let it go and before
                # it leaves (crawler/middlewares/courtesy.py).
                if await courtesy.wait_turn(request):
                    self._recheck(request)
                    courtesy.resign(request)
                return await self._transfer(inner, request)
            # Distributed: the host's pace and concurrency cap hold across
            # every worker (the slot's delay is Crawl-delay or the policy's),
            # and so does a courtesy pause of the host.
            key = request.meta.get("download_slot") or ""
            slot = downloader.slots.get(key)
            host = host_of_request(request)
            courtesy.check_skipped(request, "transfer")
            started = time.monotonic()
            turn = await cluster.acquire(key, slot.delay if slot else 0.0, slot.concurrency if slot else 1, lease, host)
            if turn is None:
                courtesy.adopt_cluster_skip(request, host)
            token, request.meta[GENERATION_META] = turn
            try:
                # A notice may have arrived while this request waited for its turn.
                self._recheck(request)
                if time.monotonic() - started > RESIGN_AFTER:
                    courtesy.resign(request)
                # Judged before the release: the host's next request waits for the pause this answer causes.
                return await self._transfer(inner, request)
            except IgnoreRequest:
                raise  # refused: its lease is released already
            except Exception:
                # A failed transfer yields nothing more (a retry is queued anew): its lease goes.
                if request.meta.get(LEASE_META):
                    cluster.ack_now(request.meta[LEASE_META])
                raise
            finally:
                cluster.release(key, token)

        handlers.download_request_async = gated_download  # type: ignore[method-assign]

    def _recheck(self, request: Request) -> None:
        decision = self.runtime.notices.decide(request.url)
        if not decision.allowed:
            self.runtime.refuse_request(decision, "transfer", request)

    async def _transfer(self, inner: Any, request: Request) -> Response:
        """The transfer itself; its answer, or its network failure, is judged for the host's courtesy."""
        courtesy = HostCourtesy.of(self.crawler)
        try:
            response = await inner(request)
        except Exception as exc:
            courtesy.failed(request, exc)
            raise
        courtesy.answered(request, response)
        return response

    # -- polling and heartbeat --------------------------------------------------

    def spider_opened(self) -> None:
        self.runtime.refresh_notices()
        self.runtime.record_consent_changes()
        self._beat()
        self.loop.start(self.interval, now=False)
        # After every spider_opened handler ran (the feed exporter opens its files there).
        call_later(0, self.record_outputs)

    def tick(self) -> None:
        try:
            self.runtime.refresh_notices()
        except Exception as exc:  # noqa: BLE001 - a store hiccup must not stop polling; it is logged
            self._poll_failed(exc)
            return
        self._last_poll_ok = time.monotonic()
        if self.registry_stale:
            self.registry_stale = False
            logger.warning("The notice registry can be read again; the crawl resumes")
            self.runtime.release("notice registry unreadable")
        try:
            if datetime.now(UTC).timestamp() - self._last_beat >= HEARTBEAT_EVERY:
                self._beat()
        except Exception:  # noqa: BLE001
            logger.exception("Could not record the heartbeat; retrying in %.2f s", self.interval)

    def _poll_failed(self, exc: Exception) -> None:
        """Fail closed: past STALE_AFTER seconds without a fresh registry, no new request starts."""
        if self.crawler.stats is not None:
            self.crawler.stats.inc_value("compliance/notices/poll_failed")
        if self.registry_stale:
            return  # said once, when it began
        logger.error("Could not poll the notice registry (%s: %s); retrying every %.2f s", type(exc).__name__, exc, self.interval)
        if time.monotonic() - self._last_poll_ok >= STALE_AFTER:
            self.registry_stale = True
            logger.error(
                "The notice registry has not been readable for %.1f s: the crawl is paused, and transfers wait, "
                "until it can be read (a notice filed meanwhile must not be missed)", STALE_AFTER,
            )  # fmt: skip
            if self.crawler.stats is not None:
                self.crawler.stats.inc_value("compliance/notices/paused_unreadable")
            self.runtime.hold("notice registry unreadable")

    def _beat(self, closed: bool = False) -> None:
        self._last_beat = datetime.now(UTC).timestamp()
        self.runtime.store.heartbeat(self.runtime.worker_id, self.machine, os.getpid(), closed=closed)

    def spider_closed(self) -> None:
        # Keep beating until the engine stops: feeds and caches close after
        # this, and a purge must not take the crawl for dead meanwhile.
        pass

    # -- where the crawl writes ---------------------------------------------------

    def _record(self, kind: str, location: str, options: dict[str, Any]) -> None:
        if (kind, location) in self.outputs:
            return
        self.outputs[(kind, location)] = Location(kind, location, options, self.machine, (self.runtime.worker_id,))
        self.runtime.store.record_output(self.runtime.worker_id, self.machine, kind, location, options)

    def record_outputs(self) -> None:
        settings = self.crawler.settings
        spider = self.crawler.spider
        from scrapy.extensions.feedexport import FeedExporter

        for extension in getattr(self.crawler.extensions, "middlewares", ()):
            if isinstance(extension, FeedExporter):
                for slot in extension.slots:
                    self._record_feed(slot.uri, slot.format, slot.feed_options.get("indent"))
        if settings.getbool("HTTPCACHE_ENABLED") and spider is not None:
            from scrapy.utils.project import data_path

            storage = str(settings.get("HTTPCACHE_STORAGE"))
            directory = Path(data_path(settings.get("HTTPCACHE_DIR"))).resolve()
            if storage.endswith("FilesystemCacheStorage"):
                self._record("httpcache", str(directory / spider.name),
                             {"backend": "filesystem", "gzip": settings.getbool("HTTPCACHE_GZIP")})  # fmt: skip
            elif storage.endswith("DbmCacheStorage"):
                module = settings.get("HTTPCACHE_DBM_MODULE") or "dbm"
                self._record("httpcache", str(directory / f"{spider.name}.db"), {"backend": "dbm", "dbm_module": module})
            else:
                self._record("httpcache", storage, {"backend": "custom"})
        cluster = self.runtime.cluster
        if cluster is not None:
            self._record("redisqueue", f"{cluster.redis_url}#{cluster.keys['requests']}",
                         {"redis_url": cluster.redis_url, "key": cluster.keys["requests"]})  # fmt: skip
        jobdir = settings.get("JOBDIR")
        if jobdir:
            self._record("jobdir", str(Path(jobdir).resolve()), {})

    def _record_feed(self, uri: str, fmt: str, indent: Any = None) -> None:
        parts = urlsplit(uri)
        if parts.scheme in ("", "file") or (len(parts.scheme) == 1 and os.name == "nt"):
            path = parts.path if parts.scheme == "file" else uri
            self._record("feed", str(Path(path).resolve()), {"format": fmt, "uri": uri, "indent": indent})
        else:
            self._record("feed", uri, {"format": fmt, "uri": uri, "remote": True})

    def feed_slot_closed(self, slot: Any) -> None:
        self._record_feed(slot.uri, slot.format, slot.feed_options.get("indent"))

    # -- deferred purges -------------------------------------------------------------

    def engine_stopped(self) -> None:
        """Apply, to this crawl's own locations, the purges and notices that arrived while it ran.

        Runs after the feed exporter and the HTTP cache have closed their files.
        """
        store = self.runtime.store
        if self.loop.running:
            self.loop.stop()
        try:
            self.runtime.refresh_notices()
            scopes: list[tuple[str, str | None, CompiledScope]] = []
            for purge in store.purges():
                started = purge["started_at"] if purge["started_at"].tzinfo else purge["started_at"].replace(tzinfo=UTC)
                if started >= self.started_at - CLOCK_SKEW:
                    scope = Scope.model_validate({k: v for k, v in purge["scope"].items() if k in Scope.model_fields})
                    extra = purge["scope"].get("resolved_domains") or []
                    scopes.append((purge["id"], purge["notice_id"], CompiledScope.build(scope, self.runtime.policies, extra)))
            purged_notices = {notice_id for _, notice_id, _ in scopes}
            for row in store.notice_rows():
                recorded = row.recorded_at if row.recorded_at.tzinfo else row.recorded_at.replace(tzinfo=UTC)
                notice = Notice.model_validate(row.data)
                if recorded >= self.started_at - CLOCK_SKEW and notice.demands.delete_existing and row.id not in purged_notices:
                    scopes.append(("", row.id, CompiledScope.build(notice.scope, self.runtime.policies, row.resolved_domains)))
            if scopes and self.outputs:
                self._apply(scopes)
        finally:
            self._beat(closed=True)

    def _apply(self, scopes: list[tuple[str, str | None, CompiledScope]]) -> None:
        store = self.runtime.store
        results = []
        for purge_id, notice_id, scope in scopes:
            for location in self.outputs.values():
                if location.kind == "redisqueue" or (location.kind == "feed" and location.options.get("remote")):
                    continue  # listed as manual_action_required in the purge's receipt
                name = label(location, self.machine)
                outcome = scan(store, scope, location, delete=True, purge_id=purge_id, name=name)
                if purge_id:
                    count = 0 if outcome.recorded else outcome.count  # else counted with each change
                    store.record_step(purge_id, name, location.kind, count, outcome.status, outcome.detail)
                results.append({"purge_id": purge_id or None, "notice_id": notice_id, "location": label(location, self.machine),
                                "status": outcome.status, "count": outcome.count, "detail": outcome.detail})  # fmt: skip
        entry = store.append_ledger(
            "purge.completed-by-crawl", {"crawl_id": self.runtime.config.crawl_id, "machine": self.machine, "results": results}
        )
        removed = sum(r["count"] for r in results)
        logger.warning(
            "Applied %d purge(s) to this crawl's own files: %d records removed (ledger entry %d)",
            len(scopes), removed, entry.seq, extra={"spider": self.crawler.spider},
        )  # fmt: skip
