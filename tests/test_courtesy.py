"""The pure core of courtesy under distress: Retry-After, exponential back-off, the per-host board."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crawler.compliance.courtesy import (
    CourtesyRules,
    HostBoard,
    Outcome,
    backoff,
    judge,
    parse_retry_after,
)

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
RULES = CourtesyRules(max_retry_after=3600, backoff_base=1, backoff_max=60)


@pytest.mark.parametrize(
    ("value", "date", "expected"),
    [
        ("2", None, 2.0),
        ("  120 ", None, 120.0),
        ("0", None, 0.0),
        # RFC 9110 10.2.3: delay-seconds is 1*DIGIT; anything else is unreadable.
        ("-1", None, None),
        ("1.5", None, None),
        ("", None, None),
        ("soon", None, None),
        ("٣", None, None),  # a digit, but not an ASCII one
        (None, None, None),
        # An HTTP-date: from now when the response has no Date...
        ("Thu, 26 Nov 2026 12:00:30 GMT", None, 30.0),
        # ... and from the response's own Date when it has one (a skewed clock here does not matter).
        ("Thu, 26 Nov 2026 14:00:00 GMT", "Thu, 26 Nov 2026 13:00:00 GMT", 3600.0),
        ("Thu, 26 Nov 2026 14:00:00 GMT", "not a date", 7200.0),
        # The obsolete formats HTTP still accepts (RFC 9110 5.6.7).
        ("Thursday, 26-Nov-26 12:01:00 GMT", None, 60.0),
        ("Thu Nov 26 12:00:10 2026", None, 10.0),
        # A date in the past: no wait from Retry-After (the back-off still applies).
        ("Thu, 26 Nov 2026 11:00:00 GMT", None, 0.0),
    ],
)
def test_retry_after_is_read_as_seconds_or_as_a_date(value: str | None, date: str | None, expected: float | None) -> None:
    """Retry-After is delay-seconds or an HTTP-date (RFC 9110 10.2.3); anything unreadable is None."""
    assert parse_retry_after(value, NOW, date) == expected


def test_backoff_doubles_from_the_base_up_to_the_cap() -> None:
    """base, 2 x base, 4 x base ... capped; no failure, no wait; a huge count does not overflow."""
    rules = CourtesyRules(backoff_base=0.5, backoff_max=10)
    assert [backoff(n, rules) for n in range(7)] == [0, 0.5, 1, 2, 4, 8, 10]
    assert backoff(10_000, rules) == 10


def test_a_success_resets_and_a_stale_answer_changes_nothing() -> None:
    """A 200, 404 or 301 resets the host's count; the same from a request sent before the last failure does nothing."""
    for status in (200, 301, 404, 410):
        assert judge(Outcome(status), 0, RULES).action == "reset"
        assert judge(Outcome(status), 0, RULES, counted=False).action == "none"


def test_retry_after_pauses_for_what_it_asks_unless_the_back_off_is_longer() -> None:
    """503 Retry-After 2 after one failure: 2 s; after four failures the back-off (8 s) wins."""
    first = judge(Outcome(503, 2.0), 1, RULES)
    assert (first.action, first.seconds, first.cause) == ("pause", 2.0, "retry-after")
    later = judge(Outcome(429, 2.0), 4, RULES)
    assert (later.action, later.seconds, later.cause) == ("pause", 8.0, "backoff")


def test_failures_without_retry_after_back_off_exponentially() -> None:
    """500, 502, 504, 429 without Retry-After and network failures: the back-off for the count."""
    for failures, outcome in enumerate([Outcome(500), Outcome(502), Outcome(504), Outcome(429), Outcome(None, failure="TimeoutError")], 1):
        verdict = judge(outcome, failures, RULES)
        assert (verdict.action, verdict.seconds, verdict.cause) == ("pause", 2.0 ** (failures - 1), "backoff")


def test_retry_after_above_the_cap_skips_the_host() -> None:
    """Retry-After above COMPLIANCE_MAX_RETRY_AFTER: skip, whatever the count; at the cap it is still a pause."""
    assert judge(Outcome(503, 3601.0), 1, RULES).action == "skip"
    assert judge(Outcome(429, 7200.0), 1, RULES, counted=False).action == "skip"
    assert judge(Outcome(503, 3600.0), 1, RULES).action == "pause"


