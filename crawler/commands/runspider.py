"""``scrapy runspider FILE``, checking the compliance settings before anything starts.

Like ``crawl`` (see :mod:`crawler.commands.crawl`): only when the project's
settings enable the compliance add-on; otherwise it is Scrapy's own command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scrapy.commands.runspider import Command as ScrapyRunSpiderCommand

from crawler.commands.crawl import ProgressOption, run_checked, with_spider_settings

if TYPE_CHECKING:
    import argparse


class Command(ProgressOption, ScrapyRunSpiderCommand):
    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        settings = with_spider_settings(self.settings, _spider_class(args))
        run_checked(self, settings, None, opts.spargs, lambda: super(Command, self).run(args, opts))


def _spider_class(args: list[str]) -> type | None:
    """The spider class Scrapy's command will run from the file (None if it cannot: Scrapy says why)."""
    from pathlib import Path

    from scrapy.commands.runspider import _import_file
    from scrapy.utils.spider import iter_spider_classes

    if len(args) != 1 or not Path(args[0]).exists():
        return None
    try:
        classes = list(iter_spider_classes(_import_file(Path(args[0]))))
    except (ImportError, ValueError):
        return None
    return classes[-1] if classes else None
