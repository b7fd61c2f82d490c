"""Images are never requested, never downloaded, never stored.

Facial images processed to identify people are biometric data (GDPR Art.
4(14), 9(1)); Clearview AI's product was built from scraped photos. This
crawler collects no image in any form: not the files, not their bytes, not
their URLs, not inline ``data:`` copies. Four gates, each a Decision:

* ``image.url``          a URL whose path ends in an image extension;
* ``image.content-type`` a response declared ``image/*`` or named as an image
                         file by Content-Disposition (refused on headers);
* ``image.magic``        a body whose first bytes are an image signature,
                         whatever was declared (the signatures name the
                         format; what no signature names is refused all
                         the same by :mod:`crawler.compliance.content`:
                         only text is collected);
* ``image.item``         image data or image URLs scrubbed from an item.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from crawler.compliance.decision import ALLOW, Decision

SOURCE = "crawler/compliance/images.py (GDPR Art. 9(1): no images are collected)"

def _read_extensions(path: Path) -> frozenset[str]:
    words = (line.split("#", 1)[0].split() for line in path.read_text(encoding="utf-8").splitlines())
    return frozenset(word.lower() for line in words for word in line)


#: Every image file extension: mimetypes' image/* and Pillow's registered
#: extensions, copied into the project as data (image_extensions.txt says how).
IMAGE_EXTENSIONS = _read_extensions(Path(__file__).with_name("image_extensions.txt"))

#: Item fields that only ever hold images or downloaded files (Scrapy's media
#: pipelines' conventions and common variants). Removed wholesale.
IMAGE_FIELDS = frozenset(
    {"images", "image_urls", "image", "image_url", "files", "file_urls", "photos", "photo", "photo_urls",
     "thumbnail", "thumbnails", "thumbnail_url", "avatar", "avatar_url", "og_image", "screenshot"}
)  # fmt: skip

#: How many leading bytes the signature check needs (an ftyp box brand, an SVG root).
SNIFF_BYTES = 1024


_SIZE_SUFFIX_RE = re.compile(r"(?:[:!@][\w.-]*)$")  # face.jpg:large, face.jpg!thumb, face.jpg@2x


def _extension(path: str) -> str:
    segment = unquote(path).rstrip("/").rsplit("/", 1)[-1]
    segment = segment.split(";", 1)[0].rstrip(".")  # matrix parameters (/a.jpg;v=2), a trailing dot
    if "." not in segment:
        return ""
    ext = segment.rsplit(".", 1)[-1].lower()
    if ext not in IMAGE_EXTENSIONS:
        # CDNs put a size after the name: /face.jpg:large, /face.jpg!thumb, /face.jpg@2x
        trimmed = _SIZE_SUFFIX_RE.sub("", segment)
        if "." in trimmed:
            ext = trimmed.rsplit(".", 1)[-1].lower()
    return ext


def url_decision(url: str) -> Decision:
    """Refuse a URL whose path names an image file (any case, any query)."""
    ext = _extension(urlsplit(url).path)
    if ext in IMAGE_EXTENSIONS:
        return Decision.refuse("image.url", rule=f"URL path ends in .{ext}", source=SOURCE)
    return ALLOW


_FILENAME_RE = re.compile(r"""filename\*?\s*=\s*(?:[\w-]+'[\w-]*')?"?([^";]+)"?""", re.IGNORECASE)


def headers_decision(content_type: str | None, content_disposition: str | None) -> Decision:
    """Refuse on the response headers, before any body byte is read."""
    # Several header lines arrive joined with ","; any image type among them counts.
    for part in (content_type or "").split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media.startswith("image/"):
            return Decision.refuse("image.content-type", rule=f"Content-Type: {media}", source=SOURCE)
    for name in _FILENAME_RE.findall(content_disposition or ""):
        ext = _extension(name.strip())
        if ext in IMAGE_EXTENSIONS:
            return Decision.refuse(
                "image.content-type", rule=f"Content-Disposition names an image file ({name.strip()!r})", source=SOURCE
            )
    return ALLOW


_FTYP_IMAGE_BRANDS = {b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"jxl "}
_BMP_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}


