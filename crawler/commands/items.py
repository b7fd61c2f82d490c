"""``scrapy items count|export``: what the store holds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scrapy.exceptions import UsageError

from crawler.cli import CommandFailed, ComplianceCommand

if TYPE_CHECKING:
    import argparse


class Command(ComplianceCommand):
    def syntax(self) -> str:
        return "count [--domain D] | export -o FILE [--domain D] [--destination NAME] [--purpose P]..."

    def short_desc(self) -> str:
        return "Count or export the items in the compliance store"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--domain", metavar="D", help="only items whose host is D or a subdomain of D")
        parser.add_argument("-o", "--output", metavar="FILE", help="export: the JSON-lines file to write")
        parser.add_argument("--destination", metavar="NAME",
                            help="export: who receives it (its manifest names it; a purge sends it a deletion request); default: the file")  # fmt: skip
        parser.add_argument("--purpose", action="append", default=[], metavar="P",
                            help="export: what the recipient may use it for (search, train-ai, archive); default COMPLIANCE_PURPOSES")  # fmt: skip
        parser.add_argument("--operator", help="export: who runs this (default: user@machine, or COMPLIANCE_OPERATOR)")

    def execute(self, args: list[str], opts: argparse.Namespace) -> int:
        if len(args) != 1 or args[0] not in ("count", "export"):
            raise UsageError("expected 'count' or 'export'", print_help=True)
        from crawler.compliance.store import write_jsonl
        from crawler.progress_display import TaskProgress, task_progress, tracked

        store = self.open_store()
        if args[0] == "count":
            print(store.count_items(opts.domain))
            return 0
        if not opts.output:
            raise UsageError("export needs -o FILE", print_help=False)
        from pathlib import Path

        from crawler.compliance.optouts import parse_purposes
        from crawler.config import machine_name
        from crawler.dataprotection.exports import items_with_ids, start_export
        from crawler.notices_cli import operator_of

        assert self.settings is not None
        try:
            purposes = parse_purposes(opts.purpose or self.settings.get("COMPLIANCE_PURPOSES"))
        except ValueError as exc:
            raise CommandFailed(f"--purpose: {exc}") from None
        target = str(Path(opts.output).resolve())
        try:
            # The line is drawn first: the rest waits on the store. The total is
            # counted (one indexed COUNT) only when a line is drawn.
            with task_progress(TaskProgress("items export"), self.progress_setting(opts)) as progress:
                # The manifest (GDPR Art. 19: who received what) is written as the records leave.
                manifest = start_export(store, opts.destination or target, "items-export", target, purposes, operator_of(opts, self.settings))

                def recorded() -> Any:
                    for item_id, record in items_with_ids(store, opts.domain):
                        manifest.add(str(record.get("url") or ""), record, item_id)
                        yield record

                try:
                    if progress.live is not None:
                        progress.total = store.count_items(opts.domain)
                    written = write_jsonl(tracked(recorded(), progress), opts.output)
                finally:
                    manifest.flush()
        except OSError as exc:
            raise CommandFailed(f"cannot write {opts.output}: {exc.strerror or exc}") from None
        # An export is a copy of stored data: record it, so purges find it too.
        store.record_output("items-export", machine_name(self.settings), "feed", str(Path(opts.output).resolve()), {"format": "jsonlines"})
        print(f"wrote {written} items to {opts.output}")
        return 0
