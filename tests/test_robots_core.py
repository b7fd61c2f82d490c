"""The pure robots.txt layer: fetch outcomes, cache, limits and explanations."""

from __future__ import annotations

import pytest

from crawler.compliance.robots import (
    MAX_PARSE_BYTES,
    RobotsCache,
    RobotsRules,
    RobotsState,
    classify_status,
    origin_of,
    truncate_body,
)

TOKEN = "EthicalCrawler"


def test_origin_separates_scheme_and_port() -> None:
    """http, https and non-default ports are separate robots.txt files (RFC 9309 2.3)."""
    assert origin_of("http://Shop.test/a?b") == ("http://shop.test:80", "http://shop.test/robots.txt")
    assert origin_of("https://shop.test/a") == ("https://shop.test:443", "https://shop.test/robots.txt")
    assert origin_of("http://shop.test:8080/") == ("http://shop.test:8080", "http://shop.test:8080/robots.txt")
    assert origin_of("http://shop.test:80/") == ("http://shop.test:80", "http://shop.test/robots.txt")


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (200, RobotsState.RULES), (204, RobotsState.RULES), (301, None), (308, None),
        (404, RobotsState.UNAVAILABLE), (401, RobotsState.UNAVAILABLE), (410, RobotsState.UNAVAILABLE),
        (429, RobotsState.UNREACHABLE), (500, RobotsState.UNREACHABLE), (503, RobotsState.UNREACHABLE),
        (100, RobotsState.UNREACHABLE), (304, RobotsState.UNREACHABLE),
    ],
)  # fmt: skip
def test_status_classes(status: int, state: RobotsState | None) -> None:
    """HTTP statuses map onto RFC 9309 2.3.1's outcomes, 429 counting as unreachable."""
    assert classify_status(status) is state


def test_unreachable_disallows_everything_with_reason() -> None:
    """5xx means complete disallow, and the decision says so and where."""
    cache = RobotsCache()
    entry = cache.store("http://down.test:80", "http://down.test/robots.txt", RobotsState.UNREACHABLE, 0, detail="HTTP 503")
    decision = entry.decide("http://down.test/anything", TOKEN)
    assert not decision.allowed
    assert decision.reason == "robots.unreachable"
    assert "HTTP 503" in decision.rule and decision.source == "http://down.test/robots.txt"


def test_unavailable_allows_everything() -> None:
    """4xx means the crawler may access anything (RFC 9309 2.3.1.3)."""
    entry = RobotsCache().store("http://o.test:80", "http://o.test/robots.txt", RobotsState.UNAVAILABLE, 0, detail="HTTP 404")
    assert entry.decide("http://o.test/x", TOKEN).reason == "robots.unavailable"
    assert entry.decide("http://o.test/x", TOKEN).allowed


def test_ttl_expiry() -> None:
    """A fetched file is used until its TTL and not after."""
    cache = RobotsCache(ttl=10)
    cache.store("http://a.test:80", "http://a.test/robots.txt", RobotsState.RULES, 100, body=b"")
    assert cache.get("http://a.test:80", 109.9) is not None
    assert cache.get("http://a.test:80", 110.0) is None


def test_ttl_cannot_exceed_a_day() -> None:
    """RFC 9309 2.4 caps caching at 24 hours; a longer TTL is a configuration error."""
    with pytest.raises(ValueError, match="COMPLIANCE_ROBOTS_TTL"):
        RobotsCache(ttl=86401)


def test_unreachable_backoff_doubles_and_is_capped() -> None:
    """A dead host is retried after 60, 120, 240 ... seconds, never later than the TTL."""
    cache = RobotsCache(ttl=300, retry_delay=60)
    expiries = []
    now = 0.0
    for _ in range(5):
        entry = cache.store("http://d.test:80", "http://d.test/robots.txt", RobotsState.UNREACHABLE, now)
        expiries.append(entry.expires_at - now)
        now = entry.expires_at
    assert expiries == [60, 120, 240, 300, 300]
    ok = cache.store("http://d.test:80", "http://d.test/robots.txt", RobotsState.RULES, now, body=b"")
    assert ok.failures == 0 and ok.expires_at - now == 300


def test_lru_is_bounded() -> None:
    """The cache never holds more than its size, evicting the least recently used."""
    cache = RobotsCache(max_entries=3)
    for i in range(3):
        cache.store(f"http://h{i}.test:80", "", RobotsState.UNAVAILABLE, 0)
    assert cache.get("http://h0.test:80", 1) is not None  # h0 now most recent
    cache.store("http://h3.test:80", "", RobotsState.UNAVAILABLE, 0)
    assert len(cache) == 3
    assert cache.get("http://h1.test:80", 1) is None
    assert cache.get("http://h0.test:80", 1) is not None


