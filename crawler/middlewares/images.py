"""The image gates at download time, over :mod:`crawler.compliance.images`.

(Image URLs are first refused before scheduling, by
:class:`crawler.extensions.scheduling.SchedulingGate`.) :class:`ImageDownloadGate`
checks the URL again when the request reaches the downloader, then the
response headers and the first body bytes, aborting the transfer before the
body (``headers_received``) or after the first chunk (``bytes_received``).
"""

from __future__ import annotations

import dataclasses
import weakref
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scrapy import Request, signals
from scrapy.exceptions import IgnoreRequest, StopDownload

from crawler.compliance.decision import Decision
from crawler.compliance.images import SNIFF_BYTES, SOURCE, body_decoder, headers_decision, magic_decision, url_decision
from crawler.runtime import ComplianceRuntime

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Headers, Response

_REFUSED = "compliance_image_refused"


@dataclass
class _Sniff:
    """What one transfer has shown so far: state per response, never in ``request.meta``
    (Scrapy copies meta into a redirect's or a retry's new request)."""

    head: bytes | None = b""  # None: enough seen, not an image
    read: int = 0
    decoder: Any = None  # a zlib decompressor for gzip/deflate bodies


class ImageDownloadGate:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.runtime = ComplianceRuntime.of(crawler)
        self._sniffs: weakref.WeakKeyDictionary[Request, _Sniff] = weakref.WeakKeyDictionary()
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

    def process_response(self, request: Request, response: Response) -> Response:
        """The whole body, once more, after Scrapy decoded it (this gate sits after
        HttpCompressionMiddleware): a compressed image whose first bytes on the
        wire said nothing is caught here, and a body in an encoding nothing
        decoded cannot be checked, so it is refused."""
        encoding = (response.headers.get(b"Content-Encoding") or b"").strip().lower()
        if encoding and encoding != b"identity" and response.body:
            self._refuse_response(
                Decision.refuse("image.unverifiable", rule=f"Content-Encoding {encoding.decode('latin-1')!r} was not decoded, "
                                "so the body cannot be checked for images", source=SOURCE),
                request, len(response.body),
            )  # fmt: skip
        decision = magic_decision(response.body[:SNIFF_BYTES])
        if not decision.allowed:
            self._refuse_response(decision, request, len(response.body))
        return response

    def process_exception(self, request: Request, exception: Exception) -> None:
        # Our own abort: already logged and counted once; end it quietly
        # instead of letting Scrapy report a download error.
        if isinstance(exception, StopDownload) and request.meta.get(_REFUSED):
            raise IgnoreRequest(request.meta[_REFUSED])

    def _refuse_response(self, decision: Decision, request: Request, size: int) -> None:
        decision = dataclasses.replace(decision.at("body", request.url), detail=f"whole body ({size} bytes) checked after decoding; dropped")
        self.crawler.stats.inc_value("compliance/images/dropped_after_decoding")
        self.runtime.refuse_request(decision, "body", request)

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
        # Every Content-Type line, and every type in a list: one image/* among them is enough.
        decision = headers_decision(
            ",".join(v.decode("latin-1") for v in headers.getlist(b"Content-Type")),
            ";".join(v.decode("latin-1") for v in headers.getlist(b"Content-Disposition")),
        )
        if not decision.allowed:
            self._abort(decision, request, 0)
        # A new response (a redirect's target, a retry): sniff it from its first byte.
        sniff = _Sniff()
        sniff.decoder = body_decoder((headers.get(b"Content-Encoding") or b"").decode("latin-1"))
        self._sniffs[request] = sniff

    def _on_bytes(self, data: bytes, request: Request, spider: Any = None) -> None:
        sniff = self._sniffs.get(request)
        if sniff is None:
            sniff = self._sniffs[request] = _Sniff()
        sniff.read += len(data)
        if sniff.head is None:  # already sniffed: not an image
            return
        if sniff.decoder is not None:
            try:
                data = sniff.decoder.decompress(data, SNIFF_BYTES)
            except zlib.error:
                sniff.decoder = None  # raw deflate or damage: the check after decoding covers it
                data = b""
        head = (sniff.head + data)[:SNIFF_BYTES]
        decision = magic_decision(head)
        if not decision.allowed:
            self._abort(decision, request, sniff.read)
        # Keep sniffing until enough bytes for every signature were seen.
        sniff.head = None if len(head) >= SNIFF_BYTES else head
