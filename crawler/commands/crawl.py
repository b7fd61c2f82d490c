"""``scrapy crawl``, checking the compliance settings before anything starts.

Scrapy's own command would start the crawler and report a bad setting as a
traceback from inside an extension. This one checks first and prints one line.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from scrapy.commands.crawl import Command as ScrapyCrawlCommand

from crawler.cassettes import CassetteError, check_cassette
from crawler.config import Config, ConfigError
from crawler.runtime import load_notices_or_fail, load_policies_or_fail
from crawler.spiders.site import SiteSpider, StartUrlError, parse_start_urls

if TYPE_CHECKING:
    import argparse


class Command(ScrapyCrawlCommand):
    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        try:
            config = Config.from_settings(self.settings)
            load_notices_or_fail(config.policy_dir, load_policies_or_fail(config.policy_dir))
            if self.settings.get("COMPLIANCE_CASSETTE"):
                check_cassette(str(self.settings.get("COMPLIANCE_CASSETTE")))
            if args and args[0] == SiteSpider.name:
                parse_start_urls(opts.spargs.get("url"))
        except (ConfigError, StartUrlError, CassetteError) as exc:
            print(f"error: crawl refused to start: {exc}", file=sys.stderr)
            self.exitcode = 2
            return
        super().run(args, opts)
        from crawler.cassettes import MISSES
        from crawler.extensions.policywatch import STOPPED

        for reason in STOPPED:
            print(f"error: crawl stopped: invalid notice file: {reason}", file=sys.stderr)
            self.exitcode = 2

        if MISSES:
            for miss in MISSES:
                print(f"error: cassette miss: {miss}", file=sys.stderr)
            print(f"error: {len(MISSES)} request(s) were not in the cassette; record them or fix the spider", file=sys.stderr)
            self.exitcode = 1
