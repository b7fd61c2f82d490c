"""Shared plumbing for the project's commands (not itself a command)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from crawler.compliance.notices import Notice, NoticeSet, load_notice_files, merge_notices
from crawler.compliance.store import Store, StoreError
from crawler.config import DEFAULTS

if TYPE_CHECKING:
    import argparse

    from crawler.compliance.policy import PolicySet


class CommandFailed(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


class ComplianceCommand(ScrapyCommand):
    """A command that works on the store or policies and crawls nothing.

    Subclasses implement :meth:`execute`; a :class:`CommandFailed` becomes one
    ``error: ...`` line on stderr and exit status 1, never a traceback.
    """

    requires_project = True
    requires_crawler_process = False
    default_settings = {"LOG_ENABLED": False}

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        try:
            self.exitcode = self.execute(args, opts) or 0
        except (CommandFailed, StoreError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            self.exitcode = 1
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - never a traceback for people; the type and message say what
            first = (str(exc).strip().splitlines() or [""])[0]
            print(f"error: {type(exc).__name__}: {first[:500]}", file=sys.stderr)
            self.exitcode = 1

    def execute(self, args: list[str], opts: argparse.Namespace) -> int | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def notice_registry(self, policies: PolicySet) -> NoticeSet:
        """The notices in force as a crawl would see them: the store's registry and the notice files."""
        assert self.settings is not None
        directory = str(self.settings.get("COMPLIANCE_POLICY_DIR") or DEFAULTS["COMPLIANCE_POLICY_DIR"])
        files, errors = load_notice_files(directory, [p.policy.id for p in policies.platforms])
        if errors:
            raise CommandFailed("invalid notice files:\n" + "\n".join(errors))
        rows = self.open_store().notice_rows()
        from_store = [(Notice.model_validate(r.data), r.resolved_domains) for r in rows]
        return NoticeSet.build(merge_notices(files, from_store, policies), "cli")

    def open_store(self) -> Store:
        assert self.settings is not None
        return Store(str(self.settings.get("COMPLIANCE_STORE") or DEFAULTS["COMPLIANCE_STORE"]))
