"""Only text is collected: a body is an item only if it is verifiably text.

A blocklist of image signatures can never be complete (a Targa, a PCX or a
FITS file has no signature worth the name), so the gate allows what it can
verify and refuses the rest. A body is text when

1. it decodes cleanly in the charset its byte order mark, its Content-Type
   or its own declaration (``<meta charset>``, ``<?xml encoding?>``) names,
   or else in UTF-8, or else in windows-1252 (the web's default, where every
   byte but five is a character); and
2. it holds no more control characters than the tolerance allows (C0
   controls other than tab, line feed, form feed and carriage return; DEL;
   and, read as windows-1252, the five bytes it leaves undefined): at most
   :data:`CONTROL_BASE` plus one per :data:`CONTROL_PER` bytes, and never
   :data:`CLUSTER_COUNT` within :data:`CLUSTER_SPAN` consecutive bytes. A
   page with a few stray control bytes passes; every binary format puts
   integers with zero bytes in its header, which cluster.

Anything else is refused with ``content.not-text`` (``image.magic`` when an
image signature names the format). The body is checked decoded: gzip, zlib
or raw deflate, brotli and zstd (what Scrapy decodes) are undone on the
first network chunk; an encoding the gate cannot undo is refused
(``content.unverifiable``), never downloaded.

Pure: no Scrapy imports. The download gate feeds network chunks to a
:class:`BodySniffer`; the cassette recorder calls :func:`answer_decision`.
"""

from __future__ import annotations

import codecs
import functools
import re
import sys
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import brotli  # Scrapy's own dependency: it decodes br with it
from w3lib.encoding import html_body_declared_encoding, http_content_type_encoding, read_bom, resolve_encoding

from crawler.compliance.decision import ALLOW, Decision
from crawler.compliance.images import SNIFF_BYTES, headers_decision, magic_decision

if sys.version_info >= (3, 14):
    from compression import zstd  # pragma: no cover
else:
    from backports import zstd  # Scrapy's own dependency: it decodes zstd with it

SOURCE = "crawler/compliance/content.py (only text is collected; no images: GDPR Art. 9(1))"

#: The most decoded body bytes the gate reads before it has decided. The
#: first network chunk is at most this size; the text check runs on every
#: chunk until this much was seen, the image signatures on the first 1 KiB.
HEAD_BYTES = 64 * 1024

#: The control-character tolerance (see the module text).
CONTROL_BASE = 4
CONTROL_PER = 512
CLUSTER_COUNT = 3
CLUSTER_SPAN = 16

_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F])
_CP1252_UNDEFINED = bytes([0x81, 0x8D, 0x8F, 0x90, 0x9D])
_CONTROL_RE = re.compile(b"[" + re.escape(_CONTROL_BYTES) + b"]")
_CONTROL_CP1252_RE = re.compile(b"[" + re.escape(_CONTROL_BYTES + _CP1252_UNDEFINED) + b"]")
_CONTROL_STR_RE = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")

#: Charsets in which a byte below 0x20 or 0x7F is always that control
#: character (never part of a multi-byte sequence): control bytes can be
#: counted on the raw bytes, without decoding.
_ASCII_SAFE = re.compile(r"^(?:utf-8|cp\d+|iso8859-\d+|latin-?1|ascii|koi8.*|mac.*|euc.*|shift_jis|cp932|sjis|gbk|gb2312|gb18030|big5.*|tis-620|windows-\d+)$")
_FALLBACK = "cp1252"


def control_tolerance(length: int) -> int:
    """How many control characters a text of ``length`` bytes may hold."""
    return CONTROL_BASE + length // CONTROL_PER


TOLERANCE_TEXT = (
    f"at most {CONTROL_BASE} control characters plus one per {CONTROL_PER} bytes, "
    f"never {CLUSTER_COUNT} within {CLUSTER_SPAN} bytes"
)


def _cluster(positions: Iterable[int]) -> int | None:
    """The offset of the first CLUSTER_COUNT control characters within CLUSTER_SPAN, or None."""
    window: list[int] = []
    for pos in positions:
        window.append(pos)
        if len(window) >= CLUSTER_COUNT:
            if pos - window[-CLUSTER_COUNT] < CLUSTER_SPAN:
                return window[-CLUSTER_COUNT]
            del window[0]
    return None


def _declared_charset(body: bytes, content_type: str | None) -> tuple[str | None, int, str]:
    """(Python codec, BOM length, where it was named) or (None, 0, '')."""
    bom_codec, bom = read_bom(body)
    if bom_codec:
        return bom_codec, len(bom or b""), "byte order mark"
    codec = http_content_type_encoding(content_type) if content_type else None
    if codec:
        return codec, 0, "Content-Type"
    label = html_body_declared_encoding(body[:4096])
    if label:
        codec = resolve_encoding(label)
        # A document readable as ASCII cannot be UTF-16 or UTF-32 (the HTML
        # standard reads such a declaration as UTF-8).
        if codec and not codec.startswith(("utf-16", "utf-32", "utf_16", "utf_32")):
            return codec, 0, "the document's own declaration"
    return None, 0, ""


