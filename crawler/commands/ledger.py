"""``scrapy ledger verify|show``: the hash-chained record of notices, purges and consents."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from scrapy.exceptions import UsageError

from crawler.cli import ComplianceCommand
from crawler.compliance.ledger import verify

if TYPE_CHECKING:
    import argparse


class Command(ComplianceCommand):
    def syntax(self) -> str:
        return "verify | show [--json]"

    def short_desc(self) -> str:
        return "Verify or show the tamper-evident ledger"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--json", action="store_true", help="show: one JSON object per entry")

    def execute(self, args: list[str], opts: argparse.Namespace) -> int:
        if not args or args[0] not in ("verify", "show"):
            raise UsageError("expected verify or show", print_help=True)
        store = self.open_store()
        if args[0] == "verify":
            # The head first: entries appended while we read are beyond it and not judged.
            head = store.ledger_head()
            entries = store.ledger_entries()
            if head is not None and head[0] >= 0:
                entries = (e for e in entries if e.seq <= head[0])
            verdict = verify(entries, head)
            if verdict.ok:
                print(f"ledger {verdict.message}")
                return 0
            print(f"ledger BROKEN at entry {verdict.bad_seq}: {verdict.message}")
            return 1
        for entry in store.ledger_entries():
            if opts.json:
                print(json.dumps(entry.as_dict(), sort_keys=True))
            else:
                payload = json.loads(entry.payload)
                summary = ", ".join(f"{k}={v}" for k, v in payload.items() if isinstance(v, (str, int)) and k != "operator")
                print(f"{entry.seq:>5} {entry.at} {entry.kind:<26} {entry.hash[:16]} {summary[:120]}")
        return 0
