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

#: Until this many decoded bytes arrived, the text check reads the whole head
#: again at every chunk (a document declares its charset in its first 4 KiB);
#: after it, only each new chunk (see :class:`_GrowingText`).
FIX_BYTES = 4096

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


def _decodes(body: bytes, codec: str, final: bool) -> tuple[str, int] | None:
    """(the text, how many bytes it used), or None when ``body`` does not decode cleanly.

    A sequence cut at the end is fine unless ``final``: the text then stops
    before it. For a charset in which control bytes are counted on the
    bytes, the text of such a body is not needed and "" stands for it.
    """
    try:
        return body.decode(codec), len(body)
    except UnicodeDecodeError as exc:
        if final or not _cut(exc, len(body)):
            return None
        return ("" if _ascii_safe(codec) else body[: exc.start].decode(codec)), exc.start
    except LookupError:
        return None


def _cut(exc: UnicodeDecodeError, length: int) -> bool:
    """The error is only a multi-byte sequence cut by the end of the bytes read so far."""
    return exc.end >= length and exc.start >= length - 4 and any(
        word in exc.reason for word in ("end of data", "incomplete", "truncated")
    )


@functools.lru_cache(maxsize=256)
def _ascii_safe(codec: str) -> bool:
    return _ASCII_SAFE.match(codecs.lookup(codec).name) is not None


def _reading(body: bytes, content_type: str | None, final: bool) -> tuple[str, str, int, tuple[str, int] | None]:
    """How ``body`` is read: (codec, where it was named, BOM bytes skipped, what :func:`_decodes` made of the rest).

    The codec is the first of the declared charset and UTF-8 in which the
    body decodes cleanly, else :data:`_FALLBACK` (and None).
    """
    codec, skip, where = _declared_charset(body, content_type)
    candidates: list[tuple[str, str, int]] = []
    if codec:
        candidates.append((codec, where, skip))
    if codec != "utf-8":
        candidates.append(("utf-8", "sniffed", 0))
    for name, origin, offset in candidates:
        decoded = _decodes(body[offset:], name, final)
        if decoded is not None:
            return name, origin, offset, decoded
    return _FALLBACK, "the web's default", 0, None  # every byte but five decodes; those five count as controls


def text_problem(body: bytes, content_type: str | None = None, *, final: bool = True) -> str | None:
    """Why ``body`` is not text, or None when it is.

    ``final`` False: ``body`` is the start of a longer body (a multi-byte
    character cut at its end is not an error).
    """
    if not body:
        return None
    used, where_used, _, decoded = _reading(body, content_type, final)
    if used == _FALLBACK:
        return _control_problem(_CONTROL_CP1252_RE, body, f"{_FALLBACK} ({where_used})")
    if _ascii_safe(used):
        return _control_problem(_CONTROL_RE, body, f"{used} ({where_used})")
    assert decoded is not None
    return _control_problem(_CONTROL_STR_RE, decoded[0], f"{used} ({where_used})")


def _control_count(pattern: re.Pattern[Any], data: Any) -> int:
    if isinstance(data, bytes):
        count = len(data) - len(data.translate(None, _CONTROL_BYTES))
        if pattern is _CONTROL_CP1252_RE:
            count += len(data) - len(data.translate(None, _CP1252_UNDEFINED))
        return count
    return len(pattern.findall(data))


def _control_verdict(count: int, length: int, cluster_at: Callable[[], int | None], charset: str) -> str | None:
    """The tolerance rule: ``count`` controls in ``length`` bytes (``cluster_at`` finds a cluster when needed)."""
    if count == 0:
        return None
    allowed = control_tolerance(length)
    if count > allowed:
        return f"{count} control characters in {length} bytes read as {charset} (tolerance: {allowed})"
    at = cluster_at()
    if at is not None:
        return f"{CLUSTER_COUNT} control characters within {CLUSTER_SPAN} bytes at offset {at}, read as {charset}"
    return None


def _control_problem(pattern: re.Pattern[Any], data: Any, charset: str) -> str | None:
    """The control-character check on bytes (ASCII-safe charsets) or on decoded text."""
    return _control_verdict(
        _control_count(pattern, data), len(data), lambda: _cluster(m.start() for m in pattern.finditer(data)), charset
    )


