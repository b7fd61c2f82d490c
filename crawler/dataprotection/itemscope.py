"""A purge scope of chosen items, for the purges that select items by age (retention) or content (erasure).

A notice's scope is domains and URL patterns (:class:`crawler.compliance.notices.CompiledScope`);
retention and erasure choose items in the store instead. :class:`ItemScope`
gives :func:`crawler.compliance.purge.run_purge` the same interface: the store
deletes by ``store_condition`` (the chosen rows, nothing else), and every
other location (feeds, caches, job directories, queues, the project's own)
removes the records whose URL is one of the chosen items' URLs.

So a feed record of a chosen page goes even when the store also kept a newer,
unchosen copy of that page: a copy outside the store cannot be told apart by
age or content reliably, and a purge errs on the side of deleting.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import sqlalchemy as sa

from crawler.compliance.domains import registered_domain


@dataclass(frozen=True)
class ItemScope:
    urls: frozenset[str]
    store_condition: sa.ColumnElement[bool]
    label: str = "items"

    # The CompiledScope interface (no domains or patterns: only URLs).
    domains: frozenset[str] = frozenset()
    patterns: tuple[tuple[str, str, str], ...] = ()

    def match(self, url: str) -> str | None:
        return self.label if url in self.urls else None

    @property
    def pattern_domains(self) -> frozenset[str]:
        return frozenset(registered_domain(urlsplit(u).hostname or "") for u in self.urls)

    @property
    def hosts(self) -> frozenset[str]:
        return self.pattern_domains
