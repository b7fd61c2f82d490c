"""Picks up edited policy and notice files while a crawl runs.

Every ``COMPLIANCE_POLICY_RELOAD_INTERVAL`` seconds (default 1) the policy
files' names, sizes and modification times are compared with the last look;
on a change they are validated again. A valid set replaces the old one at
once (both gates read it on every request); an invalid one is reported and
the last valid set stays in force, so a typo never opens anything up.

A notice file that does not validate is different: it may name hosts that
nothing blocks yet, and its scope cannot be known. The crawl pauses at once
(no new requests are scheduled), reads the files again one interval later
(an editor may have caught a half-written save), and stops with the reason
``notice_file_invalid`` if they are still invalid, the same rule as at
start-up. Fixed in time, the crawl goes on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from scrapy import signals
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import create_looping_call
from scrapy.utils.defer import deferred_from_coro

from crawler.compliance.notices import notice_files
from crawler.compliance.policy import policy_files
from crawler.runtime import ComplianceRuntime

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger("crawler.compliance")

#: Why crawls in this process were stopped for invalid notice files (read by ``scrapy crawl`` for its exit code).
STOPPED: list[str] = []


def _signature(directory: Path | None) -> tuple[tuple[str, int, int], ...]:
    entries = []
    try:
        paths = [*policy_files(directory), *notice_files(directory)]
    except OSError as exc:
        # A folder that cannot be listed is a change too: the reload reports it (and fails closed).
        return ((f"cannot list: {exc}", -1, -1),)
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            entries.append((str(path), -1, -1))
            continue
        entries.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(entries)


class PolicyWatcher:
    def __init__(self, crawler: Crawler) -> None:
        self.interval = crawler.settings.getfloat("COMPLIANCE_POLICY_RELOAD_INTERVAL", 1.0)
        if self.interval <= 0:
            raise NotConfigured("COMPLIANCE_POLICY_RELOAD_INTERVAL <= 0: policy files are read once")
        self.crawler = crawler
        self.runtime = ComplianceRuntime.of(crawler)
        self.notice_errors: list[str] = []
        self.stopping = False
        policy_dir = self.runtime.config.policy_dir
        self.directory = Path(policy_dir) if policy_dir is not None else None
        self.last = _signature(self.directory)
        self.loop = create_looping_call(self.check)
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> PolicyWatcher:
        return cls(crawler)

    def spider_opened(self) -> None:
        self.loop.start(self.interval, now=False)

    def spider_closed(self) -> None:
        if self.loop.running:
            self.loop.stop()

    def check(self) -> None:
        # An exception would stop the looping call for the rest of the crawl,
        # and with it every later reload: each step reports its own and the
        # watching goes on. A notice reload that fails for any reason counts
        # as invalid notice files (fail closed: pause, look again, stop).
        try:
            current = _signature(self.directory)
        except Exception as exc:  # noqa: BLE001
            current = ((f"cannot look: {type(exc).__name__}: {exc}", -1, -1),)
        if current != self.last:
            self.last = current
            try:
                self.runtime.reload_policies()
            except Exception:  # noqa: BLE001
                logger.exception("Could not reload the policy files; the last valid ones stay in force")
        elif not self.notice_errors:
            return
        try:
            errors = self.runtime.reload_notice_files()
        except Exception as exc:  # noqa: BLE001
            logger.exception("Could not reload the notice files")
            errors = [f"{self.directory / 'notices'}: could not be read ({type(exc).__name__}: {str(exc)[:200]}); "
                      "the notices in it cannot be known"]  # fmt: skip
        try:
            self._notices_checked(errors)
        except Exception:  # noqa: BLE001
            logger.exception("Could not act on the notice files' state")

    def _notices_checked(self, errors: list[str]) -> None:
        engine = self.crawler.engine
        stats = self.crawler.stats
        if not errors:
            if self.notice_errors:
                logger.warning("Notice files are valid again; the crawl resumes")
                self.runtime.release("notice files invalid")
            self.notice_errors = []
            return
        if not self.notice_errors:
            # First sight: pause, and look again one interval later.
            self.notice_errors = errors
            logger.error(
                "Notice files are invalid; the crawl is paused and stops in %.1f s unless they are fixed:\n%s",
                self.interval, "\n".join(errors),
            )  # fmt: skip
            self.runtime.hold("notice files invalid")
            return
        if self.stopping:
            return
        self.stopping = True
        logger.error(
            "Notice files are still invalid; the crawl stops (a notice whose scope cannot be read blocks "
            "everything):\n%s", "\n".join(errors),
        )  # fmt: skip
        STOPPED.append(errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
        if stats is not None:
            stats.set_value("compliance/notices/invalid_files", len(errors))
        self.runtime.release()  # stopping overrides every pause
        if engine is not None:
            deferred_from_coro(engine.close_spider_async(reason="notice_file_invalid"))
