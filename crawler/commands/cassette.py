"""``scrapy cassette record URL [URL...] -o FILE.yaml``: record a site for offline compliance tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scrapy.exceptions import UsageError

from crawler.cli import CommandFailed, ComplianceCommand

if TYPE_CHECKING:
    import argparse


class Command(ComplianceCommand):
    def syntax(self) -> str:
        return "record URL [URL...] -o FILE.yaml"

    def short_desc(self) -> str:
        return "Record robots.txt, tdmrep.json and pages as a vcrpy cassette (replay with COMPLIANCE_CASSETTE)"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("-o", "--output", metavar="FILE", help="the cassette to write (YAML, vcrpy's format)")
        parser.add_argument("--ca-bundle", metavar="FILE", help="trust this CA bundle for https (default: the system's)")

    def execute(self, args: list[str], opts: argparse.Namespace) -> int:
        from crawler.cassettes import record
        from crawler.config import Config, ConfigError

        if not args or args[0] != "record" or len(args) < 2:
            raise UsageError("expected: record URL [URL...] -o FILE.yaml", print_help=True)
        if not opts.output:
            raise UsageError("record needs -o FILE.yaml", print_help=False)
        urls = args[1:]
        bad = [u for u in urls if not u.startswith(("http://", "https://"))]
        if bad:
            raise CommandFailed(f"{bad[0]!r} is not an absolute http(s) URL")
        assert self.settings is not None
        try:
            config = Config.from_settings(self.settings)
        except ConfigError as exc:
            raise CommandFailed(str(exc)) from None
        try:
            notes = record(urls, opts.output, config.user_agent, config.bot_name, verify=opts.ca_bundle or True)
        except OSError as exc:
            raise CommandFailed(f"recording failed: {exc}") from None
        for note in notes:
            print(note)
        print(f"wrote {opts.output}")
        return 0
