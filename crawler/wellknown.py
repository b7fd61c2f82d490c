"""Fetching a site's own files (robots.txt, tdmrep.json) through the engine, following redirects ourselves.

RFC 9309 section 2.3.1.2 asks a crawler to follow at least five redirect
hops for robots.txt and to count them itself; /.well-known/tdmrep.json is
fetched the same way. A redirect hop obeys the same rules as a page's
redirect: Scrapy's offsite filter (the spider's ``allowed_domains``) and the
address checks of crawler/middlewares/network.py. Scrapy's RedirectMiddleware and RetryMiddleware are
switched off for these requests, so each hop is one request the caller can
account for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from scrapy import Request
from scrapy.exceptions import IgnoreRequest
from scrapy.http.request import NO_CALLBACK

from crawler.compliance.robots import MAX_REDIRECTS

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Response

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Fetched:
    """The final answer, or why there is none.

    ``response`` is the first non-redirect response (its ``url`` in
    ``final_url``, after ``hops`` redirects). Without one, ``refused`` holds
    the IgnoreRequest that stopped the fetch, ``error`` a network failure, or
    ``problem`` what was wrong with a redirect.
    """

    final_url: str
    hops: int
    response: Response | None = None
    refused: IgnoreRequest | None = None
    error: Exception | None = None
    problem: str = ""


async def fetch_following_redirects(
    crawler: Crawler, url: str, *, meta: Mapping[str, Any], stat: str, priority: int = 0,
    on_response: Callable[[Response], None] | None = None,
) -> Fetched:
    """GET ``url`` and up to MAX_REDIRECTS redirects after it; ``stat`` is counted once per request."""
    for hop in range(MAX_REDIRECTS + 1):
        # The first URL is the origin of a request already admitted; every
        # redirect hop passes the offsite filter like a page's redirect
        # (dont_filter=False), and every hop the address checks
        # (crawler/middlewares/network.py), since all go through the
        # downloader middlewares.
        request = Request(url, priority=priority, callback=NO_CALLBACK, dont_filter=hop == 0, meta={
            **meta, "dont_redirect": True, "dont_retry": True, "handle_httpstatus_all": True, "dont_cache": True,
        })  # fmt: skip
        crawler.stats.inc_value(stat)  # type: ignore[union-attr]
        try:
            response = await crawler.engine.download_async(request)  # type: ignore[union-attr]
        except IgnoreRequest as exc:
            return Fetched(url, hop, refused=exc)
        except Exception as exc:  # noqa: BLE001 - any network failure: the caller says what it means
            return Fetched(url, hop, error=exc)
        if on_response is not None:
            on_response(response)
        if response.status not in REDIRECT_STATUSES:
            return Fetched(url, hop, response=response)
        location = response.headers.get(b"Location")
        if not location:
            return Fetched(url, hop, problem=f"HTTP {response.status} without Location at {url}")
        url = urljoin(response.url, location.decode("latin-1"))
        if not url.startswith(("http://", "https://")):
            return Fetched(url, hop, problem=f"HTTP {response.status} to non-HTTP URL {url}")
    return Fetched(url, MAX_REDIRECTS, problem=f"more than {MAX_REDIRECTS} redirects (RFC 9309 2.3.1.2)")
