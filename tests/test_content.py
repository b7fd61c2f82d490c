"""Only text is collected: the text check, the encodings it undoes, and a crawl that shows it is not too strict."""

from __future__ import annotations

import base64
import gzip
import json
import random
import zlib
from collections.abc import Iterator

import brotli
import pytest

from crawler.compliance.content import (
    CLUSTER_SPAN, HEAD_BYTES, BodySniffer, answer_decision, encoding_decision, text_decision, text_problem,
)  # fmt: skip
from crawler.compliance.images import BASE64_BINARY_MIN, IMAGE_EXTENSIONS, image_signature, scrub_fields, url_decision
from crawler.testing.runner import run_site_crawl
from crawler.testing.sites import PNG, robots
from crawler.testing.web import StaticSite, TestWeb, WebResponse

try:
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:
    from backports import zstd

HTML = "<!doctype html><html><head><title>t</title></head><body><p>{}</p></body></html>"
TGA = bytes([0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 32, 0, 24, 32]) + b"\xff" * 3072  # white: no signature, no NUL after the header


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (HTML.format("日本語の文章です。").encode("shift_jis"), "text/html; charset=Shift_JIS"),
        (('<meta charset="shift_jis">' + HTML.format("日本語の文章です。")).encode("shift_jis"), "text/html"),
        (HTML.format("Обычный текст на русском языке.").encode("cp1251"), "text/html; charset=windows-1251"),
        (HTML.format("Обычный текст на русском языке, без объявления.").encode("cp1251"), "text/html"),
        (HTML.format("Zażółć gęślą jaźń").encode("iso-8859-2"), "text/html; charset=ISO-8859-2"),
        (HTML.format("Ça coûte 5 €, naïve façade").encode("iso-8859-15"), "text/html; charset=iso-8859-15"),
        (HTML.format("UTF-16 little-endian with its BOM").encode("utf-16"), "text/html"),
        (b"\xfe\xff" + HTML.format("UTF-16 big-endian with its BOM").encode("utf-16-be"), "text/html"),
        (HTML.format("declared UTF-16LE, no BOM").encode("utf-16-le"), "text/html; charset=utf-16le"),
        (json.dumps({"items": [{"title": "Ein Eintrag", "text": "Grüße"}] * 50}).encode(), "application/feed+json"),
        ('<?xml version="1.0" encoding="windows-1251"?><rss><channel><item><title>Новости</title></item></channel></rss>'.encode("cp1251"),
         "application/rss+xml"),
        (b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><entry><title>t</title></entry></feed>', "application/atom+xml"),
        (b'<?xml version="1.0" encoding="UTF-8"?><html xmlns="http://www.w3.org/1999/xhtml"><body><p>x</p></body></html>', "application/xhtml+xml"),
        (b"plain text,\ttabs,\r\nCRLF and a form feed\x0c", "text/plain"),
        (HTML.format("A page\x0b with a\x00 few stray\x1b control\x08 bytes.").encode(), "text/html"),
        (HTML.format("utf-8 declared, windows-1252 sent: caf\xe9").encode("cp1252"), "text/html; charset=utf-8"),
        (b"", "text/html"),
    ],
)  # fmt: skip
def test_text_in_any_charset_is_text(body: bytes, ctype: str) -> None:
    """Legacy charsets, UTF-16 with a BOM (or declared), JSON and XML feeds, stray control bytes: all text."""
    assert text_decision(body, ctype).allowed, text_problem(body, ctype)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (TGA, "image.magic"),  # Targa's header fields, recognised
        (b"\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x20\x00\x18\x20" + b"\xff" * 3000, "content.not-text"),  # zero width: no TGA
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Length 3 >>\nstream\n\x00\x01\x02\x03\x04\nendstream", "content.not-text"),
        (bytes(range(3, 256)) * 8, "content.not-text"),
        (HTML.format("text, then binary") .encode() + b"\x00\x00\x00\x01\x00\x00", "content.not-text"),
        ("<html>UTF-16 without a BOM or a declaration</html>".encode("utf-16-le"), "content.not-text"),
        (b"SIMPLE  =                    T" + b" " * 50, "image.magic"),  # FITS: all text, but an image
        (b"/* XPM */\nstatic char *x[] = {\n", "image.magic"),
        (b"#define face_width 16\n#define face_height 16\n", "image.magic"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "image.magic"),
    ],
)  # fmt: skip
def test_anything_else_is_refused(body: bytes, reason: str) -> None:
    """Binary with or without a signature, text followed by binary, UTF-16 with nothing saying so; text-based image formats."""
    assert text_decision(body, "text/html").reason == reason