def image_signature(head: bytes) -> str | None:
    """The image format whose signature ``head`` starts with, or None."""
    if head.startswith(_PREFIXES):  # one C-level test for every fixed prefix
        for signature, kind in _PREFIX_TABLE:
            if head.startswith(signature):
                return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00") and len(head) >= 6 and head[4:6] != b"\x00\x00":
        return "ICO" if head[2] == 1 else "CUR"
    # "BM" alone is too weak (a text could start with it): check the header size field.
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    if head[4:8] == b"ftyp":
        if head[8:12] in _FTYP_IMAGE_BRANDS or any(
            head[i : i + 4] in _FTYP_IMAGE_BRANDS for i in range(16, min(len(head), int.from_bytes(head[:4], "big")), 4)
        ):
            return "AVIF/HEIF"
        if head[8:12] == b"crx ":
            return "Canon CR3"
    first = head[:SNIFF_BYTES]
    if (b"svg" in first.lower() or first.startswith((b"\xff\xfe", b"\xfe\xff"))) and _looks_like_svg(first):
        return "SVG"
    if head[:1] == b"P" and _NETPBM_RE.match(head):
        return "Netpbm"
    if head[128:132] == b"DICM":
        return "DICOM"
    return _misc_signature(head)


_MORE_SIGNATURES = (
    (b"\x8aMNG\r\n\x1a\n", "MNG"), (b"\x8bJNG\r\n\x1a\n", "JNG"), (b"icns", "ICNS"), (b"II\xbc", "JPEG XR"),
    (b"\x76\x2f\x31\x01", "OpenEXR"), (b"DDS ", "DDS"), (b"BPG\xfb", "BPG"), (b"#?RADIANCE", "Radiance HDR"),
    (b"#?RGBE", "Radiance HDR"), (b"IIRO", "Olympus ORF"), (b"IIU\x00", "Panasonic RW2"), (b"FUJIFILMCCD-RAW", "Fuji RAF"),
    # Every format Pillow opens (its plugins' _accept()), where the signature is more than a byte or two.
    (b"\xff\x4f\xff\x51", "JPEG 2000"), (b"BLP1", "BLP"), (b"BLP2", "BLP"), (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "PostScript/EPS"), (b"SIMPLE  =", "FITS"), (b"\xb1\x68\xde\x3a", "DCX"), (b"FTEX", "FTEX"),
    (b"\x89HDF\r\n\x1a\n", "HDF5"), (b"\x00\x00\x00\x00\x00\x00\x00\x04", "McIdas"), (b"\x00\x00\x01\xb3", "MPEG"),
    (b"DanM", "MSP"), (b"LinS", "MSP"), (b"\x80\xe8\x00\x00", "Pixar"), (b"\x01\xda\x00", "SGI"), (b"\x01\xda\x01", "SGI"),
    (b"\x59\xa6\x6a\x95", "Sun raster"), (b"\xd7\xcd\xc6\x9a\x00\x00", "WMF"), (b"/* XPM */", "XPM"), (b"P7 332", "XV thumbnail"),
    (b"P7\n", "PAM"), (b"BUFR", "BUFR"), (b"GRIB", "GRIB"), (b"Image type:", "IM"),
    # More that libmagic names as images.
    (b"gimp xcf ", "GIMP XCF"), (b"\xabKTX 11\xbb", "KTX"), (b"\xabKTX 20\xbb", "KTX2"), (b"FLIF", "FLIF"),
    (b"farbfeld", "farbfeld"), (b"SDPX", "DPX"), (b"XPDS", "DPX"), (b"\x80\x2a\x5f\xd7", "Cineon"), (b"AT&TFORM", "DjVu"),
    (b"\x97JB2\r\n\x1a\n", "JBIG2"), (b"Xcur", "Xcursor"), (b"PDN3", "Paint.NET"),
)  # fmt: skip
_PREFIX_TABLE = (
    (b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"II+\x00", "TIFF"), (b"MM\x00+", "TIFF"),
    (b"\xff\x0a", "JPEG XL"), (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"), (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"8BPS", "PSD"), (b"qoif", "QOI"), *_MORE_SIGNATURES,
)  # fmt: skip
_PREFIXES = tuple(signature for signature, _ in _PREFIX_TABLE)
_XBM_RE = re.compile(rb"^(?:/\*.*?\*/\s*)?#define\s+\S*_width\s+\d+", re.DOTALL)
_TGA_TYPES = {1, 2, 3, 9, 10, 11, 32, 33}
_TGA_DEPTHS = {1, 8, 15, 16, 24, 32}


def _looks_like_tga(head: bytes) -> bool:
    """Targa has no signature: its 18-byte header's fields, none of them text (Pillow checks the same)."""
    if len(head) < 18 or head[1] not in (0, 1) or head[2] not in _TGA_TYPES or head[16] not in _TGA_DEPTHS:
        return False
    if head[1] == 0 and head[3:8] != b"\x00\x00\x00\x00\x00":
        return False
    return head[12:14] != b"\x00\x00" and head[14:16] != b"\x00\x00"  # width and height


def _misc_signature(head: bytes) -> str | None:
    if head[4:6] in (b"\x11\xaf", b"\x12\xaf") and head[14:16] in (b"\x00\x00", b"\x03\x00"):
        return "FLI/FLC"
    if len(head) >= 4 and head[0] == 10 and head[1] in (0, 2, 3, 5) and head[2] == 1 and head[3] in (1, 2, 4, 8):
        return "PCX"
    if head[20:24] == b"GIMP" and head[4:8] in (b"\x00\x00\x00\x01", b"\x00\x00\x00\x02"):
        return "GIMP brush"
    if head[:4] == b"\x01\x00\x00\x00" and head[40:44] == b" EMF":
        return "EMF"
    if _XBM_RE.match(head):
        return "XBM"
    if _looks_like_tga(head):
        return "TGA"
    return None


_NETPBM_RE = re.compile(rb"^P[1-6Ff]\s+(?:#[^\n]*\n\s*)*\d+\s+\d+\s")
_SVG_ROOT_RE = re.compile(rb"<svg[\s>/:]", re.IGNORECASE)
_PROLOGUE_RE = re.compile(
    rb"(?:\s|<\?[^>]*>|<!--(?:[^-]|-(?!->))*-->|<!doctype[^\[>]*(?:\[[^\]]*\])?\s*>)*", re.IGNORECASE
)


def _looks_like_svg(head: bytes) -> bool:
    """An SVG root in the first bytes of a document that is not HTML: a DOCTYPE with an
    internal subset (Illustrator), processing instructions, or UTF-16."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            head = head.decode("utf-16").encode("utf-8", "replace")
        except UnicodeDecodeError:
            return False
    found = _SVG_ROOT_RE.search(head)
    if found is None:
        return False
    # Only an XML prologue may come before the root: declarations, processing
    # instructions, comments, a DOCTYPE (with its internal subset). No HTML.
    return _PROLOGUE_RE.fullmatch(head[: found.start()].removeprefix(b"\xef\xbb\xbf")) is not None


def magic_decision(head: bytes) -> Decision:
    # Leading white space or a BOM in front of an image is still the image
    # (a browser or a decoder that skips it shows a face all the same).
    kind = image_signature(head)
    if kind is None and head[:1] in b" \t\r\n\xef":
        kind = image_signature(head.lstrip(b" \t\r\n").removeprefix(b"\xef\xbb\xbf").lstrip())
    if kind:
        return Decision.refuse("image.magic", rule=f"body starts with the {kind} signature", source=SOURCE)
    return ALLOW


_DATA_URI_RE = re.compile(r"data:image/[a-z0-9.+-]+(?:;[a-z0-9=.+-]+)*,[A-Za-z0-9+/=%._~:-]*", re.IGNORECASE)
_URL_RE = re.compile(r"""(?:https?:)?//[^\s"'<>()]+|(?<![\w/])/[^\s"'<>()]+""", re.IGNORECASE)


_SUFFIX_RE = re.compile(r"(?:\.|%2e)([a-z0-9]{2,5})(?![a-z0-9])")


def _may_hold_image(text: str) -> tuple[bool, bool]:
    """(may hold an image URL, may hold a data:image URI), answered cheaply.

    The URL pattern must be tried at every character (~0.1 us each, 10 ms
    for a 100 KB page), while most texts hold no image extension at all.
    A literal-led search for dotted suffixes on the lower-cased text rules
    that out far faster; only texts that might hold one are fully scanned.
    """
    lowered = text.lower()
    has_data = "data:image/" in lowered
    if "%" in lowered:  # "face.p%6Eg" is face.png once decoded, as _extension() sees it
        lowered = unquote(lowered).lower()
    has_ext = not IMAGE_EXTENSIONS.isdisjoint(_SUFFIX_RE.findall(lowered))
    return has_ext, has_data


#: Base64 runs at least this long (in base64 characters, white space left out)
#: are decoded and dropped when they hold an image signature.
BASE64_SCAN_MIN = 16
#: Base64 runs at least this long are dropped when they decode to anything but
#: clean UTF-8 text (binary data: an image with no signature, say a Targa).
BASE64_BINARY_MIN = 48
# A run of base64 characters; lines of 40 or more (a wrapped block, a <pre>
# or text with its white space collapsed) join with the next one.
_B64_RE = re.compile(
    r"(?<![A-Za-z0-9+/])(?:(?:[A-Za-z0-9+/]{40,}={0,2}\s+)+[A-Za-z0-9+/]+={0,2}|[A-Za-z0-9+/]{%d,}={0,2})" % BASE64_SCAN_MIN
)
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# Every base64 character to "a", everything else to " ": a run is then found
# by a substring search (~50 times faster than the pattern on plain prose).
_B64_MARK = bytes(ord("a") if b in _B64_ALPHABET else ord(" ") for b in range(256))
_B64_NEEDLE = b"a" * BASE64_SCAN_MIN
_WS_RE = re.compile(r"\s+")
_HEX_RE = re.compile(r"(?=[^0-9]*[0-9])(?:[0-9a-f]+|[0-9A-F]+)")  # a hash in hex, not base64
_CONTROL_CHARS_RE = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")


def _base64_payload(run: str) -> tuple[str, bytes]:
    compact = _WS_RE.sub("", run).rstrip("=")
    if len(compact) % 4 == 1:
        compact = compact[:-1]
    try:
        return compact, base64.b64decode(compact + "=" * (-len(compact) % 4))
    except ValueError:  # binascii.Error
        return compact, b""


def _is_clean_text(raw: bytes) -> bool:
    try:
        return _CONTROL_CHARS_RE.search(raw.decode("utf-8")) is None
    except UnicodeDecodeError:
        return False


def base64_verdict(run: str) -> str | None:
    """What a run of base64 characters holds that must go: ``"image"``, ``"binary"``, or None (keep it)."""
    first = run.split(None, 1)[0]
    if first != run and _HEX_RE.fullmatch(first):
        run = first  # a hash in hex, then words: not a wrapped block
    compact, raw = _base64_payload(run)
    if not raw:
        return None
    if not magic_decision(raw[:SNIFF_BYTES]).allowed:
        return "image"
    if len(compact) >= BASE64_BINARY_MIN and not _HEX_RE.fullmatch(compact) and not _is_clean_text(raw):
        return "binary"
    return None


@functools.lru_cache(maxsize=4096)
def _short_verdict(run: str) -> str | None:
    return base64_verdict(run)  # long words repeat in a text: each is decoded once


def _scrub_base64(text: str) -> tuple[str, int]:
    count = 0

    def drop(match: re.Match[str]) -> str:
        nonlocal count
        run = match.group(0)
        verdict = _short_verdict(run) if len(run) < 64 else base64_verdict(run)
        if verdict is None:
            return run
        count += 1
        return "[image removed]" if verdict == "image" else "[binary data removed]"

    return _B64_RE.sub(drop, text), count


#: Strings up to this length are scrubbed once per process (an LRU cache): the
#: provenance of every item repeats the same reasons, rules and signal names,
#: and scrubbing them again for each item was the largest cost of the scrub.
_SCRUB_CACHE_MAX_LEN = 256


def _scrub_text(text: str) -> tuple[str, int]:
    if len(text) <= _SCRUB_CACHE_MAX_LEN:
        return _scrub_short_text(text)
    return _scrub_any_text(text)


@functools.lru_cache(maxsize=16384)
def _scrub_short_text(text: str) -> tuple[str, int]:
    return _scrub_any_text(text)


def _scrub_any_text(text: str) -> tuple[str, int]:
    has_ext, has_data = _may_hold_image(text)
    count = 0

    def drop_data(_: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return "[image removed]"

    if has_data:
        text = _DATA_URI_RE.sub(drop_data, text)
    if len(text) >= BASE64_SCAN_MIN and _B64_NEEDLE in text.encode("utf-8", "surrogatepass").translate(_B64_MARK):
        text, found = _scrub_base64(text)
        count += found
    if not has_ext:
        return text, count

    def drop_image_url(match: re.Match[str]) -> str:
        nonlocal count
        candidate = match.group(0).rstrip(".,;")
        if _extension(urlsplit(candidate if "//" in candidate else "http://x" + candidate).path) in IMAGE_EXTENSIONS:
            count += 1
            return "[image removed]" + match.group(0)[len(candidate) :]
        return match.group(0)

    return _URL_RE.sub(drop_image_url, text), count


_DROP = object()  # a value removed whole (image bytes, or bytes that carry one)


def _scrub_value(value: Any) -> tuple[Any, int]:
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        if magic_decision(raw[:SNIFF_BYTES]).allowed is False:
            return _DROP, 1
        _, found = _scrub_text(raw.decode("latin-1"))
        return (_DROP, found) if found else (value, 0)
    if isinstance(value, list | tuple | set | frozenset):
        total, out = 0, []
        for element in value:
            cleaned, n = _scrub_value(element)
            total += n
            if cleaned is not _DROP:
                out.append(cleaned)
        return (tuple(out) if isinstance(value, tuple) else out), total
    if isinstance(value, Mapping):
        cleaned_map, total = scrub_fields(value)
        return cleaned_map, total
    return value, 0


_WORD_RE = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
#: Words that make a field an image field whatever the rest of its name
#: (``imageUrl``, ``og:image``, ``profile_photo``, ``thumbnailURL``).
IMAGE_FIELD_WORDS = frozenset(
    {"image", "images", "img", "imgs", "photo", "photos", "picture", "pictures", "pic", "pics", "avatar", "avatars",
     "thumbnail", "thumbnails", "thumb", "thumbs", "portrait", "portraits", "headshot", "headshots", "screenshot",
     "screenshots", "logo", "logos", "favicon", "icon", "icons", "selfie", "selfies", "mugshot"}
)  # fmt: skip


def is_image_field(name: Any) -> bool:
    """True for a field that holds images by its name: the listed names, or any name with an image word in it."""
    text = str(name)
    return _is_image_field_name(text) if len(text) <= _SCRUB_CACHE_MAX_LEN else _image_field_name(text)


@functools.lru_cache(maxsize=4096)
def _is_image_field_name(text: str) -> bool:
    return _image_field_name(text)  # field names repeat in every item


def _image_field_name(text: str) -> bool:
    if text.lower() in IMAGE_FIELDS:
        return True
    return any(word.lower() in IMAGE_FIELD_WORDS for word in _WORD_RE.findall(text))


def scrub_fields(fields: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """The fields without image fields, inline image data or image URLs; and how many were removed.

    Keys are checked too (a mapping of image URL to caption), and bytes
    values are checked for image signatures and for the same text patterns.
    """
    out: dict[str, Any] = {}
    removed = 0
    for key, value in fields.items():
        if is_image_field(key):
            removed += 1
            continue
        if isinstance(key, str) and _scrub_text(key)[1]:
            removed += 1  # the key itself is an image URL or data
            continue
        cleaned, n = _scrub_value(value)
        removed += n
        if cleaned is _DROP:
            continue
        out[key] = cleaned
    return out, removed
