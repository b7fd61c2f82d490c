"""``scrapy ledger verify|show``: the hash-chained record of notices, purges and consents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from scrapy.exceptions import UsageError

from crawler.cli import ComplianceCommand

if TYPE_CHECKING:
    import argparse

    from crawler.compliance.ledger import Entry


class Command(ComplianceCommand):
    def syntax(self) -> str:
        return "verify [--receipt FILE] | show [--json]"

    def short_desc(self) -> str:
        return "Verify or show the tamper-evident ledger"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--json", action="store_true", help="show: one JSON object per entry")
        parser.add_argument("--receipt", metavar="FILE",
                            help="verify: also check an objection receipt downloaded from the portal against this ledger")  # fmt: skip

    def execute(self, args: list[str], opts: argparse.Namespace) -> int:
        if not args or args[0] not in ("verify", "show"):
            raise UsageError("expected verify or show", print_help=True)
        from crawler.compliance.ledger import verify

        store = self.open_store()
        if args[0] == "verify":
            # The head first: entries appended while we read are beyond it and not judged.
            head = store.ledger_head()
            beyond: list[int] = []

            def up_to_head() -> Iterator[Entry]:
                for entry in store.ledger_entries():
                    if head is not None and 0 <= head[0] < entry.seq:
                        beyond.append(entry.seq)
                    else:
                        yield entry

            verdict = verify(up_to_head(), head)
            # The ledger is the source of truth for notices: a registry row that
            # says otherwise (edited status, scope or dates) is reported too.
            disagreements = store.notice_disagreements()
            for line in disagreements:
                print(f"registry DISAGREES with the ledger: {line}")
            if verdict.ok and beyond:
                # Entries appended while we read moved the head on; any still
                # beyond the head now were not written through it.
                now = store.ledger_head()
                stray = [seq for seq in beyond if now is None or seq > now[0]]
                if stray:
                    print(f"ledger BROKEN at entry {stray[0]}: beyond the recorded head ({head[0] if head else 0}); "
                          "it was not appended through the ledger")  # fmt: skip
                    return 1
            if verdict.ok and opts.receipt and not self.check_receipt(opts.receipt, store):
                return 1
            if verdict.ok:
                print(f"ledger {verdict.message}")
                if disagreements:
                    print(f"{len(disagreements)} notice(s) in the registry disagree with the ledger; crawls treat them as active")
                    return 1
                return 0
            print(f"ledger BROKEN at entry {verdict.bad_seq}: {verdict.message}")
            return 1
        for entry in store.ledger_entries():
            if opts.json:
                print(json.dumps(entry.as_dict(), sort_keys=True))
            else:
                try:
                    payload = json.loads(entry.payload)
                except ValueError:
                    payload = {"payload": "(not JSON: the entry was altered; `scrapy ledger verify`)"}
                if not isinstance(payload, dict):
                    payload = {"payload": str(payload)}
                summary = ", ".join(f"{k}={v}" for k, v in payload.items() if isinstance(v, (str, int)) and k != "operator")
                print(f"{entry.seq:>5} {entry.at} {entry.kind:<26} {entry.hash[:16]} {summary[:120]}")
        return 0

    def check_receipt(self, path: str, store: Any) -> bool:
        """Print one line per check of an objection receipt (crawler/portal/objections.py check_receipt); True if all pass."""
        from crawler.cli import CommandFailed
        from crawler.portal.objections import check_receipt

        try:
            receipt = json.loads(open(path, encoding="utf-8").read())  # noqa: SIM115
        except OSError as exc:
            raise CommandFailed(f"--receipt {path}: cannot read it ({exc.strerror or exc})") from None
        except ValueError as exc:
            raise CommandFailed(f"--receipt {path}: not JSON ({exc})") from None
        entries = {e.seq: e for e in store.ledger_entries()}
        results = check_receipt(receipt, entries)
        for ok, line in results:
            print(f"receipt {'ok' if ok else 'FAILED'}: {line}")
        return all(ok for ok, _ in results)