def test_stray_control_tolerance_is_small() -> None:
    """A few stray control bytes pass; more than the tolerance, or three close together, do not."""
    page = HTML.format("x" * 1000).encode()
    assert text_decision(page.replace(b"x" * 5, b"x\x00x\x00x", 1)).allowed  # two, close together
    assert not text_decision(page.replace(b"x" * 5, b"\x00\x00\x00xx", 1)).allowed  # three within CLUSTER_SPAN
    spread = page.replace(b"x" * (CLUSTER_SPAN + 1), b"\x01" + b"x" * CLUSTER_SPAN)
    assert not text_decision(spread).allowed  # one every 17 bytes: far more than the tolerance


@pytest.mark.parametrize(
    ("head", "kind"),
    [(TGA, "TGA"), (b"\x0a\x05\x01\x08\x00\x00", "PCX"), (b"\x01\xda\x01\x01\x00\x03", "SGI"), (b"BLP2\x01", "BLP"),
     (b"\x59\xa6\x6a\x95\x00", "Sun raster"), (b"\xd7\xcd\xc6\x9a\x00\x00\x00", "WMF"), (b"DanM\x00", "MSP"),
     (b"\x00\x00\x02\x00\x01\x00\x20\x20", "CUR"), (b"\xff\x4f\xff\x51\x00\x2f", "JPEG 2000"),
     (b"\x10\x00\x00\x00\x12\xaf\x01\x00\x40\x00\x40\x00\x08\x00\x03\x00", "FLI/FLC"), (b"gimp xcf v011\x00", "GIMP XCF"),
     (b"P7 332\n", "XV thumbnail"), (b"Pf\n1 1\n-1.0\n", "Netpbm")],
)  # fmt: skip
def test_signatures_of_formats_with_no_obvious_magic(head: bytes, kind: str) -> None:
    """Formats Pillow opens whose signatures the old table lacked: the refusal names them."""
    assert image_signature(head) == kind


def _raw_deflate(body: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-15)
    return packer.compress(body) + packer.flush()


ENCODERS = {
    "gzip": gzip.compress, "x-gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress,
    "zstd": zstd.compress, "gzip, br": lambda b: brotli.compress(gzip.compress(b)),
}  # fmt: skip


def _growing_bodies() -> Iterator[tuple[str, bytes, str]]:
    """Bodies whose verdict depends on what arrives after the first 4 KiB (where the gate keeps its charset)."""
    rng = random.Random(9309)
    words = "Ordinary words of an ordinary page, with a link or two. "
    page = HTML.format(words * 400).encode()
    yield "utf-8 text", page, "text/html; charset=utf-8"
    strays = bytearray(page)
    for at in range(300, len(strays), 700):  # one stray control byte every 700 bytes: within the tolerance
        strays[at] = 0x00
    yield "strays within tolerance", bytes(strays), "text/html"
    dense = bytearray(page)
    for at in range(5000, len(dense), 90):  # after the first 4 KiB: over the tolerance further on
        dense[at] = 0x01
    yield "strays over tolerance after 4 KiB", bytes(dense), "text/html"
    for boundary in (4094, 4095, 5839, 7299):  # three controls within 16 bytes, across a 1,460-byte chunk's edge
        cluster = bytearray(page)
        cluster[boundary:boundary + 5] = b"\x00x\x00x\x00"
        yield f"cluster at {boundary}", bytes(cluster), "text/html"
    yield "binary after 5 KiB", page[:5000] + rng.randbytes(8000), "text/html"
    yield "invalid UTF-8 after 4 KiB (windows-1252 from there)", page[:6000] + "café ".encode("cp1252") * 100 + page[6000:9000], "text/html; charset=utf-8"
    yield "undefined windows-1252 bytes later", page[:6000] + "café ".encode("cp1252") + b"\x81\x8d\x8f\x90\x9d" * 3 + page[:3000], "text/html"
    yield "Shift_JIS", HTML.format("日本語の文章です。" * 600).encode("shift_jis"), "text/html; charset=Shift_JIS"
    yield "UTF-16 with its BOM", HTML.format("UTF-16 words " * 700).encode("utf-16"), "text/html"
    utf16 = bytearray(HTML.format("UTF-16 words " * 700).encode("utf-16"))
    utf16[9001:9003] = b"\x00\xd8"  # a lone surrogate after 4 KiB: UTF-16 fails there
    yield "UTF-16 broken after 4 KiB", bytes(utf16), "text/html"


