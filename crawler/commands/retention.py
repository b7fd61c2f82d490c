"""``scrapy retention show|apply``: the published retention schedule, and purging what is past it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scrapy.exceptions import UsageError

from crawler.cli import CommandFailed, ComplianceCommand

if TYPE_CHECKING:
    import argparse


class Command(ComplianceCommand):
    def syntax(self) -> str:
        return "show [--json] | apply [--dry-run]"

    def short_desc(self) -> str:
        return "Print the retention schedule (and what is due), or purge the items past it"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--dry-run", action="store_true", help="apply: count what is due per policy; delete nothing")
        parser.add_argument("--json", action="store_true", help="show: the schedule as JSON")
        parser.add_argument("--operator", help="who runs this (default: user@machine, or COMPLIANCE_OPERATOR)")

    def execute(self, args: list[str], opts: argparse.Namespace) -> int:
        if len(args) != 1 or args[0] not in ("show", "apply"):
            raise UsageError("expected 'show' or 'apply'", print_help=True)
        from crawler.dataprotection.retention import due, schedule

        policies = self.policies()
        periods = schedule(policies, default_source(policies))
        # apply (not --dry-run) appends to the ledger: signed, so its receipt carries a proof.
        store = self.open_signing_store() if args[0] == "apply" and not getattr(opts, "dry_run", False) else self.open_store()
        if args[0] == "show":
            counts = due(store, periods)
            if opts.json:
                from crawler.notices_cli import print_json

                print_json([{"policy": p.policy, "domains": list(p.domains) or "every other domain", "retention": p.retention.text,
                             "source": p.source, "due": counts[p.policy]} for p in periods])  # fmt: skip
                return 0
            print("Retention schedule (items are deleted once older than this after they were fetched):")
            for period in periods:
                where = ", ".join(period.domains) if period.domains else "every domain without its own period"
                print(f"  {period.policy:<12} {period.retention.text:<8} {where}  [{period.source}]  due now: {counts[period.policy]}")
            return 0
        return self.apply(store, periods, opts)

    def apply(self, store: Any, periods: Any, opts: argparse.Namespace) -> int:
        from crawler.config import machine_name
        from crawler.dataprotection import settings as dp_settings
        from crawler.dataprotection.retention import apply
        from crawler.notices_cli import extra_locations, operator_of, print_json

        assert self.settings is not None
        from crawler.progress_display import PurgeLine, task_progress

        config = dp_settings.read(self.settings)
        with task_progress(PurgeLine("retention apply"), "0" if opts.dry_run else self.progress_setting(opts)) as progress:
            report = apply(store, periods, operator=operator_of(opts, self.settings), machine=machine_name(self.settings),
                           extra=extra_locations(self.settings), outbox=config.outbox, deadline_days=config.deadline_days,
                           lock_ttl=config.retention_lock_ttl, dry_run=opts.dry_run, progress=progress)  # fmt: skip
        print_json(report)
        return 0


def default_source(policies: Any) -> str:
    """Where the default's retention is written: the project's default.yaml (with its line) or the shipped one."""
    from pathlib import Path

    from crawler.compliance.modelfile import parse_model_file
    from crawler.compliance.policy import SHIPPED, DefaultPolicy, shipped_label

    for path in (Path(policies.default_path), SHIPPED / "default.yaml"):
        if policies.default_path.startswith("shipped") and path != SHIPPED / "default.yaml":
            continue
        errors: list[str] = []
        parsed = parse_model_file(path, DefaultPolicy, errors, "missing")
        if parsed is None:
            continue
        instance, loaded = parsed
        if instance.retention is not None:
            return f"{shipped_label(path)}:{loaded.line_of(('retention',))}"
    raise CommandFailed("no retention in the default policy; this cannot happen with the shipped default (reinstall)")