def _decodes(body: bytes, codec: str, final: bool) -> str | None:
    """The text, or None when ``body`` does not decode cleanly (a sequence cut at the end is fine unless final).

    For a charset in which control bytes are counted on the bytes, the text
    of a body cut mid-character is not needed and "" stands for it.
    """
    try:
        return body.decode(codec)
    except UnicodeDecodeError as exc:
        cut = exc.end >= len(body) and ("end of data" in exc.reason or "incomplete" in exc.reason or "truncated" in exc.reason)
        if final or not cut or exc.start < len(body) - 4:
            return None
        return "" if _ascii_safe(codec) else _decodes(body[: exc.start], codec, True)
    except LookupError:
        return None


@functools.lru_cache(maxsize=256)
def _ascii_safe(codec: str) -> bool:
    return _ASCII_SAFE.match(codecs.lookup(codec).name) is not None


def text_problem(body: bytes, content_type: str | None = None, *, final: bool = True) -> str | None:
    """Why ``body`` is not text, or None when it is.

    ``final`` False: ``body`` is the start of a longer body (a multi-byte
    character cut at its end is not an error).
    """
    if not body:
        return None
    codec, skip, where = _declared_charset(body, content_type)
    candidates: list[tuple[str, str, int]] = []
    if codec:
        candidates.append((codec, where, skip))
    if codec != "utf-8":
        candidates.append(("utf-8", "sniffed", 0))
    used, where_used = _FALLBACK, "the web's default"  # every byte but five decodes; those five count as controls
    text: str | None = None
    for name, origin, offset in candidates:
        text = _decodes(body[offset:], name, final)
        if text is not None:
            used, where_used = name, origin
            break
    if used == _FALLBACK:
        return _control_problem(_CONTROL_CP1252_RE, body, f"{_FALLBACK} ({where_used})")
    if _ascii_safe(used):
        return _control_problem(_CONTROL_RE, body, f"{used} ({where_used})")
    assert text is not None
    return _control_problem(_CONTROL_STR_RE, text, f"{used} ({where_used})")


def _control_problem(pattern: re.Pattern[Any], data: Any, charset: str) -> str | None:
    """The control-character check on bytes (ASCII-safe charsets) or on decoded text."""
    if isinstance(data, bytes):
        count = len(data) - len(data.translate(None, _CONTROL_BYTES))
        if pattern is _CONTROL_CP1252_RE:
            count += len(data) - len(data.translate(None, _CP1252_UNDEFINED))
    else:
        count = len(pattern.findall(data))
    if count == 0:
        return None
    allowed = control_tolerance(len(data))
    if count > allowed:
        return f"{count} control characters in {len(data)} bytes read as {charset} (tolerance: {allowed})"
    at = _cluster(m.start() for m in pattern.finditer(data))
    if at is not None:
        return f"{CLUSTER_COUNT} control characters within {CLUSTER_SPAN} bytes at offset {at}, read as {charset}"
    return None


def text_decision(body: bytes, content_type: str | None = None, *, final: bool = True) -> Decision:
    """ALLOW for text; else ``image.magic`` (an image signature) or ``content.not-text``."""
    decision = magic_decision(body[:SNIFF_BYTES])
    if not decision.allowed:
        return decision
    problem = text_problem(body, content_type, final=final)
    if problem is None:
        return ALLOW
    return Decision.refuse("content.not-text", rule=f"body is not text: {problem}", source=SOURCE)


# -- content encodings ------------------------------------------------------


class _Inflate:
    """zlib or raw deflate (``Content-Encoding: deflate`` is sent both ways), or gzip; told apart at the first bytes."""

    def __init__(self, gzip: bool) -> None:
        self._gzip = gzip
        self._obj: Any = None
        self._start = b""

    def __call__(self, data: bytes, limit: int) -> bytes:
        if self._obj is None:
            self._start += data
            if len(self._start) < 2:
                return b""
            data, self._start = self._start, b""
            if self._gzip:
                self._obj = zlib.decompressobj(wbits=47)
            else:
                # RFC 1950: CM 8 and a header that is a multiple of 31 mean zlib; else raw deflate.
                zlib_header = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
                self._obj = zlib.decompressobj(wbits=15 if zlib_header else -15)
        return self._obj.decompress(self._obj.unconsumed_tail + data, limit)


class _Brotli:
    def __init__(self) -> None:
        self._obj = brotli.Decompressor()
        self._pending = b""

    def __call__(self, data: bytes, limit: int) -> bytes:
        self._pending += data
        out = b""
        if self._obj.can_accept_more_data():
            data, self._pending = self._pending, b""
            out = self._obj.process(data, output_buffer_limit=limit)
        elif not self._obj.is_finished():
            out = self._obj.process(b"", output_buffer_limit=limit)
        return out