@pytest.mark.parametrize("chunk", [1, 7, 1460, 4096])
def test_the_gate_checks_each_chunk_once_with_the_answer_of_the_whole_head(chunk: int) -> None:
    """Fed in network chunks, the sniffer answers at every step exactly what the text check of the whole head answers.

    After the first 4 KiB it checks only each new chunk (a 64 KiB page in 1,460-byte chunks cost the square of the
    chunks before); a charset that fails later, a cluster across a chunk's edge and a tolerance crossed late are the
    cases where checking the new chunk alone could differ.
    """
    for name, body, ctype in _growing_bodies():
        body = body[:12_000] if chunk < 100 else body
        sniffer = BodySniffer(ctype)
        for start in range(0, len(body), chunk):
            got = sniffer.feed(body[start:start + chunk])
            head = body[:min(start + chunk, HEAD_BYTES)]
            want = text_decision(head, ctype, final=False)
            if not want.allowed:
                assert got is not None and (got.reason, got.rule) == (want.reason, want.rule), (name, start)
                break
            assert got is None or got.allowed, (name, start, got)
            if got is not None:
                break


@pytest.mark.parametrize("coding", [*ENCODERS, "raw-deflate"])
def test_every_encoding_is_checked_decoded_at_the_first_chunk(coding: str) -> None:
    """gzip, zlib and raw deflate, br, zstd (and a chain): the image inside is seen in the first chunk; text passes."""
    encode = _raw_deflate if coding == "raw-deflate" else ENCODERS[coding]
    header = "deflate" if coding == "raw-deflate" else coding
    image = PNG + bytes(range(256)) * 400
    sniffer = BodySniffer("text/html", header)
    assert sniffer.feed(encode(image)[:HEAD_BYTES]).reason == "image.magic"  # type: ignore[union-attr]
    binary = BodySniffer("text/html", header).feed(encode(TGA[:18] + bytes(range(256)) * 400)[:HEAD_BYTES])
    assert binary is not None and not binary.allowed
    text = HTML.format("words " * 20000).encode()
    decision = BodySniffer("text/html", header).feed(encode(text)[:HEAD_BYTES])
    assert decision is None or decision.allowed  # text: allowed, or wants more of it
    assert answer_decision("text/html", None, header, encode(text)).allowed
    assert answer_decision("text/html", None, header, encode(image)).reason == "image.magic"


def test_an_encoding_the_gate_cannot_undo_is_refused() -> None:
    """compress, an unknown name, or a body that does not decode as it says: refused, never downloaded to be checked."""
    assert encoding_decision("compress").reason == "content.unverifiable"
    assert encoding_decision("gzip, x-custom").reason == "content.unverifiable"
    assert encoding_decision("identity").allowed and encoding_decision("").allowed
    assert BodySniffer("text/html", "gzip").feed(b"\x1f\x8b\x08\x00 not really gzip").reason == "content.unverifiable"  # type: ignore[union-attr]


