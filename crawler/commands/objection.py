"""``scrapy objection list|show|approve|reject``: site owners' objections, as the operator sees them at /admin."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from scrapy.exceptions import UsageError

from crawler.cli import CommandFailed, ComplianceCommand

if TYPE_CHECKING:
    import argparse

ACTIONS = ("list", "show", "approve", "reject", "probe")


class Command(ComplianceCommand):
    def syntax(self) -> str:
        return "list [--status S] | show ID | approve ID [--note TEXT] | reject ID --reason TEXT"

    def short_desc(self) -> str:
        return "List, approve (without proof) or reject site owners' objections filed at the portal"

    def long_desc(self) -> str:
        return (
            "ID is the objection's public id (as listed) or its secret id. approve: the objection becomes a notice "
            "(stop and delete) and the purge runs, as if the owner had proved control (a letter on paper). reject: "
            "the pause ends; recorded in the ledger. Pending objections past COMPLIANCE_OBJECTION_PENDING_DAYS "
            "expire when any of these commands or the portal runs (crawls stop enforcing them on time regardless)."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--status", help="list: only objections in this state (pending, verified, approved, rejected, expired)")
        parser.add_argument("--reason", default="", help="reject: why (shown to the site owner)")
        parser.add_argument("--note", default="", help="approve: on what grounds (e.g. 'letter of 2026-11-20')")
        parser.add_argument("--operator", help="who decides (default: user@machine, or COMPLIANCE_OPERATOR)")
        parser.add_argument("--json", action="store_true", help="list, show: JSON")
        # probe: internal, run by the portal to fetch a proof through the crawler (crawler/portal/proof.py).
        parser.add_argument("--domain", help=argparse_suppress())
        parser.add_argument("--token", help=argparse_suppress())

    def execute(self, args: list[str], opts: argparse.Namespace) -> int:
        if not args or args[0] not in ACTIONS:
            raise UsageError(f"expected one of: {', '.join(ACTIONS[:-1])}", print_help=True)
        action = args[0]
        if action == "probe":
            return self.probe(opts)
        book = self._book()
        book.sweep()
        if action == "list":
            return self.list(book, opts)
        if len(args) != 2:
            raise UsageError(f"{action} needs an objection id", print_help=False)
        record = book.by_public_id(args[1]) or book.get(args[1])
        if record is None:
            raise CommandFailed(f"no objection {args[1]!r}; see `scrapy objection list`")
        if action == "show":
            print(json.dumps(_shown(record, full=True), indent=2, default=str))
            return 0
        from crawler.notices_cli import operator_of
        from crawler.portal.objections import ObjectionError

        assert self.settings is not None
        operator = operator_of(opts, self.settings)
        try:
            if action == "approve":
                receipt = book.complete(record["id"], "approved", {"method": "operator", "note": opts.note[:2000]}, operator)
                print(json.dumps(receipt, indent=2, default=str))
            else:
                if not opts.reason.strip():
                    raise CommandFailed("reject needs --reason TEXT (the site owner sees it)")
                done = book.reject(record["id"], opts.reason, operator)
                print(json.dumps(_shown(done), indent=2, default=str))
        except ObjectionError as exc:
            raise CommandFailed(f"objection {record['public_id']}: {exc}") from None
        return 0

    def _book(self) -> Any:
        from crawler.portal.settings import open_book

        assert self.settings is not None
        return open_book(self.settings, self.open_signing_store(), self.policies())

    def list(self, book: Any, opts: argparse.Namespace) -> int:
        rows = book.list(opts.status)
        if opts.json:
            print(json.dumps([_shown(r) for r in rows], indent=2, default=str))
            return 0
        if not rows:
            print("no objections")
            return 0
        print(f"{'id':<14} {'status':<9} {'filed':<20} {'domain':<30} {'kind':<18} sender")
        for r in rows:
            print(f"{r['public_id']:<14} {r['status']:<9} {r['created_at']:%Y-%m-%d %H:%M:%S} {r['domain'][:30]:<30} {r['kind']:<18} {r['sender'][:40]}")
        return 0

    def probe(self, opts: argparse.Namespace) -> int:
        from crawler.portal.proof import probe

        assert self.settings is not None
        if not opts.domain or not opts.token:
            raise CommandFailed("probe needs --domain and --token")
        attempts = probe(self.settings, opts.domain, opts.token)
        print(json.dumps({"attempts": attempts}))
        return 0


def argparse_suppress() -> str:
    import argparse

    return argparse.SUPPRESS


def _shown(record: dict[str, Any], full: bool = False) -> dict[str, Any]:
    keys = ["public_id", "status", "created_at", "expires_at", "domain", "scope", "kind", "sender", "pause_notice_id", "notice_id", "decision"]
    if full:
        keys += ["email", "statement", "attempts", "receipt"]
    return {k: record.get(k) for k in keys}