def test_a_stale_failure_keeps_its_retry_after_but_adds_no_back_off() -> None:
    """An answer to a request sent before the last failure: its Retry-After holds; without one, nothing."""
    verdict = judge(Outcome(503, 5.0), 0, RULES, counted=False)
    assert (verdict.action, verdict.seconds) == ("pause", 5.0)
    assert judge(Outcome(500), 0, RULES, counted=False).action == "none"


def test_invalid_rules_are_refused() -> None:
    """Negative, infinite or NaN seconds, or a cap below the base, are refused."""
    for kwargs in ({"backoff_base": -1}, {"backoff_max": float("inf")}, {"max_retry_after": float("nan")},
                   {"backoff_base": 10, "backoff_max": 5}):  # fmt: skip
        with pytest.raises(ValueError):
            CourtesyRules(**kwargs)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_board_pauses_a_host_and_lets_it_go_after() -> None:
    """A pause holds the host (not others) for its length; a shorter pause never shortens it."""
    clock = Clock()
    board = HostBoard(clock)
    assert board.turn("a.test") == (0.0, 0, None)
    assert board.pause("a.test", 2.0) == 2.0
    assert board.pause("a.test", 0.5) == 2.0
    assert board.turn("a.test")[0] == 2.0 and board.turn("b.test")[0] == 0.0
    clock.now += 1.5
    assert board.turn("a.test")[0] == pytest.approx(0.5)
    clock.now += 0.5
    assert board.turn("a.test")[0] == 0.0


def test_the_board_counts_consecutive_failures_once_per_generation() -> None:
    """Requests in flight together count as one failure; a success sent after it resets; one sent before does not."""
    board = HostBoard(Clock())
    _, generation, _ = board.turn("a.test")
    assert board.failed("a.test", generation) == 1
    assert board.failed("a.test", generation) is None  # sent with the first, answered after it
    assert board.succeeded("a.test", generation) == 0  # sent before the failure: no reset
    _, generation, _ = board.turn("a.test")
    assert board.failed("a.test", generation) == 2
    _, generation, _ = board.turn("a.test")
    assert board.succeeded("a.test", generation) == 2
    _, generation, _ = board.turn("a.test")
    assert board.failed("a.test", generation) == 1


def test_a_skip_holds_for_its_length_then_lapses() -> None:
    """A skipped host answers its reason until the skip lapses."""
    clock = Clock()
    board = HostBoard(clock)
    board.skip("a.test", 10, "HTTP 503 with Retry-After 7200s")
    assert board.skipped("a.test") == "HTTP 503 with Retry-After 7200s"
    assert board.turn("a.test")[2] == "HTTP 503 with Retry-After 7200s"
    assert board.skipped("b.test") is None
    clock.now += 10
    assert board.skipped("a.test") is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"COMPLIANCE_MAX_RETRY_AFTER": "-1"}, "COMPLIANCE_MAX_RETRY_AFTER: must be at least 0"),
        ({"COMPLIANCE_BACKOFF_BASE": "soon"}, "COMPLIANCE_BACKOFF_BASE: expected a float"),
        ({"COMPLIANCE_BACKOFF_BASE": "10", "COMPLIANCE_BACKOFF_MAX": "5"}, "COMPLIANCE_BACKOFF_MAX: must be at least COMPLIANCE_BACKOFF_BASE"),
        ({"COMPLIANCE_BACKOFF_MAX": "inf"}, "finite"),
    ],
)
def test_courtesy_settings_are_checked(settings: dict[str, str], message: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A bad courtesy setting is a ConfigError naming it."""
    from scrapy.settings import Settings

    from crawler.config import Config, ConfigError

    base = {"COMPLIANCE_CONTACT": "https://example.org/bot", "COMPLIANCE_STORE": f"sqlite:///{tmp_path}/s.sqlite3"}
    with pytest.raises(ConfigError, match=message):
        Config.from_settings(Settings({**base, **settings}))
    rules = Config.from_settings(Settings(base)).courtesy
    assert (rules.max_retry_after, rules.backoff_base, rules.backoff_max) == (3600, 1, 300)