def test_base64_images_are_scrubbed_with_or_without_data_uri() -> None:
    """A base64 image is removed: with data: (any type), bare, wrapped, in collapsed white space; long binary too."""
    png = base64.b64encode(PNG + b"\x00" * 200).decode()
    tga = base64.b64encode(TGA[:60]).decode()
    wrapped = "\n".join(png[i : i + 76] for i in range(0, len(png), 76))
    for text in (f"see data:application/octet-stream;base64,{png} end", f"see {png} end", f"see\n{wrapped}\nend",
                 "see " + " ".join(wrapped.split()) + " end", f"see {tga} end"):  # fmt: skip
        cleaned, removed = scrub_fields({"text": text})
        assert removed == 1, text
        assert png[20:44] not in cleaned["text"].replace(" ", "") and tga[20:44] not in cleaned["text"], cleaned
        assert cleaned["text"].startswith("see")
    assert len(tga) >= BASE64_BINARY_MIN


@pytest.mark.parametrize(
    "text",
    ["sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 ok",
     "Donaudampfschifffahrtsgesellschaftskapitänswitwe", "base64 of text: SGVsbG8sIHRoaXMgaXMgb25seSB0ZXh0IGluIGJhc2U2NC4=",
     "short tokens like aGVsbG8= or internationalization stay"],
)  # fmt: skip
def test_base64_scrub_keeps_text(text: str) -> None:
    """Hashes in hex, long words and base64 that decodes to clean text stay."""
    assert scrub_fields({"text": text}) == ({"text": text}, 0)


@pytest.mark.parametrize("ext", ["tga", "pcx", "sgi", "fits", "fli", "blp", "eps", "mpo", "dds", "xbm", "xpm", "wmf", "msp", "ras", "jp2"])
def test_full_extension_list(ext: str) -> None:
    """Pillow's registered extensions and mimetypes' image/* are all refused as URLs."""
    assert ext in IMAGE_EXTENSIONS
    assert url_decision(f"http://a.test/x.{ext}").reason == "image.url"
    assert url_decision("http://a.test/report.pdf").allowed


# -- a crawl: text in every form is stored, the rest refused at the first chunk ------------------


