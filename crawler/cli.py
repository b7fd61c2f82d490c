"""Shared plumbing for the project's commands (not itself a command)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from scrapy.commands import ScrapyCommand

from crawler.compliance.store import Store, StoreError
from crawler.config import DEFAULTS

if TYPE_CHECKING:
    import argparse


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

    def execute(self, args: list[str], opts: argparse.Namespace) -> int | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def open_store(self) -> Store:
        assert self.settings is not None
        return Store(str(self.settings.get("COMPLIANCE_STORE") or DEFAULTS["COMPLIANCE_STORE"]))
