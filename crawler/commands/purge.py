"""``scrapy purge``: delete what is held in a scope everywhere, without filing a notice."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crawler.cli import CommandFailed, ComplianceCommand
from crawler.notices_cli import add_scope_options, extra_locations, operator_of, print_json, purge_request, scope_from_options

if TYPE_CHECKING:
    import argparse


class Command(ComplianceCommand):
    def syntax(self) -> str:
        return "(--domain D | --platform P | --url-pattern PAT | --notice ID) --reason TEXT [--dry-run] [--verify]"

    def short_desc(self) -> str:
        return "Delete stored data in a scope from every location, with a receipt in the ledger"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        add_scope_options(parser)
        parser.add_argument("--notice", metavar="ID", help="purge the scope of this notice (again)")
        parser.add_argument("--reason", default="", help="why (required unless --notice)")
        parser.add_argument("--dry-run", action="store_true", help="count what is in scope at each location; delete nothing")
        parser.add_argument("--verify", action="store_true", help="then scan every location; exit 1 if anything in scope remains")

    def execute(self, args: list[str], opts: argparse.Namespace) -> int:
        from crawler.compliance.notices import Notice
        from crawler.compliance.purge import survey
        from crawler.config import machine_name

        assert self.settings is not None
        if args:
            raise CommandFailed(f"unexpected argument {args[0]!r}; see `scrapy purge -h`")
        policies = self.policies_to_stop()
        store = self.open_signing_store() if not opts.dry_run else self.open_store()
        resolved: list[str] = []
        if opts.notice:
            if opts.domain or opts.platform or opts.url_pattern:
                raise CommandFailed("--notice takes its scope from the notice; drop --domain/--platform/--url-pattern")
            row = store.notice_row(opts.notice)
            if row is None:
                raise CommandFailed(f"no notice {opts.notice!r} in the store; see `scrapy notice list`")
            scope = Notice.model_validate(row.data).scope
            resolved = row.resolved_domains
            reason = opts.reason or f"notice {opts.notice}"
        else:
            if not opts.reason.strip():
                raise CommandFailed("--reason is required: say why this data is purged (it goes into the ledger)")
            scope = scope_from_options(opts, policies)
            reason = opts.reason.strip()
        request = purge_request(scope, policies, reason, operator_of(opts, self.settings), opts.notice, resolved)
        machine = machine_name(self.settings)
        extra = extra_locations(self.settings)
        if opts.dry_run:
            found = survey(store, request.scope, machine, extra)
            report: dict[str, Any] = {"dry_run": True, "scope": request.scope_record, "in_scope": _counts(found, machine)}
            status = 0
            if opts.verify:
                status, report["verify"] = _verdict(found, machine)
            print_json(report)
            return status
        receipt = self.purge_everywhere(store, request, opts, machine, extra)
        if not opts.verify:
            print_json(receipt)
            return 0
        # One JSON document: the receipt, and what a fresh scan of every location found.
        found = survey(store, request.scope, machine, extra)
        status, verdict = _verdict(found, machine)
        print_json({**receipt, "verify": {"remaining": _counts(found, machine), **verdict}})
        return status


def _counts(found: list[Any], machine: str) -> dict[str, Any]:
    from crawler.compliance.purge import label

    return {label(loc, machine): ({"remaining": out.count} if out.status == "done" else {"status": out.status, "why": out.detail})
            for loc, out in found}  # fmt: skip


def _verdict(found: list[Any], machine: str) -> tuple[int, dict[str, Any]]:
    """(exit status, the verdict as JSON): 1 when anything in scope remains or a location cannot be checked."""
    import sys

    from crawler.compliance.purge import label

    remaining = [(label(loc, machine), out.count) for loc, out in found if out.count]
    unverified = [label(loc, machine) for loc, out in found if out.status != "done"]
    problems = [f"{count} record(s) in scope remain in {name}" for name, count in remaining]
    problems += [f"cannot verify {name} from here" for name in unverified]
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    verdict = {"verified": not problems, "problems": problems}
    return (1 if problems else 0), verdict
