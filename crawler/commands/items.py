"""``scrapy items count|export``: what the store holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scrapy.exceptions import UsageError

from crawler.cli import CommandFailed, ComplianceCommand

if TYPE_CHECKING:
    import argparse


class Command(ComplianceCommand):
    def syntax(self) -> str:
        return "count [--domain D] | export -o FILE [--domain D]"

    def short_desc(self) -> str:
        return "Count or export the items in the compliance store"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--domain", metavar="D", help="only items whose host is D or a subdomain of D")
        parser.add_argument("-o", "--output", metavar="FILE", help="export: the JSON-lines file to write")

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
        try:
            # The total is counted first (one indexed COUNT) only when a line is drawn.
            with task_progress(TaskProgress("items export"), self.progress_setting(opts)) as progress:
                if progress.live is not None:
                    progress.total = store.count_items(opts.domain)
                written = write_jsonl(tracked(store.iter_items(opts.domain), progress), opts.output)
        except OSError as exc:
            raise CommandFailed(f"cannot write {opts.output}: {exc.strerror or exc}") from None
        # An export is a copy of stored data: record it, so purges find it too.
        from pathlib import Path

        from crawler.config import machine_name

        assert self.settings is not None
        store.record_output("items-export", machine_name(self.settings), "feed", str(Path(opts.output).resolve()), {"format": "jsonlines"})
        print(f"wrote {written} items to {opts.output}")
        return 0