def test_parse_limit_drops_rules_after_500_kib() -> None:
    """Only the first 500 KiB are parsed, and a line cut by the limit is dropped (RFC 9309 2.5)."""
    head = b"User-agent: *\nDisallow: /early/\n"
    padding = b"# pad\n" * ((MAX_PARSE_BYTES - len(head)) // 6)
    body = head + padding + b"Allow: /early/late-allow-cut-by-limit\nDisallow: /late/\n"
    kept, truncated = truncate_body(body)
    assert truncated and len(kept) <= MAX_PARSE_BYTES and kept.endswith(b"\n")
    rules = RobotsRules(body, "http://b.test/robots.txt")
    assert rules.truncated
    assert not rules.decide("http://b.test/early/late-allow-cut-by-limit", TOKEN).allowed
    assert rules.decide("http://b.test/late/x", TOKEN).allowed


def test_group_matched_on_bare_token_not_header() -> None:
    """Groups match the product token; a group named after a word in our contact does not apply."""
    rules = RobotsRules(b"User-agent: *\nDisallow: /members/\n\nUser-agent: ops\nAllow: /\n")
    assert not rules.decide("http://s.test/members/x", TOKEN).allowed
    # What Protego would do if handed the whole header (the mistake we avoid):
    assert rules.decide("http://s.test/members/x", "EthicalCrawler/0.1 (+mailto:ops@x.example)").allowed


def test_user_agent_value_cut_at_first_space() -> None:
    """"User-agent: EthicalCrawler/1.0 extra" applies to us: only restrictive."""
    rules = RobotsRules(b"User-agent: EthicalCrawler/1.0 (compatible)\nDisallow: /\n")
    assert not rules.decide("http://s.test/x", TOKEN).allowed


def test_explanation_names_rule_and_line() -> None:
    """A decision names the winning rule as written and its robots.txt line."""
    body = b"# c\nUser-agent: *\nDisallow: /private/\nAllow: /private/ok\n\nUser-agent: EthicalCrawler\nDisallow: /x$\n"
    rules = RobotsRules(body, "http://s.test/robots.txt")
    d = rules.decide("http://s.test/x", TOKEN)
    assert (d.allowed, d.reason, d.rule, d.source) == (False, "robots.disallow", "Disallow: /x$", "http://s.test/robots.txt:7")
    d = rules.decide("http://s.test/private/ok", "other")
    assert (d.allowed, d.rule, d.source) == (True, "Allow: /private/ok", "http://s.test/robots.txt:4")
    assert rules.decide("http://s.test/robots.txt", TOKEN).allowed


def test_crawl_delay_and_request_rate() -> None:
    """The pace is the slower of Crawl-delay and Request-rate; malformed values are ignored."""
    assert RobotsRules(b"User-agent: *\nCrawl-delay: 2\nRequest-rate: 1/5s\n").crawl_delay(TOKEN) == 5
    assert RobotsRules(b"User-agent: *\nCrawl-delay: 1.5\n").crawl_delay(TOKEN) == 1.5
    assert RobotsRules(b"User-agent: *\nCrawl-delay: soon\n").crawl_delay(TOKEN) is None
    assert RobotsRules(b"User-agent: *\nCrawl-delay: inf\n").crawl_delay(TOKEN) is None


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe\x00garbage", b"\x00" * 1000, b"User-agent: *\r\nDisallow: /a\rDisallow: /b\n", "Ünïcödé: ü\n".encode(),
     b"User-agent: *\nDisallow: /" + b"a" * 100_000 + b"\n", b":::\n::\nUser-agent:\nDisallow:\n"],
)  # fmt: skip
def test_hostile_bodies_never_crash(body: bytes) -> None:
    """Garbage, NULs, odd line endings and huge lines parse without an exception."""
    rules = RobotsRules(body, "http://h.test/robots.txt")
    assert rules.decide("http://h.test/a", TOKEN).reason in {"robots.allow", "robots.disallow"}


def test_cr_line_endings_are_lines() -> None:
    """CR-only line endings separate records."""
    rules = RobotsRules(b"User-agent: *\rDisallow: /a\rDisallow: /b\r")
    assert not rules.decide("http://h.test/b", TOKEN).allowed
