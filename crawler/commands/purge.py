"""``scrapy purge``: delete what is held in a scope everywhere, without filing a notice."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crawler.cli import CommandFailed, ComplianceCommand
from crawler.compliance.notices import Notice
from crawler.compliance.purge import label, run_purge, survey
from crawler.config import ConfigError, machine_name
from crawler.notices_cli import (
    add_scope_options, operator_of, policy_dir, print_json, purge_request, scope_from_options,
)  # fmt: skip
from crawler.runtime import load_policies_or_fail

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
        assert self.settings is not None
        if args:
            raise CommandFailed(f"unexpected argument {args[0]!r}; see `scrapy purge -h`")
        try:
            policies = load_policies_or_fail(str(policy_dir(self.settings)))
        except ConfigError as exc:
            raise CommandFailed(str(exc)) from None
        store = self.open_store()
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
        if opts.dry_run:
            found = survey(store, request.scope, machine)
            print_json({"dry_run": True, "scope": request.scope_record, "in_scope": _counts(found, machine)})
            return _verdict(found, machine) if opts.verify else 0
        receipt = run_purge(store, request, machine)
        print_json(receipt)
        if opts.verify:
            found = survey(store, request.scope, machine)
            print_json({"verify": _counts(found, machine)})
            return _verdict(found, machine)
        return 0


def _counts(found: list[Any], machine: str) -> dict[str, Any]:
    return {label(loc, machine): ({"remaining": out.count} if out.status == "done" else {"status": out.status, "why": out.detail})
            for loc, out in found}  # fmt: skip


def _verdict(found: list[Any], machine: str) -> int:
    remaining = [(label(loc, machine), out.count) for loc, out in found if out.count]
    unverified = [label(loc, machine) for loc, out in found if out.status != "done"]
    for name, count in remaining:
        print(f"error: {count} record(s) in scope remain in {name}")
    for name in unverified:
        print(f"error: cannot verify {name} from here (see above)")
    if not remaining and not unverified:
        print("verified: nothing in scope remains at any location")
    return 1 if remaining or unverified else 0
