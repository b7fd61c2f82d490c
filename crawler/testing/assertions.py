"""Assertions that read like the guarantees, for anyone's compliance tests.

Each takes the :class:`~crawler.testing.plugin.ComplianceResult` of a crawl
and fails with a message naming the offending request or item.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from crawler.compliance.domains import host_in_domain, registered_domain
from crawler.compliance.images import url_decision

if TYPE_CHECKING:
    from crawler.testing.plugin import ComplianceResult

__all__ = [
    "assert_no_disallowed_fetch", "assert_no_images", "assert_nothing_stored_for", "assert_no_requests_to",
    "assert_refused", "assert_stored",
]  # fmt: skip

_FILES = ("/robots.txt", "/.well-known/tdmrep.json")


def _listing(lines: Iterable[str], limit: int = 10) -> str:
    lines = list(lines)
    shown = "\n  ".join(lines[:limit])
    more = f"\n  ... and {len(lines) - limit} more" if len(lines) > limit else ""
    return f"\n  {shown}{more}"


def assert_no_disallowed_fetch(result: ComplianceResult) -> None:
    """No request the host's robots.txt disallows for the crawler's token reached the host (RFC 9309)."""
    offending = []
    for entry in result.requests:
        if entry.path in _FILES or entry.unknown_host:
            continue
        rules = result.robots_for(entry.scheme, entry.host, entry.port)
        url = f"{entry.scheme}://{entry.host}{entry.path}"
        if rules is not None and not rules(url):
            offending.append(f"{entry.method} {url} (status {entry.status})")
    assert not offending, f"robots.txt disallows these, yet they reached the host:{_listing(offending)}"


def assert_no_images(result: ComplianceResult) -> None:
    """No image-looking URL was requested, no image body was received past its first bytes, no item holds an image."""
    requested = [f"{e.method} {e.scheme}://{e.host}{e.path}" for e in result.requests
                 if not url_decision(f"{e.scheme}://{e.host}{e.path}").allowed]  # fmt: skip
    assert not requested, f"image URLs were requested:{_listing(requested)}"
    downloaded = [f"{e.scheme}://{e.host}{e.path} ({e.bytes_sent} bytes sent)" for e in result.requests
                  if result.is_image_response(e) and e.bytes_sent > 65536]  # fmt: skip
    assert not downloaded, f"image bodies were downloaded past the first chunk:{_listing(downloaded)}"
    holding = []
    for item in result.items:
        for name, value in item.items():
            if isinstance(value, str) and ("data:image/" in value or not url_decision(value).allowed and value.startswith("http")):
                holding.append(f"item {item.get('url')}: field {name!r} = {value[:80]!r}")
    assert not holding, f"stored items hold images or image URLs:{_listing(holding)}"


def assert_nothing_stored_for(result: ComplianceResult, domain: str) -> None:
    """No item of ``domain`` (a registered domain or host; subdomains included) is in the store."""
    stored = [str(i.get("url")) for i in result.items if host_in_domain(str(i.get("host", "")), domain)]
    assert not stored, f"items of {domain} were stored:{_listing(stored)}"


def assert_no_requests_to(result: ComplianceResult, domain: str) -> None:
    """The host (and its subdomains) saw no request at all, not even for robots.txt."""
    seen = [f"{e.method} {e.scheme}://{e.host}{e.path}" for e in result.requests
            if host_in_domain(e.host, domain) or registered_domain(e.host) == domain]  # fmt: skip
    assert not seen, f"{domain} saw requests:{_listing(seen)}"


def assert_refused(result: ComplianceResult, url: str, reason: str | None = None) -> None:
    """``url`` was refused (with ``reason``, or a reason starting with it), and recorded as such."""
    found = [r for r in result.refusals if r["url"] == url]
    recorded = _listing(str(r["reason"]) + " " + str(r["url"]) for r in result.refusals)
    assert found, f"{url} was not refused; refusals recorded:{recorded}"
    if reason is not None:
        assert any(r["reason"] == reason or r["reason"].startswith(reason + ".") for r in found), (
            f"{url} was refused for {[r['reason'] for r in found]}, not {reason}"
        )


def assert_stored(result: ComplianceResult, url: str) -> None:
    """``url`` was stored as an item."""
    assert any(i.get("url") == url for i in result.items), f"{url} was not stored; stored:{_listing(str(i.get('url')) for i in result.items)}"
