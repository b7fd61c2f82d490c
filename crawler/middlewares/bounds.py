"""Bounded resources: a hostile page costs at most a few MiB, and each cut is a recorded refusal.

The add-on lowers DOWNLOAD_MAXSIZE and DOWNLOAD_WARNSIZE to sizes that fit a
text crawler (crawler/addon.py, documented in docs/settings.md). Scrapy
applies DOWNLOAD_MAXSIZE twice: to the bytes received (the download handler
cancels the transfer) and to the decompressed body (HttpCompressionMiddleware
stops inflating a gzip, deflate, brotli or zstd bomb). This subclass takes
the stock middleware's place and turns both cuts into a ``content.too-large``
refusal, logged, counted and stored like every other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scrapy.downloadermiddlewares.httpcompression import HttpCompressionMiddleware
from scrapy.exceptions import DownloadCancelledError, IgnoreRequest
from twisted.internet.defer import CancelledError

from crawler.compliance.decision import Decision
from crawler.runtime import ComplianceRuntime

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response

STOCK_COMPRESSION = "scrapy.downloadermiddlewares.httpcompression.HttpCompressionMiddleware"
REASON = "content.too-large"


class BoundedHttpCompressionMiddleware(HttpCompressionMiddleware):
    runtime: ComplianceRuntime

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Any:
        middleware = super().from_crawler(crawler)
        middleware.runtime = ComplianceRuntime.of(crawler)
        return middleware

    def _limit(self, request: Request) -> int:
        return int(request.meta.get("download_maxsize") or self._max_size)

    def _handle_encoding(self, body: bytes, content_encoding: list[bytes], max_size: int) -> Any:
        # A request without a transfer limit (download_maxsize 0: robots.txt,
        # cut at its parse limit instead) still gets a decompression limit.
        return super()._handle_encoding(body, content_encoding, max_size or self._max_size)

    def process_response(self, request: Request, response: Response, spider: Any = None) -> Any:
        try:
            return super().process_response(request, response)  # no spider: Scrapy 2.19 deprecates passing it
        except IgnoreRequest as exc:
            if exc.__cause__ is None or type(exc.__cause__).__name__ != "_DecompressionMaxSizeExceeded":
                raise
            self.runtime.refuse_request(
                Decision.refuse(
                    REASON, rule=f"decompressed body over DOWNLOAD_MAXSIZE ({self._limit(request)} B)",
                    source="DOWNLOAD_MAXSIZE",
                    detail=f"{len(response.body)} B compressed; decompression stopped at the limit",
                ),
                "download", request,
            )  # fmt: skip

    def process_exception(self, request: Request, exception: BaseException, spider: Any = None) -> None:
        # The download handler cancels a transfer past DOWNLOAD_MAXSIZE: a
        # Content-Length over it (the message says "max size", see
        # scrapy.utils._download_handlers.get_maxsize_msg), or more bytes
        # than it (a bare Twisted CancelledError: the handler's only other
        # cancellation is DOWNLOAD_TIMEOUT, reported as a TimeoutError).
        if isinstance(exception, DownloadCancelledError) and (
            "max size" in str(exception) or (not str(exception) and isinstance(exception.__cause__, CancelledError))
        ):
            self.runtime.refuse_request(
                Decision.refuse(
                    REASON, rule=f"body over DOWNLOAD_MAXSIZE ({self._limit(request)} B)", source="DOWNLOAD_MAXSIZE",
                    detail="the transfer was cut off",
                ),
                "download", request,
            )  # fmt: skip
        return None
