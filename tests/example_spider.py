"""A spider as a user of the framework would write it (used by tests/test_plugin.py).

It follows every link and yields every image it sees, as a careless spider
would: the compliance stack must keep it compliant anyway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import scrapy


class CarelessSpider(scrapy.Spider):
    name = "careless"

    async def start(self) -> AsyncIterator[Any]:
        for url in self.start_urls:
            yield scrapy.Request(url)

    def parse(self, response: Any) -> Iterator[Any]:
        if not hasattr(response, "css"):
            return
        yield {"url": response.url, "title": response.css("title::text").get(""),
               "images": response.urljoin(response.css("img::attr(src)").get("") or "/none.jpg")}  # fmt: skip
        for href in response.css("a::attr(href), img::attr(src)").getall():
            if not href.startswith(("mailto:", "javascript:")):
                yield response.follow(href)


class UrlLessSpider(scrapy.Spider):
    """Yields ``{"heading", "words"}``: no url field, as most real spiders' items."""

    name = "urlless"

    def parse(self, response: Any) -> Iterator[Any]:
        if not hasattr(response, "css"):
            return
        yield {"heading": response.css("h1::text").get(""), "words": len(response.css("body ::text").getall())}
        for href in response.css("a::attr(href)").getall():
            if href.startswith("/"):
                yield response.follow(href)


class StartItemsSpider(scrapy.Spider):
    """Yields items from start(), with no response behind them: one with a url field, one without."""

    name = "startitems"

    async def start(self) -> AsyncIterator[Any]:
        yield {"note": "configuration echo"}
        yield {"url": self.start_urls[0] + "about", "note": "announced page"}
        for url in self.start_urls:
            yield scrapy.Request(url)

    def parse(self, response: Any) -> Iterator[Any]:
        yield {"heading": response.css("h1::text").get("") if hasattr(response, "css") else ""}


class CopyingPipeline:
    """A project pipeline that returns a new item object (as a pipeline normalising into a new dict does)."""

    def process_item(self, item: Any) -> Any:
        return {**item, "normalised": True}


class CopyingSpiderMiddleware:
    """A project spider middleware (at the template's 543) that yields a copy of each item."""

    async def process_spider_output(self, response: Any, result: Any) -> AsyncIterator[Any]:
        async for entry in result:
            yield {**entry, "seen_by_middleware": True} if isinstance(entry, dict) else entry


class ErrbackSpider(scrapy.Spider):
    """Yields an item from the errback of a request that fails (a 404)."""

    name = "errback"

    async def start(self) -> AsyncIterator[Any]:
        for url in self.start_urls:
            yield scrapy.Request(url + "no-such-page", errback=self.failed)

    def parse(self, response: Any) -> Iterator[Any]:
        yield {"heading": "never: the page is missing"}

    def failed(self, failure: Any) -> Iterator[Any]:
        yield {"failed": type(failure.value).__name__}
