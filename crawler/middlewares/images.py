"""The image and text gates at download time, over :mod:`crawler.compliance.images`
and :mod:`crawler.compliance.content`.

(Image URLs are first refused before scheduling, by
:class:`crawler.extensions.scheduling.SchedulingGate`.) :class:`ImageDownloadGate`
checks the URL again when the request reaches the downloader, then the
response headers (``headers_received``: an image type, an encoding it cannot
undo), then the body as it arrives (``bytes_received``): decoded, every chunk
until 64 KiB were seen is checked to be text, and anything else (an image
signature, binary) aborts the transfer at that chunk. Once downloaded, the
whole body is checked once more after Scrapy decoded it.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import TYPE_CHECKING, Any

from scrapy import Request, signals
from scrapy.exceptions import IgnoreRequest, StopDownload

from crawler.compliance.content import BodySniffer, encoding_decision, media_type, text_decision
from crawler.compliance.decision import Decision
from crawler.compliance.images import SNIFF_BYTES, SOURCE, headers_decision, magic_decision, url_decision
from crawler.runtime import ComplianceRuntime

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Headers, Response

_REFUSED = "compliance_image_refused"
#: Our own fetches of robots.txt and tdmrep.json: never items, parsed by their own
#: rules (RFC 9309 reads a robots.txt whatever its bytes); only image signatures apply.
_INTERNAL_FETCHES = ("compliance_robots_fetch", "compliance_tdmrep_fetch")


class ImageDownloadGate:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.runtime = ComplianceRuntime.of(crawler)
        self.allow_types = self.runtime.config.allow_content_types
        # State per response, never in request.meta (Scrapy copies meta into a
        # redirect's or a retry's new request).
        self._sniffs: weakref.WeakKeyDictionary[Request, tuple[BodySniffer, list[int]]] = weakref.WeakKeyDictionary()
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

    def _text_required(self, request: Request, content_type: str | None) -> bool:
        if any(request.meta.get(key) for key in _INTERNAL_FETCHES):
            return False
        return not (self.allow_types and media_type(content_type) in self.allow_types)

    def process_response(self, request: Request, response: Response) -> Response:
        """The whole body, once more, after Scrapy decoded it (this gate sits after
        HttpCompressionMiddleware): what came after the first 64 KiB, or a body
        that arrived without the signals (a cache, a cassette). A body in an
        encoding nothing decoded cannot be checked, so it is refused."""
        encoding = (response.headers.get(b"Content-Encoding") or b"").strip().lower()
        if encoding and encoding != b"identity" and response.body:
            self._refuse_response(
                Decision.refuse("content.unverifiable", rule=f"Content-Encoding {encoding.decode('latin-1')!r} was not decoded, "
                                "so the body cannot be checked", source=SOURCE),
                request, len(response.body),
            )  # fmt: skip
        content_type = (response.headers.get(b"Content-Type") or b"").decode("latin-1") or None
        entry = self._sniffs.get(request)
        if entry is not None and entry[0].text and entry[0].checked >= len(response.body):
            return response  # every byte of it was checked as it arrived
        if self._text_required(request, content_type):
            decision = text_decision(response.body, content_type)
        else:
            decision = magic_decision(response.body[:SNIFF_BYTES])
        if not decision.allowed:
            self._refuse_response(decision, request, len(response.body))
        return response

    def process_exception(self, request: Request, exception: Exception) -> None:
        # Our own abort: already logged and counted once; end it quietly
        # instead of letting Scrapy report a download error.
        if isinstance(exception, StopDownload) and request.meta.get(_REFUSED):
            raise IgnoreRequest(request.meta[_REFUSED])

    @staticmethod
    def _area(decision: Decision) -> str:
        return "images" if decision.reason.startswith("image.") else "content"

    def _refuse_response(self, decision: Decision, request: Request, size: int) -> None:
        decision = dataclasses.replace(decision.at("body", request.url), detail=f"whole body ({size} bytes) checked after decoding; dropped")
        self.crawler.stats.inc_value(f"compliance/{self._area(decision)}/dropped_after_decoding")
        self.runtime.refuse_request(decision, "body", request)

    def _abort(self, decision: Decision, request: Request, bytes_read: int) -> None:
        decision = dataclasses.replace(
            decision.at("headers" if bytes_read == 0 else "body", request.url),
            detail=f"transfer aborted after {bytes_read} body byte(s)",
        )
        request.meta[_REFUSED] = str(decision)
        self.runtime.refuse(decision)
        stats = self.crawler.stats
        area = self._area(decision)
        stats.inc_value(f"compliance/{area}/aborted")
        stats.inc_value(f"compliance/{area}/bytes_read", bytes_read)
        stats.max_value(f"compliance/{area}/max_bytes_read", bytes_read)
        raise StopDownload(fail=True)

    def _on_headers(self, headers: Headers, body_length: int, request: Request, spider: Any = None) -> None:
        # Every Content-Type line, and every type in a list: one image/* among them is enough.
        content_type = ",".join(v.decode("latin-1") for v in headers.getlist(b"Content-Type"))
        decision = headers_decision(
            content_type, ";".join(v.decode("latin-1") for v in headers.getlist(b"Content-Disposition"))
        )
        content_encoding = ",".join(v.decode("latin-1") for v in headers.getlist(b"Content-Encoding"))
        if decision.allowed and body_length != 0:
            decision = encoding_decision(content_encoding)
        if not decision.allowed:
            self._abort(decision, request, 0)
        # A new response (a redirect's target, a retry): sniff it from its first byte.
        sniffer = BodySniffer(content_type or None, content_encoding, text=self._text_required(request, content_type))
        self._sniffs[request] = (sniffer, [0])

    def _on_bytes(self, data: bytes, request: Request, spider: Any = None) -> None:
        entry = self._sniffs.get(request)
        if entry is None:
            entry = self._sniffs[request] = (BodySniffer(None, text=self._text_required(request, None)), [0])
        sniffer, read = entry
        read[0] += len(data)
        if sniffer.done:
            return
        decision = sniffer.feed(data)
        if decision is not None and not decision.allowed:
            self._abort(decision, request, read[0])