class _Zstd:
    def __init__(self) -> None:
        self._obj = zstd.ZstdDecompressor()
        self._pending = b""

    def __call__(self, data: bytes, limit: int) -> bytes:
        if self._obj.eof:
            return b""
        if self._obj.needs_input:
            data, self._pending = self._pending + data, b""
            return self._obj.decompress(data, limit)
        self._pending += data
        return self._obj.decompress(b"", limit)


_DECODERS: dict[str, Callable[[], Callable[[bytes, int], bytes]]] = {
    "gzip": lambda: _Inflate(gzip=True), "x-gzip": lambda: _Inflate(gzip=True),
    "deflate": lambda: _Inflate(gzip=False), "br": _Brotli, "zstd": _Zstd,
}  # fmt: skip
#: What the gate can undo (exactly what Scrapy's HttpCompressionMiddleware decodes).
DECODABLE_ENCODINGS = frozenset(_DECODERS)
_DECODE_ERRORS = (zlib.error, brotli.error, zstd.ZstdError, EOFError, ValueError)


def content_codings(content_encoding: str) -> list[str]:
    """The codings applied, in the order they were applied (``identity`` left out)."""
    return [c for c in (p.strip().lower() for p in content_encoding.split(",")) if c and c != "identity"]


def encoding_decision(content_encoding: str) -> Decision:
    """Refuse a Content-Encoding the gate cannot undo: the body could not be checked."""
    unknown = [c for c in content_codings(content_encoding) if c not in _DECODERS]
    if unknown:
        return Decision.refuse(
            "content.unverifiable",
            rule=f"Content-Encoding {', '.join(unknown)!s} cannot be decoded, so the body cannot be checked",
            source=SOURCE,
        )
    return ALLOW


class BodySniffer:
    """The first bytes of one body, decoded, checked as they arrive.

    :meth:`feed` takes each network chunk and answers a refusal, ALLOW once
    :data:`HEAD_BYTES` decoded bytes were found to be text, or None while it
    has seen text but not enough to be done. ``text`` False: only the image
    signatures apply (an opted-in content type, or a robots.txt fetch).
    """

    def __init__(self, content_type: str | None, content_encoding: str = "", *, text: bool = True) -> None:
        self.content_type = content_type
        self.text = text
        self.head = b""
        self.done = False
        self.wire = 0  # bytes fed, as they came over the network
        self.checked = 0  # decoded bytes found to be text (from the first)
        self._stages = [_DECODERS[c]() for c in reversed(content_codings(content_encoding)) if c in _DECODERS]

    def _decode(self, data: bytes) -> bytes:
        room = HEAD_BYTES - len(self.head)
        for stage in self._stages:
            data = stage(data, room)
        return data[:room]

    def feed(self, data: bytes) -> Decision | None:
        if self.done:
            return ALLOW
        self.wire += len(data)
        try:
            data = self._decode(data)
        except _DECODE_ERRORS as exc:
            self.done = True
            return Decision.refuse(
                "content.unverifiable", rule=f"the body does not decode as its Content-Encoding says ({exc})", source=SOURCE
            )
        if not data:
            if self.wire >= HEAD_BYTES:
                # zstd decodes a block (up to 128 KiB) only once it has all of it:
                # no wait beyond the first 64 KiB for what might be an image.
                self.done = True
                return Decision.refuse(
                    "content.unverifiable", rule=f"{self.wire} bytes read and nothing decoded yet, so the body cannot be checked",
                    source=SOURCE,
                )
            return None
        self.head += data
        full = len(self.head) >= HEAD_BYTES
        if self.text:
            decision = text_decision(self.head, self.content_type, final=False)
        else:
            decision = magic_decision(self.head[:SNIFF_BYTES])
        if not decision.allowed:
            self.done = True
            return decision
        self.checked = len(self.head)
        if full or (not self.text and len(self.head) >= SNIFF_BYTES):
            self.done = True
            self.head = b""
            return ALLOW
        return None


def media_type(content_type: str | None) -> str:
    """``text/html`` of ``text/html; charset=utf-8`` (the first of several header lines)."""
    return (content_type or "").split(",", 1)[0].split(";", 1)[0].strip().lower()


def answer_decision(content_type: str | None, content_disposition: str | None, content_encoding: str, body: bytes) -> Decision:
    """A whole answer at once: its headers, then its body decoded (the cassette recorder's check)."""
    for decision in (headers_decision(content_type, content_disposition), encoding_decision(content_encoding)):
        if not decision.allowed:
            return decision
    sniffer = BodySniffer(content_type, content_encoding)
    decision = sniffer.feed(body)
    if decision is not None and not decision.allowed:
        return decision
    if sniffer.head:  # shorter than HEAD_BYTES: checked whole, as a complete body
        return text_decision(sniffer.head, content_type, final=True)
    return ALLOW
