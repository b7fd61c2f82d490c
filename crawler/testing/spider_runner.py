"""Run any spider class with the compliance stack, in its own process (``python -m``).

    python -m crawler.testing.spider_runner package.module:SpiderClass URL [URL...] [-s NAME=VALUE ...]

The spider gets the URLs as ``start_urls``; the settings are the current
Scrapy project's (if any) plus the compliance add-on plus ``-s`` values. Used
by the pytest plugin's ``run_compliance_crawl`` for spiders that are classes.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crawler.testing.spider_runner")
    parser.add_argument("spider", help="module:Class")
    parser.add_argument("urls", nargs="+")
    parser.add_argument("-s", dest="settings", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)

    from scrapy.crawler import CrawlerProcess
    from scrapy.utils.misc import load_object
    from scrapy.utils.project import get_project_settings

    settings = get_project_settings()
    addons = dict(settings.getdict("ADDONS"))
    addons.setdefault("crawler.addon.Compliance", 0)
    settings.set("ADDONS", addons, priority="cmdline")
    for pair in args.settings:
        name, _, value = pair.partition("=")
        settings.set(name, value, priority="cmdline")
    from scrapy import signals

    module, _, name = args.spider.partition(":")
    spider_cls = load_object(f"{module}.{name}")
    process = CrawlerProcess(settings)
    crawler = process.create_crawler(spider_cls)
    reasons: list[str] = []
    crawler.signals.connect(lambda spider, reason: reasons.append(reason), signal=signals.spider_closed, weak=False)
    process.crawl(crawler, start_urls=list(args.urls))
    process.start()
    from crawler.cassettes import MISSES

    for miss in MISSES:
        print(f"error: cassette miss: {miss}", file=sys.stderr)
    return 0 if reasons == ["finished"] and not MISSES else 1


if __name__ == "__main__":
    sys.exit(main())
