"""The image gates at download time, over :mod:`crawler.compliance.images`.

(Image URLs are first refused before scheduling, by
:class:`crawler.extensions.scheduling.SchedulingGate`.) :class:`ImageDownloadGate`
checks the URL again when the request reaches the downloader, then the
response headers and the first body bytes, aborting the transfer before the
body (``headers_received``) or after the first chunk (``bytes_received``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from scrapy import Request, signals
from scrapy.exceptions import IgnoreRequest, StopDownload

from crawler.compliance.images import SNIFF_BYTES, headers_decision, magic_decision, url_decision
from crawler.runtime import ComplianceRuntime

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Headers

    from crawler.compliance.decision import Decision

_REFUSED = "compliance_image_refused"
_HEAD = "compliance_image_head"
_READ = "compliance_image_bytes"


class ImageDownloadGate:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.runtime = ComplianceRuntime.of(crawler)
        # Receivers are weak references; these bound methods live with self.
        crawler.signals.connect(self._on_headers, signal=signals.headers_received)
        crawler.signals.connect(self._on_bytes, signal=signals.bytes_received)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ImageDownloadGate:
        return cls(crawler)

    def process_request(self, request: Request) -> None:
        decision = url_decision(request.url)
        if not decision.allowed:
            self.runtime.refuse_request(decision, "download", request)

    def process_exception(self, request: Request, exception: Exception) -> None:
        # Our own abort: already logged and counted once; end it quietly
        # instead of letting Scrapy report a download error.
        if isinstance(exception, StopDownload) and request.meta.get(_REFUSED):
            raise IgnoreRequest(request.meta[_REFUSED])

    def _abort(self, decision: Decision, request: Request, bytes_read: int) -> None:
        decision = dataclasses.replace(
            decision.at("headers" if bytes_read == 0 else "body", request.url),
            detail=f"transfer aborted after {bytes_read} body byte(s)",
        )
        request.meta[_REFUSED] = str(decision)
        self.runtime.refuse(decision)
        stats = self.crawler.stats
        stats.inc_value("compliance/images/aborted")
        stats.inc_value("compliance/images/bytes_read", bytes_read)
        stats.max_value("compliance/images/max_bytes_read", bytes_read)
        raise StopDownload(fail=True)

    def _on_headers(self, headers: Headers, body_length: int, request: Request, spider: Any = None) -> None:
        decision = headers_decision(
            (headers.get(b"Content-Type") or b"").decode("latin-1"),
            (headers.get(b"Content-Disposition") or b"").decode("latin-1"),
        )
        if not decision.allowed:
            self._abort(decision, request, 0)

    def _on_bytes(self, data: bytes, request: Request, spider: Any = None) -> None:
        meta = request.meta
        read = meta.get(_READ, 0) + len(data)
        meta[_READ] = read
        head = meta.get(_HEAD, b"")
        if head is None:  # already sniffed: not an image
            return
        head = (head + data)[:SNIFF_BYTES]
        decision = magic_decision(head)
        if not decision.allowed:
            self._abort(decision, request, read)
        # Keep sniffing until enough bytes for every signature were seen.
        meta[_HEAD] = None if len(head) >= SNIFF_BYTES else head
