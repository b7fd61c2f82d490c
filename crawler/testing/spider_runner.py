"""Run any spider with the compliance stack, in its own process (``python -m``).

    python -m crawler.testing.spider_runner TARGET [URL...] [--settings-json FILE] [-a NAME=VALUE ...]

``TARGET`` is ``package.module:SpiderClass`` or the name of a spider of the
current Scrapy project (``site`` is the framework's own spider when the
project has none of that name). URLs, when given, become the spider's
``start_urls`` (the ``site`` spider's ``url`` argument). The settings are the
current project's, plus the compliance add-on, plus the JSON file's values
with their types kept (lists, dicts, booleans). Used by the pytest plugin's
``run_compliance_crawl``. The exit status is non-zero when the crawl refused
to start, did not finish, or failed as ``scrapy crawl`` would report it.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crawler.testing.spider_runner")
    parser.add_argument("spider", help="module:Class, or a spider name of the current project")
    parser.add_argument("urls", nargs="*")
    parser.add_argument("--settings-json", metavar="FILE", help="a JSON object of settings")
    parser.add_argument("-a", dest="spargs", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)

    from scrapy import signals
    from scrapy.crawler import CrawlerProcess
    from scrapy.spiderloader import get_spider_loader
    from scrapy.utils.misc import load_object
    from scrapy.utils.project import get_project_settings

    from crawler.commands.crawl import ADDON, crawl_failures, preflight
    from crawler.spiders.site import SiteSpider

    settings = get_project_settings()
    addons = dict(settings.getdict("ADDONS"))
    addons.setdefault(ADDON, 0)
    settings.set("ADDONS", addons, priority="cmdline")
    if args.settings_json:
        with open(args.settings_json, encoding="utf-8") as handle:
            for name, value in json.load(handle).items():
                settings.set(name, value, priority="cmdline")
    kwargs = dict(pair.partition("=")[::2] for pair in args.spargs)
    if ":" in args.spider:
        module, _, name = args.spider.partition(":")
        spider_cls = load_object(f"{module}.{name}")
    else:
        try:
            spider_cls = get_spider_loader(settings).load(args.spider)
        except KeyError:
            if args.spider != SiteSpider.name:
                print(f"error: no spider named {args.spider!r} in this project", file=sys.stderr)
                return 2
            spider_cls = SiteSpider
    if args.urls:
        if spider_cls is SiteSpider or issubclass(spider_cls, SiteSpider):
            kwargs["url"] = ",".join(args.urls)
        else:
            kwargs["start_urls"] = list(args.urls)
    refusal = preflight(settings, spider_cls.name, kwargs)
    if refusal is not None:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    process = CrawlerProcess(settings)
    crawler = process.create_crawler(spider_cls)
    reasons: list[str] = []
    crawler.signals.connect(lambda spider, reason: reasons.append(reason), signal=signals.spider_closed, weak=False)
    process.crawl(crawler, **kwargs)
    process.start()
    lines, status = crawl_failures()
    for line in lines:
        print(f"error: {line}", file=sys.stderr)
    if reasons != ["finished"] and not status:
        print(f"error: the crawl did not finish: {', '.join(reasons) or 'no spider_closed'}", file=sys.stderr)
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
