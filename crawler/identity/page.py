"""The page that explains the crawler to the sites it visits, built from its real configuration.

The crawler best-practice draft (draft-illyes-webbotauth-cbcp-01) asks a
crawler to publish how its data is used and how to block it, with a
contact, and the IP ranges it crawls from; the EU GPAI Code of Practice
(measure 1.3) asks for a complaint contact point. ``scrapy compliance
page`` writes this page; the site owners' portal will serve the same.

Pure: :func:`page_content` takes values (the product token, the purposes,
the key directory...) and returns a plain dict; :func:`render_html` and
:func:`render_json` turn that dict into the page and its JSON twin. No
Scrapy, no files, no clock: a caller that has the same configuration gets
the same bytes. Every value is escaped by Jinja2's autoescape.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: The JSON schema tag of :func:`render_json`'s output; bump on an incompatible change.
SCHEMA = "ethical-crawler/crawler-page/1"
#: The file name of the IP ranges, linked from the page with ``rel="client-ranges"``.
CLIENT_RANGES_FILE = "client-ranges.json"

PURPOSE_TEXT = {
    "search": "search: pages are stored and indexed so that people can find them",
    "train-ai": "train-ai: the text of pages is used to train AI models",
    "archive": "archive: copies of pages are kept as an archive",
}


class PageSettingError(ValueError):
    """A setting the page is built from is wrong; the message names it."""


def parse_ip_ranges(raw: object) -> list[str]:
    """COMPLIANCE_IP_RANGES: CIDRs (a list, or a comma-separated string), checked and normalised.

    A host address with bits set beyond the prefix (``192.0.2.1/24``) is
    refused rather than silently widened: a published range must mean exactly
    what the operator wrote.
    """
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        items = raw.split(",")
    elif isinstance(raw, list | tuple):
        items = [str(item) for item in raw]
    else:
        raise PageSettingError(f"COMPLIANCE_IP_RANGES: expected a list of CIDRs, got {raw!r}")
    ranges = []
    for item in items:
        text = item.strip()
        if not text:
            continue
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            raise PageSettingError(f"COMPLIANCE_IP_RANGES: {text!r} is not a CIDR range like 192.0.2.0/24 or 2001:db8::/32 ({exc})") from None
        ranges.append(str(network))
    return list(dict.fromkeys(ranges))


def client_ranges(ranges: Sequence[str], created: str) -> dict[str, Any]:
    """The IP ranges as JSON, in the common crawler format (``prefixes`` of ``ipv4Prefix``/``ipv6Prefix``)."""
    prefixes = []
    for text in ranges:
        network = ipaddress.ip_network(text)
        prefixes.append({"ipv4Prefix" if network.version == 4 else "ipv6Prefix": str(network)})
    return {"creationTime": created, "prefixes": prefixes}


def page_content(
    *,
    operator: str,
    contact: str,
    product_token: str,
    user_agent: str,
    purposes: Iterable[str],
    min_delay: float,
    max_concurrency: int,
    max_crawl_delay: float,
    robots_ttl: float,
    max_retry_after: float,
    backoff_base: float,
    backoff_max: float,
    signing: bool,
    signature_agent: str | None,
    directory_url: str | None,
    jwks: Mapping[str, Any] | None,
    signature_lifetime: int,
    notice_poll_interval: float,
    ip_ranges: Sequence[str] = (),
    generated_at: str = "",
    objection_url: str | None = None,
) -> dict[str, Any]:
    """Everything the page says, as data (the JSON twin is exactly this).

    ``objection_url`` is the site owners' portal's form (``scrapy compliance
    serve``), when it runs: objections are filed there rather than by mail.
    """
    chosen = sorted(set(purposes))
    token = product_token
    signals = _signals(token, frozenset(chosen))
    return {
        "schema": SCHEMA,
        "generated_at": generated_at,
        "operator": {"name": operator, "contact": contact},
        "crawler": {"product_token": token, "user_agent": user_agent},
        "purposes": [{"id": p, "text": PURPOSE_TEXT.get(p, p)} for p in chosen],
        "pace": {
            "min_delay_seconds": min_delay, "max_concurrency": max_concurrency,
            "max_crawl_delay_seconds": max_crawl_delay,
        },  # fmt: skip
        "blocking": {
            "robots_txt": {
                "text": f"robots.txt (RFC 9309): a group for our product token {token} applies to us; "
                        f"without one, the group for * does. It is read again at least every {robots_ttl / 3600:g} hours; "
                        "if it cannot be fetched (5xx, network error) nothing is crawled.",
                "example": f"User-agent: {token}\nDisallow: /",
            },
            "crawl_delay": {
                "text": f"Crawl-delay in our group (or *'s) slows us down to that many seconds between requests, up to "
                        f"{max_crawl_delay:g} s; a site asking for more is not crawled at all.",
                "example": f"User-agent: {token}\nCrawl-delay: 10",
            },
            "signals": signals,
            "distress": {
                "text": f"Answer 429 or 503 with Retry-After (seconds or an HTTP date) and we send nothing to the host "
                        f"for that long, up to {max_retry_after:g} s; a longer Retry-After makes us skip the host. "
                        f"Repeated 5xx answers or timeouts back us off exponentially: {backoff_base:g} s, then twice as "
                        f"long after each further failure, at most {backoff_max:g} s. A success resets it.",
                "example": "HTTP/1.1 503 Service Unavailable\nRetry-After: 120",
            },
        },  # fmt: skip
        "objection": {
            "contact": contact,
            "url": objection_url,
            "steps": [
                (f"File an objection at {objection_url} (your domain or URL patterns and what you object to), or write to {contact}."
                 if objection_url else f"Write to {contact} naming your site (domains or URL patterns) and what you object to."),
                f"Your objection is recorded as a notice; every running crawl reads the notice registry every "
                f"{notice_poll_interval:g} s and stops requesting your site within a second.",
                "Everything already collected from your site is purged everywhere the crawler wrote it "
                "(store, feeds, caches, queues).",
                "You receive a receipt: what was deleted where, recorded in a tamper-evident ledger you can check.",
            ],
        },
        "identity": {
            "signing": signing,
            "text": (
                "Every request carries an HTTP Message Signature (RFC 9421, Web Bot Auth: "
                "draft-ietf-webbotauth-httpsig-protocol-01) made with an Ed25519 key published in the key directory "
                f"below; each signature is valid for {signature_lifetime} s. A request without a valid signature "
                "is not from us, whatever its User-Agent says."
                if signing else
                "Requests are not signed (COMPLIANCE_SIGNING is off): the User-Agent is the only identification."
            ),
            "signature_agent": signature_agent,
            "directory_url": directory_url,
            "jwks": dict(jwks) if jwks is not None else None,
        },  # fmt: skip
        "ip_ranges": list(ip_ranges),
        "client_ranges_file": CLIENT_RANGES_FILE if ip_ranges else None,
    }


def _signals(token: str, purposes: frozenset[str]) -> list[dict[str, Any]]:
    """The opt-out signals honoured (docs/optouts.md), each with the crawl purposes it restricts and an example."""
    every = sorted(purposes)
    table: list[tuple[str, tuple[str, ...], str, str]] = [
        ("noindex, none (X-Robots-Tag or meta robots)", ("*",), "the page is not stored",
         f'X-Robots-Tag: {token}: noindex\n<meta name="robots" content="noindex">'),
        ("nofollow (X-Robots-Tag or meta robots)", ("*",), "links on the page are not followed",
         '<meta name="robots" content="nofollow">'),
        ("noarchive", ("archive",), "the page is not stored for archive", "X-Robots-Tag: noarchive"),
        ("noai, noimageai", ("train-ai",), "the page is not stored for train-ai", '<meta name="robots" content="noai">'),
        ("Content-Usage (IETF aipref), header or robots.txt", ("train-ai", "search"),
         "train-ai=n or search=n: the page is not stored for that purpose",
         f"Content-Usage: train-ai=n\n\nUser-agent: {token}\nContent-Usage: /articles/ train-ai=n"),
        ("Content-Signal, header or robots.txt", ("train-ai", "search"),
         "search=no, ai-train=no or ai-input=no: the page is not stored for that purpose", "Content-Signal: ai-train=no"),
        ("TDMRep (W3C): /.well-known/tdmrep.json, the tdm-reservation header or meta tag", ("train-ai",),
         "tdm-reservation 1: the page is not stored for train-ai", 'tdm-reservation: 1\n\n[{"location": "/*", "tdm-reservation": 1}]'),
    ]  # fmt: skip
    found = []
    for name, restricts, effect, example in table:
        applies = every if "*" in restricts else [p for p in every if p in restricts]
        if applies:
            found.append({"signal": name, "purposes": applies, "effect": effect, "example": example})
    return found


def content_from_settings(settings: Any, min_delay: float, max_concurrency: int, *, objection_url: str | None = None) -> dict[str, Any]:
    """:func:`page_content` from the Scrapy settings a crawl here would use, and the default pace of its policies.

    The one place ``scrapy compliance page`` and the portal's ``/`` get the
    page from. Raises :class:`crawler.config.ConfigError` for a bad setting and
    :class:`PageSettingError` for a bad ``COMPLIANCE_IP_RANGES`` or key file.
    """
    import time
    from datetime import UTC, datetime

    from crawler.config import Config
    from crawler.identity import keyring
    from crawler.identity.config import identity_settings
    from crawler.identity.signing import DIRECTORY_PATH, directory_body

    config = Config.from_settings(settings)
    ranges = parse_ip_ranges(settings.get("COMPLIANCE_IP_RANGES"))
    options = identity_settings(settings)
    jwks = None
    if options.enabled:
        try:
            ring = keyring.load(options.key_path)
        except keyring.KeyFileError as exc:
            raise PageSettingError(f"{exc}; the page publishes its key directory") from None
        jwks = json.loads(directory_body(ring.published(time.time())))
    now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    operator = str(settings.get("COMPLIANCE_OPERATOR_NAME") or "").strip() or f"the operator reachable at {config.contact}"
    return page_content(
        operator=operator, contact=config.contact, product_token=config.bot_name, user_agent=config.user_agent,
        purposes=config.purposes, min_delay=min_delay, max_concurrency=max_concurrency,
        max_crawl_delay=config.max_crawl_delay, robots_ttl=config.robots_ttl, max_retry_after=config.courtesy.max_retry_after,
        backoff_base=config.courtesy.backoff_base, backoff_max=config.courtesy.backoff_max,
        signing=options.enabled, signature_agent=options.agent,
        directory_url=f"{options.agent.rstrip('/')}{DIRECTORY_PATH}" if options.agent and options.enabled else None,
        jwks=jwks, signature_lifetime=options.lifetime,
        notice_poll_interval=settings.getfloat("COMPLIANCE_NOTICE_POLL_INTERVAL", 0.25),
        ip_ranges=ranges, generated_at=now, objection_url=objection_url,
    )  # fmt: skip


def render_json(content: Mapping[str, Any]) -> str:
    return json.dumps(content, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_html(content: Mapping[str, Any]) -> str:
    """The page: self-contained (no script, no outside resource), every value escaped."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    environment = Environment(
        loader=PackageLoader("crawler.identity", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    jwks = content["identity"]["jwks"]
    return environment.get_template("page.html.j2").render(
        page=content, jwks_text=json.dumps(jwks, indent=2) if jwks is not None else "",
    )
