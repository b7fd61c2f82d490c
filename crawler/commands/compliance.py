"""``scrapy compliance report [--crawl ID] [--html FILE]``: the report a compliance person reads after a crawl."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from scrapy.exceptions import UsageError

from crawler.cli import CommandFailed, ComplianceCommand

if TYPE_CHECKING:
    import argparse


class Command(ComplianceCommand):
    def syntax(self) -> str:
        return "report [--crawl ID | --all] [--html FILE]"

    def short_desc(self) -> str:
        return "Report what a crawl stored and refused, notices, purges and the ledger's status"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--crawl", metavar="ID", help="the crawl to report (default: the latest)")
        parser.add_argument("--all", action="store_true", help="every crawl in the store")
        parser.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page with charts")

    def execute(self, args: list[str], opts: argparse.Namespace) -> int:
        from crawler.report import build, render_html, render_text

        if args != ["report"]:
            raise UsageError("expected: report [--crawl ID | --all] [--html FILE]", print_help=True)
        store = self.open_store()
        crawl_id = None if opts.all else (opts.crawl or store.last_crawl_id())
        if crawl_id is not None and store.crawl(crawl_id) is None:
            raise CommandFailed(f"no crawl {crawl_id!r} in the store" if opts.crawl else "the store holds no crawl yet; run one first")
        data = build(store, crawl_id)
        print(render_text(data), end="")
        if opts.html:
            target = Path(opts.html)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(render_html(data), encoding="utf-8")
            except OSError as exc:
                raise CommandFailed(f"cannot write {opts.html}: {exc.strerror or exc}") from None
            print(f"wrote {opts.html}")
        return 0 if data["ledger"]["ok"] else 1
