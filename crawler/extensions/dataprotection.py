"""Data protection in a running crawl: retention runs, the suppression check, and feed manifests.

- When the crawl opens, the store's full-text index and data-protection
  tables are made ready (so every item this crawl writes is indexed), and the
  retention schedule is applied (in a thread, one process of a cluster at a
  time), then again every ``COMPLIANCE_RETENTION_INTERVAL`` seconds; the
  crawl waits for a run in progress before it closes.
- :meth:`DataProtection.check` is the suppression check the store pipeline
  calls before an item is stored or exported: an item holding an erased
  identifier is refused (``erasure.<request id>``). The list is re-read when
  its version in the store changes (looked at most every
  ``COMPLIANCE_ERASURE_CHECK_INTERVAL`` seconds).
- Every item the crawl's feeds export is recorded in a manifest per feed
  (:mod:`crawler.dataprotection.exports`), so a later purge can tell that
  feed's destination.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from scrapy import signals
from scrapy.utils.asyncio import create_looping_call

from crawler.runtime import ComplianceRuntime

if TYPE_CHECKING:
    from scrapy import Spider
    from scrapy.crawler import Crawler

    from crawler.compliance.decision import Decision

logger = logging.getLogger("crawler.compliance")

_INSTANCES: WeakKeyDictionary[Any, DataProtection] = WeakKeyDictionary()


class DataProtection:
    def __init__(self, crawler: Crawler) -> None:
        from crawler.dataprotection import settings as dp_settings

        self.crawler = crawler
        self.runtime = ComplianceRuntime.of(crawler)
        self.config = dp_settings.read(crawler.settings)
        self.suppressor: Any = None
        self._checked_at = 0.0
        self._retention: Any = None  # the Deferred of a run in progress
        self._manifests: dict[str, Any] = {}
        self.loop = create_looping_call(self.retention_tick)
        _INSTANCES[crawler] = self
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)
        # The feeds are fixed for the crawl: without one, no manifest and no per-item work.
        self.feeds = [str(uri) for uri in crawler.settings.getdict("FEEDS")]
        if self.feeds:
            crawler.signals.connect(self.item_scraped, signal=signals.item_scraped)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> DataProtection:
        return cls(crawler)

    @classmethod
    def of(cls, crawler: Crawler) -> DataProtection | None:
        return _INSTANCES.get(crawler)

    # -- opening and closing --------------------------------------------------------

    def spider_opened(self, spider: Spider) -> None:
        from crawler.dataprotection.tables import ensure_schema

        ensure_schema(self.runtime.store)
        self._reload(force=True)
        if self.config.retention_auto:
            self.retention_tick()
            if self.config.retention_interval > 0:
                self.loop.start(self.config.retention_interval, now=False)

    def spider_closed(self, spider: Spider, reason: str) -> Any:
        if self.loop.running:
            self.loop.stop()
        for manifest in self._manifests.values():
            manifest.flush()
        # Scrapy waits for a Deferred a signal handler returns: a retention run finishes before the crawl ends.
        return self._retention

    # -- retention --------------------------------------------------------------------

    def retention_tick(self) -> None:
        if self._retention is not None:
            return  # the previous run is still going
        from twisted.internet.threads import deferToThread

        self._retention = deferToThread(self._apply_retention)
        self._retention.addCallbacks(self._retention_done, self._retention_failed)

    def _apply_retention(self) -> dict[str, Any]:
        from crawler.compliance.store import Store
        from crawler.config import machine_name
        from crawler.dataprotection.retention import apply, schedule
        from crawler.notices_cli import extra_locations

        policies = self.runtime.policies
        periods = schedule(policies, policies.default_path)
        # Its own connections: a long purge must not share a connection with the reactor thread's writes.
        store = Store(self.runtime.config.store_url)
        try:
            return apply(store, periods, operator=f"crawl {self.runtime.config.crawl_id}", machine=machine_name(self.crawler.settings),
                         extra=extra_locations(self.crawler.settings), outbox=self.config.outbox,
                         deadline_days=self.config.deadline_days, lock_ttl=self.config.retention_lock_ttl,
                         record_idle=False)  # fmt: skip
        finally:
            store.dispose()

    def _retention_done(self, report: dict[str, Any]) -> None:
        self._retention = None
        stats = self.crawler.stats
        if "skipped" in report:
            logger.info("Retention not applied by this process: %s", report["skipped"])
            if stats is not None:
                stats.inc_value("compliance/retention/skipped")
            return
        purged = (report.get("receipt") or {}).get("total_deleted", 0)
        logger.info("Retention applied: %d item(s) past their period, %d record(s) deleted (ledger entry %s)",
                    report.get("due", 0), purged, (report.get("ledger_entry") or {}).get("seq", "none: nothing was due"))  # fmt: skip
        if stats is not None:
            stats.inc_value("compliance/retention/runs")
            stats.inc_value("compliance/retention/purged", purged)

    def _retention_failed(self, failure: Any) -> None:
        self._retention = None
        logger.error("Retention could not be applied: %s", failure.getErrorMessage())
        if self.crawler.stats is not None:
            self.crawler.stats.inc_value("compliance/retention/failed")

    # -- the suppression check ------------------------------------------------------------

    def _reload(self, force: bool = False) -> None:
        from crawler.dataprotection.suppression import Suppressor, list_version

        now = time.monotonic()
        if not force and now - self._checked_at < self.config.erasure_check_interval:
            return
        self._checked_at = now
        store = self.runtime.store
        key_path = self.config.erasure_key
        from pathlib import Path

        try:
            if not force and self.suppressor is not None and list_version(store) == self.suppressor.version:
                return
            loaded = Suppressor.load(store, key_path or Path("(no project: COMPLIANCE_ERASURE_KEY)"), self.config.phone_region)
        except Exception as exc:  # noqa: BLE001 - the store is briefly unreadable (locked, restarting)
            if self.suppressor is None:
                raise  # nothing to go by: the crawl's start fails (a store it cannot read is not crawled with)
            # The list as last read stays in force and is read again after the interval; the item
            # is checked against it, not dropped (an exception here would lose it, unrecorded).
            logger.warning("Could not re-read the suppression list (%s: %s); the list as last read stays in force",
                           type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")  # fmt: skip
            if self.crawler.stats is not None:
                self.crawler.stats.inc_value("compliance/erasure/reload_failed")
            return
        self.suppressor = loaded
        if self.suppressor.entries:
            logger.info("Suppression list: %d erased identifier(s) are refused", len(self.suppressor))
        if self.suppressor.broken:
            logger.error("Suppression list cannot be checked (%s): every item is refused", self.suppressor.broken)

    def active(self) -> bool:
        """Whether items must be checked: the suppression list (re-read when it changed) holds identifiers."""
        self._reload()
        return self.suppressor is not None and bool(self.suppressor.entries)

    def check(self, url: str, item: Any) -> Decision | None:
        """A refusal when the item (any item type) holds an erased identifier; None when it may be stored."""
        from crawler.dataprotection.suppression import item_texts

        if not self.active():
            return None
        return self.suppressor.check(url, item_texts(item))

    # -- feed manifests ------------------------------------------------------------------

    def item_scraped(self, item: Any, response: Any, spider: Spider | None = None) -> None:
        feeds = self.feeds
        from crawler.dataprotection.exports import start_export
        from crawler.itemfields import item_fields

        fields = item_fields(item)
        url = str(fields.get("url") or getattr(response, "url", "") or "")
        for uri in feeds:
            manifest = self._manifests.get(str(uri))
            if manifest is None:
                destination = self.config.destinations.get(str(uri), str(uri))
                manifest = self._manifests[str(uri)] = start_export(
                    self.runtime.store, destination, "feed", str(uri), self.runtime.config.purposes,
                    f"crawl {self.runtime.config.crawl_id}", self.runtime.config.crawl_id,
                )  # fmt: skip
            manifest.add(url, fields)
