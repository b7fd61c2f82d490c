"""``scrapy crawl site -a url=U1[,U2...]``: the generic compliant spider."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import scrapy
from lxml import etree
from scrapy.http import HtmlResponse, Response

from crawler.compliance.domains import domain_of
from crawler.items import PageItem
from crawler.runtime import ComplianceRuntime

# Text inside these elements is not visible on the page.
_VISIBLE_TEXT = (
    "//body//text()[not(ancestor::script or ancestor::style or ancestor::noscript or ancestor::template)]"
)
# Compiled once, run on the lxml tree, returning plain strings: a Selector per
# text node or link (what response.xpath().getall() builds) cost hundreds of
# MiB on a page of 200,000 links (issue #15).
_VISIBLE_TEXT_XPATH = etree.XPath(_VISIBLE_TEXT, smart_strings=False)
_ALL_TEXT_XPATH = etree.XPath("//text()", smart_strings=False)
_LINKS_XPATH = etree.XPath("//a/@href | //area/@href", smart_strings=False)


class StartUrlError(ValueError):
    pass


def parse_start_urls(value: str | None) -> list[str]:
    """``-a url=U1,U2`` as a list of absolute http(s) URLs, or a clear error."""
    urls = [part.strip() for part in (value or "").split(",") if part.strip()]
    if not urls:
        raise StartUrlError("the site spider needs start URLs: scrapy crawl site -a url=https://example.org/[,URL...]")
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StartUrlError(f"-a url: {url!r} is not an absolute http(s) URL (e.g. https://example.org/)")
    return urls


def visible_text(response: HtmlResponse, limit: int) -> str:
    """The page's visible text, whitespace collapsed, at most ``limit`` characters."""
    root = response.selector.root
    pieces = _VISIBLE_TEXT_XPATH(root) or _ALL_TEXT_XPATH(root)
    words: list[str] = []
    size = 0
    for piece in pieces:
        for word in piece.split():
            words.append(word)
            size += len(word) + 1
        if size > limit:
            break
    return " ".join(words)[:limit]


def page_links(response: HtmlResponse) -> Iterator[str]:
    """Absolute http(s) URLs of the page's hyperlinks, without fragments.

    Only ``<a href>`` and ``<area href>`` are links to follow: ``<img>``,
    ``<link>``, ``srcset`` and CSS references are never requested.
    """
    base = response.url
    for href in _LINKS_XPATH(response.selector.root):
        href = href.strip()
        if not href or href.startswith(("#", "javascript:", "mailto:", "tel:", "data:")):
            continue
        parts = urlsplit(urljoin(base, href))
        if parts.scheme in ("http", "https") and parts.hostname:
            yield urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


class SiteSpider(scrapy.Spider):
    """Crawls from each start URL within that URL's registered domain."""

    name = "site"

    def __init__(self, url: str | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.start_urls = parse_start_urls(url)
        self.start_domains = frozenset(domain_of(u) for u in self.start_urls)
        # Scrapy's offsite middlewares also stop redirects that leave these domains.
        self.allowed_domains = sorted(self.start_domains)

    async def start(self) -> AsyncIterator[Any]:
        for url in self.start_urls:
            yield scrapy.Request(url, callback=self.parse)

    def parse(self, response: Response) -> Iterator[Any]:
        if not isinstance(response, HtmlResponse):
            return
        runtime = ComplianceRuntime.of(self.crawler)
        source = runtime.source_of(response)
        yield PageItem(
            url=source["url"],
            host=source["host"],
            domain=source["domain"],
            title=" ".join((response.xpath("//title/text()").get() or "").split()),
            text=visible_text(response, runtime.config.item_text_max),
            fetched_at=source["fetched_at"],
            crawl_id=source["crawl_id"],
            provenance=source["provenance"],
        )
        # COMPLIANCE_MAX_LINKS_PER_PAGE: the rest of a huge page's links are
        # counted, never turned into requests (the spider middleware applies
        # the same bound to any spider).
        room, dropped = runtime.config.max_links_per_page, 0
        for link in page_links(response):
            if domain_of(link) in self.start_domains:
                if room <= 0:
                    dropped += 1
                    continue
                room -= 1
                yield scrapy.Request(link, callback=self.parse)
        if dropped:
            self.logger.info(
                "%s has more than COMPLIANCE_MAX_LINKS_PER_PAGE (%d) links to follow; %d dropped",
                response.url, runtime.config.max_links_per_page, dropped,
            )  # fmt: skip
            self.crawler.stats.inc_value("compliance/links/pages_over_limit")
            self.crawler.stats.inc_value("compliance/links/dropped", dropped)
