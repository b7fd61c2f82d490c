"""The per-crawl compliance runtime shared by every Scrapy component.

Settings are read once into :class:`~crawler.config.Config`; refusals are
logged, counted and recorded in one place, so every gate reports the same way.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any, NoReturn

from scrapy.exceptions import IgnoreRequest
from weakref import WeakKeyDictionary

from crawler.compliance.domains import host_of, registered_domain
from crawler.compliance.policy import PolicySet, load_policies
from crawler.compliance.store import Store, item_row, utcnow
from crawler.config import Config, ConfigError

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler

    from crawler.compliance.decision import Decision

logger = logging.getLogger("crawler.compliance")

_RUNTIMES: WeakKeyDictionary[Crawler, ComplianceRuntime] = WeakKeyDictionary()


class ComplianceRuntime:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.config = Config.from_settings(crawler.settings)
        self.policies: PolicySet = load_policies_or_fail(self.config.policy_dir)
        self._store: Store | None = None
        self._items: list[dict[str, Any]] = []
        self._refusals: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()

    @classmethod
    def of(cls, crawler: Crawler) -> ComplianceRuntime:
        runtime = _RUNTIMES.get(crawler)
        if runtime is None:
            runtime = _RUNTIMES[crawler] = cls(crawler)
        return runtime

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.config.store_url)
        return self._store

    def reload_policies(self) -> bool:
        """Load the policy files again; keep the last valid set if they are broken."""
        policies, errors = load_policies(self.config.policy_dir, fallback=self.policies)
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
            logger.info("Policies reloaded: version %s", policies.version, extra={"spider": self.crawler.spider})
            if self.crawler.stats is not None:
                self.crawler.stats.inc_value("compliance/policies/reloaded")
        return not errors

    # -- refusals -----------------------------------------------------------

    def refuse_request(self, decision: Decision, gate: str, request: Request) -> NoReturn:
        """Stamp ``decision`` with its gate and URL, report it once, and drop ``request``."""
        decision = decision.at(gate, request.url)
        redirected_from = request.meta.get("redirect_urls")
        if redirected_from and not decision.detail:
            decision = dataclasses.replace(decision, detail=f"redirect target of {redirected_from[0]}")
        self.refuse(decision)
        raise IgnoreRequest(str(decision))

    def refuse(self, decision: Decision) -> None:
        """Log, count and record one refusal (each refusal is reported once)."""
        logger.info("Refused %s", decision, extra={"spider": self.crawler.spider})
        stats = self.crawler.stats
        if stats is not None:
            stats.inc_value(f"compliance/refused/{decision.reason}")
            stats.inc_value("compliance/refused")
        host = host_of(decision.url)
        self._refusals.append(
            {
                "crawl_id": self.config.crawl_id,
                "at": utcnow(),
                "url": decision.url,
                "host": host,
                "domain": registered_domain(host),
                "gate": decision.gate,
                "reason": decision.reason,
                "rule": decision.rule,
                "source": decision.source,
                "detail": decision.detail,
            }
        )
        self._maybe_flush()

    # -- items --------------------------------------------------------------

    def add_item(self, fields: dict[str, Any]) -> None:
        self._items.append(item_row(fields))
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        pending = len(self._items) + len(self._refusals)
        if pending >= self.config.store_batch_size or (
            time.monotonic() - self._last_flush >= self.config.store_flush_interval
        ):
            self.flush()

    def flush(self) -> None:
        """Write the pending batch in one transaction."""
        item_rows, refusal_rows = self._items, self._refusals
        self._items, self._refusals = [], []
        self._last_flush = time.monotonic()
        if item_rows or refusal_rows:
            self.store.write(item_rows, refusal_rows)
            if self.crawler.stats is not None:
                self.crawler.stats.inc_value("compliance/store/items_written", len(item_rows))
                self.crawler.stats.inc_value("compliance/store/batches")


def load_policies_or_fail(directory: str) -> PolicySet:
    """The policies in ``directory``, or a ConfigError listing every problem."""
    policies, errors = load_policies(directory)
    if policies is None:
        raise ConfigError("invalid policy files (COMPLIANCE_POLICY_DIR):\n" + "\n".join(errors))
    return policies
