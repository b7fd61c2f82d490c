"""The baseline of ``bench/crawl_speed.py``: a plain Scrapy spider, no compliance stack.

Run it OUTSIDE the project directory, so that Scrapy does not find
``scrapy.cfg`` and load ``crawler.settings`` (whose ``ADDONS`` would switch
the compliance components on)::

    cd /tmp && scrapy runspider /path/to/bench/stock_spider.py -a url=http://bench.test/page/0 \
        -s ROBOTSTXT_OBEY=True -O items.jsonl

It does the same per-page work as the project's ``site`` spider, with the
same helpers (``visible_text`` and ``page_links`` are imported from
``crawler.spiders.site``, so parsing costs the same): the title, the visible
text, and a request for every same-host ``<a href>``/``<area href>`` link.
Only the helpers are imported: no middleware, pipeline, extension or add-on
of the project is enabled here. Items go to whatever feed ``-o``/``-O`` names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy.http import HtmlResponse, Response

from crawler.spiders.site import visible_text, page_links

#: The site spider's default COMPLIANCE_ITEM_TEXT_MAX.
TEXT_MAX = 100_000


class StockSpider(scrapy.Spider):
    name = "stock"

    def __init__(self, url: str | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not url:
            raise ValueError("the stock spider needs -a url=http://host/...")
        self.start_urls = [url]
        self.host = (urlsplit(url).hostname or "").lower()
        # Scrapy's offsite middleware gets the same scope, as in the site spider.
        self.allowed_domains = [self.host]

    async def start(self) -> AsyncIterator[Any]:
        for url in self.start_urls:
            yield scrapy.Request(url, callback=self.parse)

    def parse(self, response: Response) -> Iterator[Any]:
        if not isinstance(response, HtmlResponse):
            return
        yield {
            "url": response.url,
            "host": self.host,
            "title": " ".join((response.xpath("//title/text()").get() or "").split()),
            "text": visible_text(response, TEXT_MAX),
            "fetched_at": datetime.now(UTC).isoformat(),
            "status": response.status,
        }
        for link in page_links(response):
            if (urlsplit(link).hostname or "") == self.host:
                yield scrapy.Request(link, callback=self.parse)