class _GrowingText:
    """:func:`text_problem` on a body that arrives in pieces, each byte checked once.

    Checking the whole head again at every network chunk costs the square
    of the chunks: a 64 KiB page in 1,460-byte chunks (what a real network
    delivers) cost about 1 ms in the gate. Instead, once :data:`FIX_BYTES`
    arrived (the part in which a document declares its charset), the
    reading :func:`text_problem` chose is kept and each new piece is checked
    alone: decoded in that charset after the bytes of a character the last
    piece cut, its control characters counted into a running total and
    their positions kept for the cluster rule. The answers are the same as
    :func:`text_problem` on the whole head at every step: a piece the kept
    charset cannot decode makes :meth:`feed` answer False, and the caller
    checks the whole head again, which chooses the charset anew.
    """

    def __init__(self, head: bytes, content_type: str | None) -> None:
        codec, where, skip, decoded = _reading(head, content_type, False)
        self.charset = f"{codec} ({where})"
        self.on_bytes = codec == _FALLBACK or _ascii_safe(codec)
        self.pattern = _CONTROL_CP1252_RE if codec == _FALLBACK else _CONTROL_RE if self.on_bytes else _CONTROL_STR_RE
        # Pieces after the first are decoded without a byte order mark: UTF-16 and UTF-32 in the order the first chose.
        self.codec = None if decoded is None else _continuation(codec)
        self.carry = b"" if decoded is None else head[skip + decoded[1]:]  # a character cut by the end of the head
        self.count = 0
        self.length = 0
        self.recent: list[int] = []  # the last control positions (at most CLUSTER_COUNT - 1 of them)
        self._account(head if self.on_bytes else decoded[0])  # type: ignore[index]

    def _account(self, data: Any) -> None:
        count = _control_count(self.pattern, data)
        if count:
            self.recent += [self.length + m.start() for m in self.pattern.finditer(data)]
        self.count += count
        self.length += len(data)

    def problem(self) -> str | None:
        recent = self.recent
        self.recent = recent[-(CLUSTER_COUNT - 1):]
        return _control_verdict(self.count, self.length, lambda: _cluster(recent), self.charset)

    def feed(self, piece: bytes) -> bool:
        """Take the next piece; False when the kept charset cannot decode it (the caller then checks the whole head)."""
        if self.codec is None:  # windows-1252, the fallback: every byte is read; five count as controls
            self._account(piece)
            return True
        data, self.carry = self.carry + piece, b""
        decoded = _decodes(data, self.codec, False)
        if decoded is None:
            return False
        text, used = decoded
        self.carry = data[used:]
        self._account(piece if self.on_bytes else text)
        return True


@functools.lru_cache(maxsize=64)
def _continuation(codec: str) -> str:
    """The codec that decodes the middle of a text in ``codec`` (no byte order mark to look for there)."""
    name = codecs.lookup(codec).name
    if name in ("utf-16", "utf-32"):
        return f"{name}-{'le' if sys.byteorder == 'little' else 'be'}"
    return name


def text_decision(body: bytes, content_type: str | None = None, *, final: bool = True) -> Decision:
    """ALLOW for text; else ``image.magic`` (an image signature) or ``content.not-text``."""
    decision = magic_decision(body[:SNIFF_BYTES])
    if not decision.allowed:
        return decision
    problem = text_problem(body, content_type, final=final)
    return ALLOW if problem is None else _not_text(problem)


def _not_text(problem: str) -> Decision:
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
        self.head = bytearray()
        self.done = False
        self.wire = 0  # bytes fed, as they came over the network
        self.checked = 0  # decoded bytes found to be text (from the first)
        self._stages = [_DECODERS[c]() for c in reversed(content_codings(content_encoding)) if c in _DECODERS]
        self._growing: _GrowingText | None = None
        self._whole = False  # the kept charset failed on a later chunk: check the whole head at each chunk

    def _decode(self, data: bytes) -> bytes:
        room = HEAD_BYTES - len(self.head)
        for stage in self._stages:
            data = stage(data, room)
        return data[:room]

    def _text_problem(self, piece: bytes) -> str | None:
        """:func:`text_problem` of the head, ``piece`` its newest part (see :class:`_GrowingText`)."""
        if self._growing is not None:
            if self._growing.feed(piece):
                return self._growing.problem()
            self._growing, self._whole = None, True
        elif len(self.head) >= FIX_BYTES and not self._whole:
            self._growing = _GrowingText(bytes(self.head), self.content_type)
            return self._growing.problem()
        return text_problem(bytes(self.head), self.content_type, final=False)

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
        before = len(self.head)
        self.head += data
        full = len(self.head) >= HEAD_BYTES
        decision = ALLOW
        if before < SNIFF_BYTES:  # once the first SNIFF_BYTES are in, the signatures' answer cannot change
            decision = magic_decision(bytes(self.head[:SNIFF_BYTES]))
        if decision.allowed and self.text:
            problem = self._text_problem(data)
            decision = ALLOW if problem is None else _not_text(problem)
        if not decision.allowed:
            self.done = True
            return decision
        self.checked = len(self.head)
        if full or (not self.text and len(self.head) >= SNIFF_BYTES):
            self.done = True
            self.head = bytearray()
            self._growing = None
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
