"""Retention: each item is kept no longer than the most specific policy's ``retention``.

GDPR Art. 5(1)(e) (storage limitation) and Illinois BIPA §15(a), which asks
for a written, *published* retention schedule: :func:`schedule` is that
schedule (``scrapy retention show``), one line per policy, with where each
period is written. A platform policy's ``retention`` applies to the items of
its domains; the default policy's to every other item (and to a platform's
items when the platform sets none). A project's ``default.yaml`` without
``retention`` keeps the shipped default's, so no item is ever kept forever
by omission.

:func:`apply` purges the items older than their period everywhere a notice
purge reaches (:func:`crawler.compliance.purge.run_purge`), one process of a
cluster at a time (a lock row in the store), and appends a ledger entry
(``retention.applied``) per run of the command and per run that purged, naming the receipt.

Durations are ISO 8601, read strictly (:mod:`.durations`).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from crawler.compliance.store import Store, items, utcnow
from crawler.dataprotection.durations import Duration, parse_duration

# -- the schedule -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """One line of the published schedule."""

    policy: str  # "default" or a platform policy id
    domains: tuple[str, ...]  # empty for the default: every other domain
    retention: Duration
    source: str  # where the period is written (FILE:LINE)


def schedule(policies: Any, default_source: str) -> list[Period]:
    """The retention schedule: the default's period, then each platform policy's that sets one.

    ``policies`` is a :class:`crawler.compliance.policy.PolicySet`; its default
    carries a retention (the shipped default's when the project's sets none).
    """
    periods = [Period("default", (), parse_duration(policies.default.retention), default_source)]
    for loaded in policies.platforms:
        if loaded.policy.retention is not None:
            periods.append(Period(loaded.policy.id, tuple(loaded.policy.domains), parse_duration(loaded.policy.retention),
                                  loaded.source("retention")))  # fmt: skip
    return periods


def expired_condition(periods: Sequence[Period], now: datetime) -> tuple[sa.ColumnElement[bool], dict[str, str]]:
    """The items past their period (the most specific policy's), and each period's cut-off."""
    cutoffs: dict[str, str] = {}
    conditions = []
    platform_domains: list[str] = []
    for period in periods:
        cutoff = period.retention.before(now)
        cutoffs[period.policy] = cutoff.isoformat(timespec="seconds")
        if period.domains:
            platform_domains.extend(period.domains)
            conditions.append(sa.and_(items.c.domain.in_(sorted(period.domains)), items.c.fetched_at < cutoff))
    default = next(p for p in periods if p.policy == "default")
    default_cutoff = default.retention.before(now)
    others = items.c.fetched_at < default_cutoff
    if platform_domains:
        others = sa.and_(items.c.domain.not_in(sorted(set(platform_domains))), others)
    conditions.append(others)
    return sa.or_(*conditions), cutoffs


def due(store: Store, periods: Sequence[Period], now: datetime | None = None) -> dict[str, int]:
    """How many stored items are past their period, per policy."""
    now = now or utcnow()
    counts: dict[str, int] = {}
    platform_domains = sorted({d for p in periods for d in p.domains})
    with store.engine.connect() as conn:
        for period in periods:
            cutoff = period.retention.before(now)
            if period.domains:
                where = sa.and_(items.c.domain.in_(sorted(period.domains)), items.c.fetched_at < cutoff)
            else:
                where = items.c.fetched_at < cutoff
                if platform_domains:
                    where = sa.and_(items.c.domain.not_in(platform_domains), where)
            counts[period.policy] = int(conn.execute(sa.select(sa.func.count()).select_from(items).where(where)).scalar_one())
    return counts


# -- applying it ----------------------------------------------------------------------------------

LOCK_NAME = "retention"


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def apply(store: Store, periods: Sequence[Period], *, operator: str, machine: str, extra: Sequence[Any] = (),
          outbox: Any = None, deadline_days: int = 30, lock_ttl: float = 600.0, dry_run: bool = False,
          now: datetime | None = None, record_idle: bool = True, progress: Any = None) -> dict[str, Any]:  # fmt: skip
    """Purge what is past its period; the run's report (``skipped`` when another process holds the lock).

    ``progress`` (a :class:`crawler.compliance.purge.PurgeProgress`, say the
    command's live line) hears of the purge as it goes.

    Every run that purged something appends ``retention.applied`` to the
    ledger; a run with nothing due does so only with ``record_idle`` (the
    command: an operator's run is on the record either way; a crawl's
    automatic runs with nothing due are counted in its stats, not the ledger).
    """
    from crawler.compliance.faults import pause_point
    from crawler.compliance.purge import PurgeRequest, run_purge
    from crawler.dataprotection.itemscope import ItemScope
    from crawler.dataprotection.tables import acquire_lock, ensure_schema, release_lock

    ensure_schema(store)
    now = now or utcnow()
    published = {p.policy: p.retention.text for p in periods}
    if dry_run:
        return {"dry_run": True, "schedule": published, "due": due(store, periods, now)}
    holder = holder_name()
    taken, other = acquire_lock(store, LOCK_NAME, holder, lock_ttl)
    if not taken:
        until = other["expires_at"].isoformat(timespec="seconds") if other else "?"
        return {"skipped": f"another process applies retention now ({other['holder'] if other else '?'}, lock until {until})"}
    try:
        pause_point("retention-locked")
        condition, cutoffs = expired_condition(periods, now)
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(items.c.id, items.c.url).where(condition)).all()
        report: dict[str, Any] = {"schedule": published, "cutoffs": cutoffs, "due": len(rows)}
        receipt = None
        if rows:
            # Exactly the rows selected now: an item that ages past its period during the purge waits for the next run.
            ids = sorted(int(r.id) for r in rows)
            chosen = items.c.id.in_(ids) if len(ids) <= 30_000 else sa.and_(condition, items.c.id <= ids[-1])
            scope = ItemScope(frozenset(r.url for r in rows), chosen, "retention")
            record = {"retention": published}
            request = PurgeRequest(scope, record, "retention schedule", operator)  # type: ignore[arg-type]
            receipt = run_purge(store, request, machine, extra, progress, outbox=outbox, deadline_days=deadline_days)
            report["receipt"] = receipt
        if not rows and not record_idle:
            return report
        entry = store.append_ledger("retention.applied", {
            "schedule": published, "cutoffs": cutoffs, "due": len(rows), "operator": operator,
            "purge_id": receipt["purge_id"] if receipt else None,
            "receipt_entry": receipt["ledger_entry"] if receipt else None,
        })  # fmt: skip
        report["ledger_entry"] = {"seq": entry.seq, "hash": entry.hash}
        return report
    finally:
        release_lock(store, LOCK_NAME, holder)
