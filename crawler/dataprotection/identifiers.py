"""A person's identifiers: normalised once, extracted from stored text the same way.

Both sides of an erasure use this module: the request (``scrapy erase``)
normalises what the person gave, and every text that is searched or about to
be stored has its candidates extracted and normalised by the same rules, so
"found", "purged" and "refused on the next crawl" agree by construction.

Normal forms (``kind:value`` is what is hashed for the suppression list):

- every value: Unicode NFKC, then case folding;
- ``email``: ``local@domain``; for Gmail (``gmail.com``, ``googlemail.com``,
  whose help pages document that dots in the local part are ignored and
  ``+tag`` is delivered to the same box) dots and the tag are dropped and the
  domain is ``gmail.com``; for providers that document plus addressing only
  (:data:`PLUS_TAG_DOMAINS`) the tag is dropped. Nowhere else: on most
  servers ``a.b@x`` and ``ab@x`` are different people;
- ``phone``: E.164 (``+14155552671``) with ``phonenumbers`` (libphonenumber);
  a number written without a country code is read in the default region
  (``COMPLIANCE_ERASURE_PHONE_REGION``);
- ``handle``: without its leading ``@``;
- ``name``: the words (``\\w+``) separated by one space; at least two words
  (a single word would erase every page that uses it: give it as a handle);
- ``url``: scheme and host lower-cased, default port and fragment dropped,
  an empty path is ``/``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

KINDS = ("email", "phone", "handle", "name", "url")

GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
#: Providers whose documentation says ``local+tag@`` reaches ``local@`` (and nothing about dots).
PLUS_TAG_DOMAINS = frozenset({"outlook.com", "hotmail.com", "live.com", "icloud.com", "me.com", "fastmail.com", "proton.me", "protonmail.com"})

_EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
_HANDLE_IN_TEXT = re.compile(r"(?<![\w@.])@([\w][\w.]{0,63})")
_HANDLE = re.compile(r"^[\w][\w.]{0,63}$")
_WORD = re.compile(r"\w+")
#: For ASCII text, ``\w`` is exactly letters, digits and ``_``: everything else becomes a space (4x faster than the regex).
_ASCII_NON_WORD = str.maketrans({chr(c): " " for c in range(128) if not (chr(c).isalnum() or chr(c) == "_")})
_URL_IN_TEXT = re.compile(r"https?://[^\s<>\"')\]]+", re.IGNORECASE)


class IdentifierError(ValueError):
    """A given identifier cannot be normalised (the message names it and says what is accepted)."""


@dataclass(frozen=True)
class Identifier:
    kind: str
    value: str  # the normal form

    @property
    def words(self) -> int:
        return len(self.value.split(" ")) if self.kind == "name" else 0

    @property
    def key(self) -> str:
        """What is hashed: ``kind:value``."""
        return f"{self.kind}:{self.value}"


def fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def words(folded: str) -> list[str]:
    """The words (``\\w+``) of a folded text, in order."""
    return folded.translate(_ASCII_NON_WORD).split() if folded.isascii() else _WORD.findall(folded)


def normal_email(text: str) -> str | None:
    folded = fold(text).strip().strip(".")
    local, sep, domain = folded.rpartition("@")
    if not sep or not local or "." not in domain or not _EMAIL.fullmatch(folded):
        return None
    domain = domain.rstrip(".")
    if domain in GMAIL_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
        domain = "gmail.com"
    elif domain in PLUS_TAG_DOMAINS:
        local = local.split("+", 1)[0]
    return f"{local}@{domain}" if local else None


def normal_phone(text: str, region: str | None) -> str | None:
    import phonenumbers

    try:
        number = phonenumbers.parse(fold(text), region or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normal_handle(text: str) -> str | None:
    value = fold(text).strip().removeprefix("@")
    return value if _HANDLE.fullmatch(value) else None


def normal_name(text: str) -> str | None:
    found = words(fold(text))
    return " ".join(found) if len(found) >= 2 else None


def normal_url(text: str) -> str | None:
    try:
        parts = urlsplit(unicodedata.normalize("NFKC", text.strip()))
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname.rstrip(".").lower()
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path or "/", parts.query, ""))


_HOW = {
    "email": "an e-mail address like name@example.org",
    "phone": "a valid phone number (with +country code, or in COMPLIANCE_ERASURE_PHONE_REGION)",
    "handle": "a handle like @name (letters, digits, '_' and '.')",
    "name": "a name of at least two words (give a single word as --handle)",
    "url": "an http(s) URL",
}


def normalise(kind: str, text: str, region: str | None = None) -> Identifier:
    """``text`` as an Identifier of ``kind``; IdentifierError saying what is accepted."""
    if kind == "email":
        value = normal_email(text)
    elif kind == "phone":
        value = normal_phone(text, region)
    elif kind == "handle":
        value = normal_handle(text)
    elif kind == "name":
        value = normal_name(text)
    elif kind == "url":
        value = normal_url(text)
    else:
        raise IdentifierError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    if value is None:
        raise IdentifierError(f"--{kind} {text!r}: not {_HOW[kind]}")
    return Identifier(kind, value)


# -- extraction: every candidate a text holds, in normal form ------------------------------


@dataclass(frozen=True)
class Wanted:
    """Which candidates to extract (extracting only what the list holds keeps the check cheap)."""

    kinds: frozenset[str]
    name_lengths: frozenset[int] = frozenset()
    region: str | None = None

    @classmethod
    def of(cls, identifiers: Iterable[Identifier], region: str | None) -> Wanted:
        found = list(identifiers)
        return cls(frozenset(i.kind for i in found), frozenset(i.words for i in found if i.kind == "name"), region)


def candidates(url: str, texts: Iterable[str], wanted: Wanted) -> Iterator[Identifier]:
    """Every identifier of a wanted kind in an item (its URL and its texts), normalised; repeats possible."""
    kinds = wanted.kinds
    if "url" in kinds:
        own = normal_url(url) if url else None
        if own is not None:
            yield Identifier("url", own)
    if "handle" in kinds and url:
        # A profile page names its person in its path: x.test/janedoe, x.test/@janedoe.
        for segment in urlsplit(url).path.split("/"):
            value = normal_handle(segment) if segment else None
            if value is not None:
                yield Identifier("handle", value)
    for text in texts:
        if not text:
            continue
        folded = fold(text)
        if "email" in kinds and "@" in folded:
            for match in _EMAIL.finditer(folded):
                value = normal_email(match.group(0))
                if value is not None:
                    yield Identifier("email", value)
        if "handle" in kinds and "@" in folded:
            for match in _HANDLE_IN_TEXT.finditer(folded):
                value = normal_handle(match.group(1).rstrip("."))
                if value is not None:
                    yield Identifier("handle", value)
        if "url" in kinds and "http" in folded:
            for match in _URL_IN_TEXT.finditer(text):
                value = normal_url(match.group(0).rstrip(".,;:!?"))
                if value is not None:
                    yield Identifier("url", value)
        if "phone" in kinds:
            yield from _phones(text, wanted.region)
        if "name" in kinds and wanted.name_lengths:
            found = words(folded)
            for n in wanted.name_lengths:
                for start in range(len(found) - n + 1):
                    yield Identifier("name", " ".join(found[start : start + n]))


#: Where a phone number may be: a digit run of 6+ digits allowing the usual separators, after an
#: optional ``+`` and ``(`` (a cheap filter: libphonenumber's matcher costs ~1 ms per page of prose,
#: this regex a few µs). The regex starts at a digit (the engine then skips to digits quickly,
#: 3x faster than with the optional prefix in the pattern); the prefix is taken by hand.
_PHONE_SPAN = re.compile(r"\d[\d\s().\-/]{4,}\d")
#: The same on ASCII text, where ``\d`` is 0-9 and ``\s`` these eleven characters (a third faster).
_PHONE_SPAN_ASCII = re.compile(r"[0-9][0-9\t\n\v\f\r\x1c-\x1f ().\-/]{4,}[0-9]")
_DIGIT = re.compile(r"\d")


def phone_spans(text: str) -> Iterator[tuple[str, str]]:
    """The parts of ``text`` that may hold a phone number (``+(`` optional, then digits and separators, 6+ digits),
    each with its digits (see :func:`span_digits`)."""
    if text.isascii():
        pattern = _PHONE_SPAN_ASCII
    else:
        pattern = _PHONE_SPAN
        if not unicodedata.is_normalized("NFKC", text):
            # Full-width ＋（４１５）５５５－０１００ reads as +(415)555-0100, as an erasure request writes it.
            text = unicodedata.normalize("NFKC", text)
    for match in pattern.finditer(text):
        span = match.group(0)
        digits = span_digits(span)
        if len(digits) < 6:
            continue
        start = match.start()
        if start and text[start - 1] == "(":
            start -= 1
        if start and text[start - 1] == "+":
            start -= 1
        yield text[start : match.end()], digits


def span_digits(span: str) -> str:
    """A span's digits in order, as ASCII (``\\d`` matches every script's digits; libphonenumber reads them too)."""
    digits = "".join(_DIGIT.findall(span))
    return digits if digits.isascii() else "".join(str(unicodedata.decimal(c)) for c in digits)


def phones_in(span: str, region: str | None) -> Iterator[Identifier]:
    """The valid phone numbers libphonenumber reads in a span, in E.164."""
    import phonenumbers

    # Without a default region only numbers written with +country code can be read.
    matcher = phonenumbers.PhoneNumberMatcher(span, region or None, leniency=phonenumbers.Leniency.VALID)
    for match in matcher:
        yield Identifier("phone", phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164))


def _phones(text: str, region: str | None) -> Iterator[Identifier]:
    for span, _ in phone_spans(text):
        yield from phones_in(span, region)