def _text_site() -> StaticSite:
    def doc(body: bytes, ctype: str) -> WebResponse:
        return WebResponse(headers=[("Content-Type", ctype)], body=body)

    pages: dict[str, object] = {
        "/robots.txt": robots("User-agent: *\nAllow: /\n"),
        "/sjis": doc(('<meta charset="Shift_JIS">' + HTML.format("日本語の文章です。")).encode("shift_jis"), "text/html"),
        "/cp1251": doc(HTML.format("Обычный текст на русском языке.").encode("cp1251"), "text/html; charset=windows-1251"),
        "/latin2": doc(HTML.format("Zażółć gęślą jaźń").encode("iso-8859-2"), "text/html; charset=iso-8859-2"),
        "/utf16": doc(HTML.format("UTF-16 mit BOM, Grüße").encode("utf-16"), "text/html"),
        "/stray": doc(HTML.format("A page\x0b with a\x00 few stray\x1b control bytes.").encode(), "text/html; charset=utf-8"),
        "/feed.json": doc(json.dumps({"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "1"}]}).encode(), "application/feed+json"),
        "/feed.xml": doc('<?xml version="1.0" encoding="windows-1251"?><rss><channel><title>Новости</title></channel></rss>'.encode("cp1251"),
                         "application/rss+xml"),
        "/gzip-page": WebResponse(headers=[("Content-Type", "text/html"), ("Content-Encoding", "gzip")],
                                  body=gzip.compress(HTML.format("compressed words").encode())),
        "/raw-deflate-tga": WebResponse(headers=[("Content-Type", "text/html"), ("Content-Encoding", "deflate")],
                                        body=_raw_deflate(TGA[:18] + random.Random(1).randbytes(100_000)), hold_after=4096),
        "/pdf": WebResponse(headers=[("Content-Type", "application/pdf")],
                            body=b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(range(256)) * 200, hold_after=4096),
        # Text for longer than the gate reads, then binary: the check of the whole body drops it.
        "/text-then-binary": doc(HTML.format("words " * 15000).encode() + TGA, "text/html; charset=utf-8"),
        "/compress": WebResponse(headers=[("Content-Type", "text/html"), ("Content-Encoding", "compress")], body=b"\x1f\x9d" + b"\x90" * 9000, hold_after=1),
    }  # fmt: skip
    links = "".join(f'<a href="{p}">{p}</a> ' for p in pages if p != "/robots.txt")
    pages["/"] = doc(HTML.format(links).encode(), "text/html; charset=utf-8")
    return StaticSite(pages)  # type: ignore[arg-type]


@pytest.fixture
def text_web() -> Iterator[TestWeb]:
    with TestWeb({"text.test": _text_site()}) as server:
        yield server
        assert not server.unknown_hosts()


def test_text_in_every_form_is_collected_and_the_rest_cut_off(text_web: TestWeb, store_url: str, guard_env: dict, policy_dir) -> None:  # type: ignore[no-untyped-def]
    """Legacy charsets, UTF-16, stray control bytes, feeds and compressed pages get through whole; binary is cut at its first chunk."""
    run = run_site_crawl(text_web, ["http://text.test/"], store_url, env=guard_env,
                         settings={"COMPLIANCE_POLICY_DIR": str(policy_dir)}).check()  # fmt: skip
    items = {i["url"].removeprefix("http://text.test"): i["text"] for i in run.store.iter_items()}
    assert set(items) == {"/", "/sjis", "/cp1251", "/latin2", "/utf16", "/stray", "/gzip-page"}
    # The compressed pages went through the bounded decompression middleware, which calls Scrapy's as 2.19 wants.
    assert "DeprecationWarning" not in run.stderr, [line for line in run.stderr.splitlines() if "Warning" in line]
    assert "日本語の文章です" in items["/sjis"] and "Обычный текст" in items["/cp1251"] and "Zażółć" in items["/latin2"]
    assert "Grüße" in items["/utf16"] and "few stray" in items["/stray"]
    refusals = {r["url"].removeprefix("http://text.test"): (r["reason"], r["gate"]) for r in run.store.refusals()}
    assert refusals == {"/raw-deflate-tga": ("image.magic", "body"), "/pdf": ("content.not-text", "body"),
                        "/compress": ("content.unverifiable", "headers"), "/text-then-binary": ("content.not-text", "body")}  # fmt: skip
    details = {r["url"].removeprefix("http://text.test"): r["detail"] for r in run.store.refusals()}
    assert details["/text-then-binary"].startswith("whole body") and details["/pdf"].startswith("transfer aborted")
    sent = {e.path: e.bytes_sent for e in text_web.requests(host="text.test")}
    assert sent["/feed.json"] > 0 and sent["/feed.xml"] > 0  # fetched whole, not refused
    assert sent["/raw-deflate-tga"] == 4096 and sent["/pdf"] == 4096  # the client hung up at its first chunk
    assert sent["/compress"] == 1  # refused on its headers


def test_opted_in_content_type_is_collected_but_images_are_not(text_web: TestWeb, store_url: str, guard_env: dict, policy_dir) -> None:  # type: ignore[no-untyped-def]
    """COMPLIANCE_ALLOW_CONTENT_TYPES lets a PDF through; image signatures still apply to everything."""
    run = run_site_crawl(text_web, ["http://text.test/"], store_url, env=guard_env,
                         settings={"COMPLIANCE_POLICY_DIR": str(policy_dir), "COMPLIANCE_ALLOW_CONTENT_TYPES": "application/pdf"}).check()  # fmt: skip
    refusals = {r["url"].removeprefix("http://text.test") for r in run.store.refusals()}
    assert refusals == {"/raw-deflate-tga", "/compress", "/text-then-binary"}


def test_allow_content_types_setting_is_checked() -> None:
    """A malformed media type, or an image type, stops the crawl with one line naming the setting."""
    from crawler.config import ConfigError, parse_content_types

    assert parse_content_types("application/pdf, text/csv") == {"application/pdf", "text/csv"}
    assert parse_content_types(["application/pdf"]) == {"application/pdf"}
    with pytest.raises(ConfigError, match="COMPLIANCE_ALLOW_CONTENT_TYPES: 'pdf' is not a media type"):
        parse_content_types("pdf")
    with pytest.raises(ConfigError, match="image type"):
        parse_content_types("image/png")
