"""The portal's per-client rate limit, kept in the store so that a restart does not reset it.

A moving window, as ``limits``' ``MovingWindowRateLimiter`` keeps it, but in
the store the portal shares with the crawls: one row per (client, action)
holding the moments of its recent accepted hits (at most the largest
``amount`` of the limits, e.g. 30 for ``5/minute;30/hour``). A hit is
accepted when, for every limit, fewer than ``amount`` hits fall in the last
``expiry`` seconds; a refused hit is not recorded (as in ``limits``).

Why the store and not memory: a crash, a restart (``Restart=always``) or a
second portal process would otherwise give every client a fresh allowance,
so a client that could make the portal restart (or simply waited for a
deploy) could file objections, try proofs or guess the admin token without
bound. The store is the only thing the portal processes share.

Each hit is one transaction: SQLite's ``BEGIN IMMEDIATE`` (the store's
recipe) and PostgreSQL's row lock (``FOR UPDATE``) serialise the hits of
one client, so two requests at once cannot both take the last place. Rows
are kept only while their newest hit is inside the longest window
(:meth:`StoreRateLimiter.prune`, run by the portal's sweep).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from crawler.compliance.store import Store

metadata = sa.MetaData()
rate_hits = sa.Table(
    "portal_rate_hits",
    metadata,
    sa.Column("client", sa.String(100), primary_key=True),
    sa.Column("action", sa.String(20), primary_key=True),
    # Seconds since the epoch of each accepted hit still inside the longest window, oldest first.
    sa.Column("hits", sa.JSON, nullable=False),
    sa.Column("last_at", sa.Float, nullable=False, index=True),
)


class StoreRateLimiter:
    """``hit`` / ``test`` per (action, client) against ``limits`` (parsed ``limits`` items: ``amount``, ``get_expiry()``)."""

    def __init__(self, store: Store, limits: Sequence[Any]) -> None:
        self.store = store
        self.windows = sorted(((float(item.get_expiry()), int(item.amount)) for item in limits), reverse=True)
        self.longest = self.windows[0][0] if self.windows else 0.0
        rate_hits.create(store.engine, checkfirst=True)

    def _allows(self, hits: Sequence[float], now: float) -> bool:
        return all(sum(1 for at in hits if at > now - seconds) < amount for seconds, amount in self.windows)

    def hit(self, action: str, client: str, now: float | None = None) -> bool:
        """Count one ``action`` for ``client``; False (and nothing counted) when it is over a limit."""
        now = time.time() if now is None else now
        key = {"client": client[:100], "action": action[:20]}
        with self.store.engine.begin() as conn:
            conn.execute(self._insert_if_absent().values(**key, hits=[], last_at=now))
            query = sa.select(rate_hits.c.hits).where(rate_hits.c.client == key["client"], rate_hits.c.action == key["action"])
            hits = [float(at) for at in (conn.execute(query.with_for_update()).scalar() or []) if float(at) > now - self.longest]
            if not self._allows(hits, now):
                return False
            hits.append(now)
            conn.execute(rate_hits.update().where(rate_hits.c.client == key["client"], rate_hits.c.action == key["action"])
                         .values(hits=hits, last_at=now))  # fmt: skip
        return True

    def test(self, action: str, client: str, now: float | None = None) -> bool:
        """Would one more ``action`` from ``client`` be accepted now? (Counts nothing.)"""
        now = time.time() if now is None else now
        with self.store.engine.connect() as conn:
            hits = conn.execute(
                sa.select(rate_hits.c.hits).where(rate_hits.c.client == client[:100], rate_hits.c.action == action[:20])
            ).scalar()  # fmt: skip
        return self._allows([float(at) for at in hits or []], now)

    def prune(self, now: float | None = None) -> int:
        """Forget clients whose last hit left the longest window; how many rows went."""
        now = time.time() if now is None else now
        with self.store.engine.begin() as conn:
            return int(conn.execute(rate_hits.delete().where(rate_hits.c.last_at <= now - self.longest)).rowcount or 0)

    def _insert_if_absent(self) -> Any:
        if self.store.is_sqlite:
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        return insert(rate_hits).on_conflict_do_nothing(index_elements=["client", "action"])
