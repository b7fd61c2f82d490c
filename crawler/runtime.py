"""The per-crawl compliance runtime shared by every Scrapy component.

Settings are read once into :class:`~crawler.config.Config`; refusals are
logged, counted and recorded in one place, so every gate reports the same way.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from scrapy.exceptions import IgnoreRequest
from weakref import WeakKeyDictionary

from crawler.compliance.domains import filed_under, host_of, registered_domain
from crawler.compliance.faults import fault_point
from crawler.compliance.notices import (
    PAUSE_TAG, PROOF_SPIDER, LoadedNotice, Notice, NoticeSet, load_notice_files, merge_notices,
)  # fmt: skip
from crawler.compliance.policy import PolicySet, load_policies
from crawler.compliance.store import NoticeRow, Store, item_row, utcnow
from crawler.config import Config, ConfigError, machine_name

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler

    from crawler.compliance.decision import Decision

logger = logging.getLogger("crawler.compliance")

#: Store writes that failed for good in this process: each is one line of
#: ``scrapy crawl``'s error output and makes its exit status non-zero.
STORE_FAILURES: list[str] = []

#: Items whose source is remembered between the spider middleware and the pipelines, at most.
_MAX_SOURCES = 10_000

_RUNTIMES: WeakKeyDictionary[Crawler, ComplianceRuntime] = WeakKeyDictionary()


class ComplianceRuntime:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.config = Config.from_settings(crawler.settings)
        self.policies: PolicySet = load_policies_or_fail(self.config.policy_dir, self.config.policy_dir_required)
        self._store: Store | None = None
        #: This process in the store and the cluster: one crawl id, many workers.
        self.machine = machine_name(crawler.settings)
        self.worker_id = f"{self.config.crawl_id}@{self.machine}:{os.getpid()}"
        self._cluster: Any = None
        # The notice registry: files in POLICY_DIR/notices (checked now, fail
        # closed) and the store's registry (read when the crawl opens, then
        # polled by crawler.extensions.notices).
        self._notice_files: list[LoadedNotice] = load_notices_or_fail(self.config.policy_dir, self.policies)
        self._store_notices: list[tuple[Notice, list[str]]] = []
        #: Per notice id, how its registry row disagreed with the ledger when last read (logged on change).
        self._tampered: dict[str, tuple[str, ...]] = {}
        self.registry_version: int | None = None
        self.notices: NoticeSet = self._build_notices()
        self._items: list[dict[str, Any]] = []
        #: Why the crawl is paused (an unreadable registry, invalid notice
        #: files): the engine runs again only when no reason is left.
        self._holds: set[str] = set()
        self._refusals: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
        self._pending_write: list[dict[str, Any]] = []
        #: The cluster leases of the items in ``_items`` (one entry per item, in a
        #: distributed crawl): settled once the batch is committed or saved.
        self._item_leases: list[str] = []
        #: id(item) -> (item, source) from the spider middleware, for the pipelines' last notice check.
        self._sources: dict[int, tuple[Any, dict[str, Any]]] = {}
        #: Items noted so far per response (their index in the store's item key).
        self._item_counts: WeakKeyDictionary[Any, int] = WeakKeyDictionary()
        #: Rows the store refused for good, saved to this file (see :meth:`_save_unwritten`).
        self.unwritten_path: Path | None = None

    @classmethod
    def of(cls, crawler: Crawler) -> ComplianceRuntime:
        runtime = _RUNTIMES.get(crawler)
        if runtime is None:
            runtime = _RUNTIMES[crawler] = cls(crawler)
        return runtime

    @property
    def cluster(self) -> Any:
        """The :class:`crawler.cluster.Cluster` when COMPLIANCE_DISTRIBUTED is on, else None."""
        if self._cluster is None and self.config.distributed:
            from crawler.cluster import Cluster

            self._cluster = Cluster(self.config.redis_url, self.config.crawl_id, self.worker_id, self.crawler.stats)
        return self._cluster

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.config.store_url, head_key=self._ledger_key())
        return self._store

    def _ledger_key(self) -> Any:
        """The identity key, to sign a tree head after the crawl's own ledger appends; None if there is none usable.

        A crawl's appends (consents seen, purges applied to its own files)
        must not fail for want of a key: left unsigned, they are covered by
        the next head a command with the key signs (``scrapy ledger head``).
        """
        from crawler.config import ConfigError
        from crawler.identity import keyring
        from crawler.identity.config import identity_settings

        try:
            options = identity_settings(self.crawler.settings)
            return keyring.load(options.key_path).current if options.key_path.exists() else None
        except (ConfigError, keyring.KeyFileError) as exc:
            logger.warning("ledger tree heads are left unsigned by this crawl: %s", exc)
            return None

    def reload_policies(self) -> bool:
        """Load the policy files again; keep the last valid set if they are broken."""
        policies, errors = load_policies(self.config.policy_dir, fallback=self.policies, required=self.config.policy_dir_required)
        if errors:
            logger.error(
                "Policy files are invalid; the last valid policies stay in force for them:\n%s",
                "\n".join(errors), extra={"spider": self.crawler.spider},
            )
            if self.crawler.stats is not None:
                self.crawler.stats.inc_value("compliance/policies/reload_failed")
        if policies is None:
            return False
        if policies.version != self.policies.version:
            self.policies = policies
            self.record_consent_changes()
            logger.info("Policies reloaded: version %s", policies.version, extra={"spider": self.crawler.spider})
            if self.crawler.stats is not None:
                self.crawler.stats.inc_value("compliance/policies/reloaded")
        return not errors

    # -- notices ------------------------------------------------------------

    def _build_notices(self) -> NoticeSet:
        active = merge_notices(self._notice_files, self._store_notices, self.policies)
        exempt = self._proof_exempt_notice()
        if exempt:
            # The ownership-proof fetch of a pending objection (crawler/portal/proof.py):
            # that objection's own pause would refuse the very file that proves
            # control. Only that pause is lifted, only in that spider; every other notice holds.
            active = [a for a in active if not (a.notice.id == exempt and PAUSE_TAG in a.notice.tags)]
        return NoticeSet.build(active, f"r{self.registry_version}/{len(self._notice_files)}")

    def _proof_exempt_notice(self) -> str:
        spidercls = getattr(self.crawler, "spidercls", None)
        if getattr(spidercls, "name", None) != PROOF_SPIDER:
            return ""
        return str(self.crawler.settings.get("COMPLIANCE_PROOF_PAUSE_NOTICE") or "")

    def _adopt_registry(self, version: int, rows: list[NoticeRow]) -> None:
        store_notices = []
        for row in rows:
            if row.disagreements and row.disagreements != self._tampered.get(row.id):
                # The ledger is the source of truth; the store already widened the row (fail closed).
                logger.error(
                    "Notice %s: the registry disagrees with the ledger (tampering?): %s; it is treated as active, "
                    "over every scope either names; `scrapy ledger verify` reports it",
                    row.id, "; ".join(row.disagreements), extra={"spider": self.crawler.spider},
                )  # fmt: skip
                if self.crawler.stats is not None:
                    self.crawler.stats.inc_value("compliance/notices/tampered")
            self._tampered[row.id] = row.disagreements
            try:
                store_notices.append((Notice.model_validate(row.data), row.resolved_domains))
            except ValueError as exc:
                # Fail closed: a notice we cannot read still blocks its domains.
                logger.error("Notice %s in the store is invalid (%s); blocking its recorded domains", row.id, exc)
                store_notices.append((_fallback_notice(row), row.resolved_domains))
        before = {n.notice.id for n in self.notices.notices}
        self._store_notices = store_notices
        self.registry_version = version
        self.notices = self._build_notices()
        # Items waiting for the next batch passed the pipeline before this
        # notice was known: check them again, or they would be written
        # under the new registry version unchecked.
        self._items = self._drop_refused(self._items, self._refusals)
        if self._cluster is not None and self.notices.notices:
            # Requests this worker has not sent to the shared queue yet: a
            # purge of the queue running now cannot see them, so they go here.
            for url in self._cluster.drop_pushes(lambda url: not self.notices.decide(url).allowed):
                decision = self.notices.decide(url).at("schedule", url)
                self._report(decision)
                self._refusals.append(self._refusal_row(decision))
        for active in self.notices.notices:
            if active.notice.id not in before:
                logger.warning(
                    "Notice %s in force: %s from %s; refusing every request in scope (registry version %s)",
                    active.notice.id, active.notice.scope.describe(), active.notice.sender_name, version,
                    extra={"spider": self.crawler.spider},
                )  # fmt: skip
        if self.crawler.stats is not None:
            self.crawler.stats.set_value("compliance/notices/registry_version", version)
            self.crawler.stats.set_value("compliance/notices/in_force", len(self.notices.notices))

    def refresh_notices(self) -> bool:
        """Read the registry version from the store; reload the notices if it moved. True on a change."""
        version = self.store.registry_version()
        if version == self.registry_version:
            return False
        self._adopt_registry(version, self.store.notice_rows())
        return True

    def hold(self, reason: str) -> None:
        """Pause the crawl (no new request is scheduled) until :meth:`release` of every reason given."""
        if not self._holds and self.crawler.engine is not None:
            self.crawler.engine.pause()
        self._holds.add(reason)

    def release(self, reason: str | None = None) -> None:
        """Drop one reason to pause (``None``: all of them); the crawl goes on when none is left."""
        if reason is None:
            self._holds.clear()
        else:
            self._holds.discard(reason)
        if not self._holds and self.crawler.engine is not None:
            self.crawler.engine.unpause()

    def reload_notice_files(self) -> list[str]:
        """Read the notice files again; returns the errors (empty when every file is valid).

        Valid files replace the old set at once. A broken file keeps its last
        valid version in force; what to do about the unknown rest (stop the
        crawl) is the caller's decision.
        """
        if os.environ.get("COMPLIANCE_FAULT") == "notice-reload":
            # Tests: a reload failure no validation foresees (the watcher must fail closed on it).
            raise RuntimeError("COMPLIANCE_FAULT=notice-reload: the notice files could not be reloaded")
        loaded, errors = load_notice_files(self.config.policy_dir, (p.policy.id for p in self.policies.platforms))
        if errors:
            known = {n.notice.id for n in loaded}
            broken_paths = {e.split(":", 1)[0] for e in errors}
            loaded += [n for n in self._notice_files if n.notice.id not in known and n.path in broken_paths]
        self._notice_files = loaded
        self.notices = self._build_notices()
        return errors

    def _filter_batch(self, version: int, rows: list[NoticeRow]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Called inside the store's write transaction when a notice arrived since the last poll."""
        self._adopt_registry(version, rows)
        refused: list[dict[str, Any]] = []
        return self._drop_refused(self._pending_write, refused), refused

    def _drop_refused(self, rows: list[dict[str, Any]], refusals: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``rows`` without the items a notice now covers; their refusals are appended to ``refusals``."""
        if not rows or not self.notices.notices:
            return rows
        kept = []
        for row in rows:
            decision = self.notices.decide(row["url"])
            if decision.allowed:
                kept.append(row)
                continue
            decision = decision.at("store", row["url"])
            self._report(decision)
            refusals.append(self._refusal_row(decision))
        return kept

    def record_consent_changes(self) -> int:
        """Append ``consent.changed`` to the ledger for each platform whose consents differ from the last record."""
        import hashlib

        from crawler.compliance.ledger import canonical_json

        appended = 0
        recorded = self.store.latest_ledger_payloads("consent.changed", "platform")
        for loaded in self.policies.platforms:
            policy = loaded.policy
            consents = [c.model_dump(mode="json") for c in policy.consents]
            digest = hashlib.sha256(canonical_json(consents).encode()).hexdigest()
            last = recorded.get(policy.id)
            if (last is None and not consents) or (last is not None and last.get("digest") == digest):
                continue
            self.store.append_ledger(
                "consent.changed",
                {"platform": policy.id, "file": loaded.path, "consents": consents, "digest": digest,
                 "previous_digest": last.get("digest") if last else None, "seen_by_crawl": self.config.crawl_id},
            )  # fmt: skip
            appended += 1
        return appended

    # -- refusals -----------------------------------------------------------

    def refuse_request(self, decision: Decision, gate: str, request: Request) -> NoReturn:
        """Stamp ``decision`` with its gate and URL, report it once, and drop ``request``."""
        decision = decision.at(gate, request.url)
        lease = request.meta.get("compliance_lease")
        if lease and self.cluster is not None:
            self.cluster.ack_now(lease)  # refused: nothing more will come of it
        redirected_from = request.meta.get("redirect_urls")
        if redirected_from and not decision.detail:
            decision = dataclasses.replace(decision, detail=f"redirect target of {redirected_from[0]}")
        self.refuse(decision)
        raise IgnoreRequest(str(decision))

    def refuse(self, decision: Decision) -> None:
        """Log, count and record one refusal (each refusal is reported once)."""
        self._report(decision)
        self._refusals.append(self._refusal_row(decision))
        self._maybe_flush()

    def _report(self, decision: Decision) -> None:
        logger.info("%s", decision, extra={"spider": self.crawler.spider})
        stats = self.crawler.stats
        if stats is not None:
            stats.inc_value(f"compliance/refused/{decision.reason}")
            stats.inc_value("compliance/refused")

    def _refusal_row(self, decision: Decision) -> dict[str, Any]:
        host, domain = filed_under(decision.url)
        return (
            {
                "crawl_id": self.config.crawl_id,
                "at": utcnow(),
                "url": decision.url,
                "host": host,
                "domain": domain,
                "gate": decision.gate,
                "reason": decision.reason,
                "rule": decision.rule,
                "source": decision.source,
                "detail": decision.detail,
            }
        )

    # -- items --------------------------------------------------------------

    def source_of(self, response: Any) -> dict[str, Any]:
        """Where an item came from: the response's URL, where it is filed, when, and its provenance.

        The provenance is what the gates recorded on the way: the HTTP status,
        the robots.txt rule that allowed the page, the platform terms, the
        opt-out signals seen with the crawl's purposes, and the policy version.
        """
        url = response.url
        host, domain = filed_under(url)
        meta = response.meta
        return {
            "url": url, "host": host, "domain": domain, "crawl_id": self.config.crawl_id,
            "fetched_at": meta.get("compliance_fetched_at") or utcnow(),
            "provenance": {
                "status": response.status,
                "robots": meta.get("compliance_robots"),
                "terms": meta.get("compliance_terms"),
                "optouts": meta.get("compliance_optouts"),
            },
        }  # fmt: skip

    def source_of_url(self, url: str, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
        """Where an item with no response behind it is filed: under ``url`` (its own, or a failed request's)."""
        host, domain = filed_under(url) if url else ("", "")
        source: dict[str, Any] = {"url": url, "host": host, "domain": domain, "crawl_id": self.config.crawl_id}
        if provenance is not None:
            source["provenance"] = provenance
        return source

    def note_source(self, item: Any, response: Any) -> None:
        """Remember which response produced ``item`` (called by the spider middleware for every item).

        The source carries the item's index among the items its response
        yielded: with the page's URL it is the item's key in the store, so a
        page fetched again (a killed worker's request, requeued) is stored
        once, while several items of one page are all kept.
        """
        sources = self._sources
        if len(sources) >= _MAX_SOURCES:
            # Items a later component dropped or replaced never come back for theirs.
            del sources[next(iter(sources))]
        source = self.source_of(response)
        counts = self._item_counts
        source["item_index"] = counts[response] = counts.get(response, -1) + 1
        sources[id(item)] = (item, source)

    def known_source(self, item: Any, *, forget: bool = False) -> dict[str, Any] | None:
        """The source noted for ``item`` (this very object), if any."""
        entry = self._sources.pop(id(item), None) if forget else self._sources.get(id(item))
        return entry[1] if entry is not None and entry[0] is item else None

    def add_item(self, fields: dict[str, Any], source: dict[str, Any] | None = None, lease: str | None = None) -> bool:
        """Queue an item for the next batch, filed under ``source``; False when a notice now refuses it.

        The notices are checked here, under the registry version the batch
        will be written with: a notice adopted between the pipelines' check
        and this call has already re-checked the buffer, and would not
        re-check this item (the store's transaction only filters batches
        written under an older version).

        ``lease`` is the cluster lease of the response that produced the item:
        it is released with the batch that stores the item (or now, if refused).
        """
        if source is None:
            source = self.source_of_url(str(fields.get("url") or ""))
        own_url = fields.get("url")
        for url in {source["url"], *([own_url] if isinstance(own_url, str) and own_url else [])}:
            decision = self.notices.decide(url)
            if not decision.allowed:
                self.refuse(decision.at("store", url))
                self.settle_items([lease] if lease else [])
                return False
        self._items.append(item_row(fields, source))
        if lease:
            self._item_leases.append(lease)
        self._maybe_flush()
        return True

    def settle_items(self, leases: list[str]) -> None:
        """Items of these leases are settled (stored, saved, dropped or refused): their leases may go."""
        if leases and self._cluster is not None:
            self._cluster.items_settled(leases)

    def _take_batch(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
        batch = self._items, self._refusals, self._item_leases
        self._items, self._refusals, self._item_leases = [], [], []
        return batch

    def _maybe_flush(self) -> None:
        pending = len(self._items) + len(self._refusals)
        if pending >= self.config.store_batch_size or (
            time.monotonic() - self._last_flush >= self.config.store_flush_interval
        ):
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - kept for the next flush, not lost
                if _is_data_error(exc):
                    self._salvage(exc)
                    return
                logger.error(
                    "Could not write %d item(s) and %d refusal(s) to the store (%s: %s); they are kept and "
                    "written with the next batch", len(self._items), len(self._refusals), type(exc).__name__, exc,
                )  # fmt: skip
                if self.crawler.stats is not None:
                    self.crawler.stats.inc_value("compliance/store/write_failed")

    def final_flush(self, attempts: int = 10, pause: float = 0.5) -> None:
        """The last write of a crawl: retried for a few seconds; if the store stays
        unreachable, the rows are saved to a JSON-lines file, never dropped."""
        failure = ""
        for attempt in range(attempts):
            try:
                self.flush()
                return
            except Exception as exc:  # noqa: BLE001
                if _is_data_error(exc):
                    self._salvage(exc)
                    return
                failure = f"{type(exc).__name__}: {_first_line(exc)}"
                if attempt + 1 < attempts:
                    time.sleep(pause)
        item_rows, refusal_rows, leases = self._take_batch()
        self._save_unwritten(item_rows, refusal_rows, f"the store could not be written ({failure})")
        self.settle_items(leases)

    def _salvage(self, exc: BaseException) -> None:
        """A batch the store refuses for what is in it (not for being unreachable): write what it takes.

        Retrying the same rows would fail forever, and a batch holds other
        items and the refusals of other requests. So the refusals are written
        on their own, then each item; the rows the store still refuses are
        saved to the unwritten file and the crawl is marked failed.
        """
        item_rows, refusal_rows, leases = self._take_batch()
        refused_rows: list[dict[str, Any]] = []
        kept_refusals: list[dict[str, Any]] = []
        try:
            self.store.write([], refusal_rows)
        except Exception:  # noqa: BLE001 - saved below, never dropped
            kept_refusals = refusal_rows
        for row in item_rows:
            try:
                self.store.write([row], [], self.registry_version, self._filter_batch)
            except Exception:  # noqa: BLE001
                refused_rows.append(row)
        self._save_unwritten(refused_rows, kept_refusals, f"the store refused them ({type(exc).__name__}: {_first_line(exc)})")
        self.settle_items(leases)

    def _save_unwritten(self, item_rows: list[dict[str, Any]], refusal_rows: list[dict[str, Any]], why: str) -> None:
        """Keep rows the store did not take in COMPLIANCE_DATA_DIR/unwritten/, and fail the crawl.

        Purge visits that folder like any other location, so data kept there
        for later is never out of reach of a notice.
        """
        if not item_rows and not refusal_rows:
            return
        import json

        from crawler.config import unwritten_dir

        folder = unwritten_dir(self.config.data_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"unwritten-{self.config.crawl_id}.jsonl"
        with path.open("a", encoding="utf-8") as handle:
            for kind, rows in (("item", item_rows), ("refusal", refusal_rows)):
                for row in rows:
                    handle.write(json.dumps({"kind": kind, **row}, default=_json_default, ensure_ascii=False) + "\n")
        self.unwritten_path = path
        message = (
            f"store write failed: {len(item_rows)} item(s) and {len(refusal_rows)} refusal(s) were not stored, because "
            f"{why}; they are saved in {path} (purge visits it; load them once the cause is fixed)"
        )
        logger.error("%s", message, extra={"spider": self.crawler.spider})
        STORE_FAILURES.append(message)
        stats = self.crawler.stats
        if stats is not None:
            stats.inc_value("compliance/store/write_failed")
            stats.inc_value("compliance/store/unwritten_items", len(item_rows))
            stats.inc_value("compliance/store/unwritten_refusals", len(refusal_rows))

    def flush(self) -> None:
        """Write the pending batch in one transaction; on failure the rows stay pending (and it raises)."""
        item_rows, refusal_rows, leases = self._take_batch()
        self._last_flush = time.monotonic()
        if item_rows or refusal_rows:
            self._pending_write = item_rows
            try:
                written = self.store.write(item_rows, refusal_rows, self.registry_version, self._filter_batch)
            except BaseException:
                # A passing store outage must not lose the batch: back in front
                # of what arrived meanwhile. The retry re-checks notices inside
                # its transaction, so a notice filed meanwhile still applies.
                self._items, self._refusals = item_rows + self._items, refusal_rows + self._refusals
                self._item_leases = leases + self._item_leases
                raise
            finally:
                self._pending_write = []
            if self.crawler.stats is not None:
                self.crawler.stats.inc_value("compliance/store/items_written", written)
                self.crawler.stats.inc_value("compliance/store/batches")
                if written < len(item_rows):
                    # Already stored by this crawl (a page a killed worker stored, fetched again).
                    self.crawler.stats.inc_value("compliance/store/items_already_stored", len(item_rows) - written)
            if item_rows:
                fault_point("items-stored")
        # The batch is committed (items a notice filtered out are refused in the
        # same transaction): the leases of its items go now, not before, so a
        # killed worker loses nothing; the write is idempotent, so a page whose
        # lease outlived a killed worker is not stored twice.
        self.settle_items(leases)


def _is_data_error(exc: BaseException) -> bool:
    """The store refused the rows themselves (a constraint, a value it cannot hold), not the connection."""
    import sqlalchemy.exc as sa_exc

    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return False
    return isinstance(exc, sa_exc.IntegrityError | sa_exc.DataError | sa_exc.StatementError | TypeError | ValueError)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


def _json_default(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def load_notices_or_fail(directory: str, policies: PolicySet) -> list[LoadedNotice]:
    """The notice files in ``directory``/notices, or a ConfigError listing every problem."""
    loaded, errors = load_notice_files(directory, (p.policy.id for p in policies.platforms))
    if errors:
        raise ConfigError("invalid notice files (COMPLIANCE_POLICY_DIR/notices):\n" + "\n".join(errors))
    return loaded


def _fallback_notice(row: NoticeRow) -> Notice:
    return Notice(
        id=row.id, sender_name=str(row.data.get("sender_name") or "unknown"), date_received=row.recorded_at.date(),
        scope=_fallback_scope(row),
        effective_at=row.recorded_at if row.recorded_at.tzinfo else row.recorded_at.replace(tzinfo=UTC),
    )  # fmt: skip


def _fallback_scope(row: NoticeRow) -> Any:
    """The widest scope still readable from a stored notice that no longer validates (fail closed)."""
    from crawler.compliance.notices import Scope

    scope = row.data.get("scope") or {}
    domains = sorted({*row.resolved_domains, *(scope.get("domains") or [])})
    patterns = [p for p in scope.get("url_patterns") or [] if isinstance(p, str)]
    # A pattern that is itself broken: block its whole registered domain instead.
    domains += sorted({registered_domain(host_of(p)) for p in patterns if host_of(p)} - set(domains))
    return Scope(domains=domains or ["invalid"])


def load_policies_or_fail(directory: str | None, required: bool = True) -> PolicySet:
    """The shipped policies and those in ``directory``, or a ConfigError listing every problem."""
    policies, errors = load_policies(directory, required=required)
    if policies is None:
        raise ConfigError("invalid policy files (COMPLIANCE_POLICY_DIR):\n" + "\n".join(errors))
    return policies
