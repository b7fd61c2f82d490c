"""Courtesy under distress: when a host says it is overloaded, the whole host waits.

The pure core (no Scrapy imports, clocks passed in):

- :func:`parse_retry_after` reads ``Retry-After`` (RFC 9110 section 10.2.3:
  delta-seconds or an HTTP-date) into seconds to wait.
- :func:`backoff` is the exponential back-off after consecutive failures:
  ``base * 2 ** (failures - 1)``, capped.
- :func:`judge` turns one answer of a host (its status and Retry-After, or a
  network failure) and the host's count of consecutive failures into a
  :class:`Verdict`: pause the host for so long, skip it (a Retry-After above
  the cap), reset its count (it answered), or nothing.
- :class:`HostBoard` keeps, per host, the consecutive failures, the moment
  the host may be asked again and whether it is skipped, for a single-process
  crawl (a cluster keeps the same state in Redis: crawler/cluster.py).

Failures are counted "consecutive" per *generation*: each counted failure
starts a new generation, and an answer counts only if its request left in
the current one. So eight requests in flight when a host starts failing
raise its count by one, not eight, and a success that left before the
failure does not reset it.

The crawler best-practice draft (draft-illyes-webbotauth-cbcp-01) asks
crawlers to back off on 5xx and 429; see docs/courtesy.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

#: Defaults of COMPLIANCE_MAX_RETRY_AFTER, COMPLIANCE_BACKOFF_BASE and COMPLIANCE_BACKOFF_MAX (seconds).
DEFAULT_MAX_RETRY_AFTER = 3600.0
DEFAULT_BACKOFF_BASE = 1.0
DEFAULT_BACKOFF_MAX = 300.0

def is_distress_status(status: int) -> bool:
    """429 Too Many Requests (RFC 6585 section 4) and every 5xx say the server is in distress."""
    return status == 429 or 500 <= status <= 599


@dataclass(frozen=True)
class CourtesyRules:
    """The crawl's settings for courtesy, checked."""

    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    backoff_base: float = DEFAULT_BACKOFF_BASE
    backoff_max: float = DEFAULT_BACKOFF_MAX

    def __post_init__(self) -> None:
        for name in ("max_retry_after", "backoff_base", "backoff_max"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
        if self.backoff_max < self.backoff_base:
            raise ValueError(f"backoff_max ({self.backoff_max:g}) must be at least backoff_base ({self.backoff_base:g})")


def parse_retry_after(value: str | None, now: datetime, date: str | None = None) -> float | None:
    """Seconds to wait from ``now`` as ``Retry-After: value`` asks; None when absent or unreadable.

    ``delay-seconds`` is a non-negative integer (RFC 9110 10.2.3). An
    HTTP-date is compared with the response's own ``Date`` when it has one
    (both are the server's clock, so a skewed clock here does not shorten or
    stretch the wait), else with ``now``; a date in the past means 0. An
    unreadable value is None: the caller backs off as if none was given.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    reference = now
    if date:
        try:
            server_now = parsedate_to_datetime(date.strip())
        except (TypeError, ValueError, IndexError):
            server_now = None
        if server_now is not None:
            reference = server_now
    return max(0.0, (_aware(when) - _aware(reference)).total_seconds())


def _aware(moment: datetime) -> datetime:
    # parsedate_to_datetime gives a naive datetime for "-0000"; HTTP-dates are GMT.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def backoff(failures: int, rules: CourtesyRules) -> float:
    """The pause after ``failures`` consecutive failures: base, 2 x base, 4 x base, ... up to the cap."""
    if failures <= 0:
        return 0.0
    # 2 ** 1023 is the last power a float holds; the cap is reached long before.
    return min(rules.backoff_base * 2.0 ** min(failures - 1, 1000), rules.backoff_max)


@dataclass(frozen=True)
class Outcome:
    """What a host answered: a status (with its Retry-After), or a network failure (status None)."""

    status: int | None
    retry_after: float | None = None
    failure: str = ""

    @property
    def distress(self) -> bool:
        return self.status is None or is_distress_status(self.status)

    def describe(self) -> str:
        if self.status is None:
            return self.failure or "network failure"
        if self.retry_after is not None:
            return f"HTTP {self.status} with Retry-After {self.retry_after:g}s"
        return f"HTTP {self.status}"


@dataclass(frozen=True)
class Verdict:
    """What to do with a host after one answer.

    ``action``: ``pause`` the host for ``seconds``; ``skip`` it (Retry-After
    above the cap, ``seconds`` is what it asked); ``reset`` its failure count;
    ``none``. ``cause`` is ``retry-after`` or ``backoff`` for a pause (the
    stats key ``compliance/courtesy/paused/<cause>``).
    """

    action: Literal["pause", "skip", "reset", "none"]
    seconds: float = 0.0
    cause: str = ""
    failures: int = 0


def judge(outcome: Outcome, failures: int, rules: CourtesyRules, *, counted: bool = True) -> Verdict:
    """The verdict on ``outcome``, ``failures`` being the host's consecutive failures *including* this one.

    ``counted`` is False for an answer to a request that left before the
    host's last counted failure (see the module docstring): it neither adds
    to the back-off nor resets it, but a Retry-After it carries still holds.

    The pause is the longer of the Retry-After and the back-off: the
    back-off grows with each failure, so a host that keeps answering
    ``Retry-After: 1`` is asked less and less often.
    """
    if not outcome.distress:
        return Verdict("reset") if counted else Verdict("none")
    retry_after = outcome.retry_after
    if retry_after is not None and retry_after > rules.max_retry_after:
        return Verdict("skip", retry_after, "retry-after", failures)
    waits = backoff(failures, rules) if counted else 0.0
    seconds = max(waits, retry_after or 0.0)
    if seconds <= 0:
        return Verdict("none", failures=failures)
    cause = "retry-after" if retry_after is not None and retry_after >= waits else "backoff"
    return Verdict("pause", seconds, cause, failures)


@dataclass
class HostState:
    failures: int = 0
    generation: int = 0
    #: Monotonic moment before which nothing is sent to the host.
    paused_until: float = 0.0
    #: Monotonic moment until which the host is skipped, and why.
    skipped_until: float = 0.0
    skip_detail: str = ""


@dataclass
class HostBoard:
    """Per-host courtesy state for one process; ``clock`` is monotonic seconds."""

    clock: Callable[[], float]
    hosts: dict[str, HostState] = field(default_factory=dict)

    def _state(self, host: str) -> HostState:
        state = self.hosts.get(host)
        if state is None:
            state = self.hosts[host] = HostState()
        return state

    def turn(self, host: str) -> tuple[float, int, str | None]:
        """(seconds still to wait, the generation a request leaving now belongs to, skip detail or None)."""
        state = self.hosts.get(host)
        if state is None:
            return 0.0, 0, None
        now = self.clock()
        if state.skipped_until > now:
            return 0.0, state.generation, state.skip_detail
        return max(0.0, state.paused_until - now), state.generation, None

    def failed(self, host: str, generation: int) -> int | None:
        """Count a failure of a request of ``generation``: the new count, or None if it left before the last one."""
        state = self._state(host)
        if generation != state.generation:
            return None
        state.failures += 1
        state.generation += 1
        return state.failures

    def succeeded(self, host: str, generation: int) -> int:
        """The host answered: reset its count (if the request is current); returns the failures it had."""
        state = self.hosts.get(host)
        if state is None or generation != state.generation or not state.failures:
            return 0
        had, state.failures = state.failures, 0
        return had

    def pause(self, host: str, seconds: float) -> float:
        """Nothing goes to ``host`` for ``seconds`` from now (a longer pause in force stays); the pause left."""
        state = self._state(host)
        now = self.clock()
        state.paused_until = max(state.paused_until, now + seconds)
        return state.paused_until - now

    def skip(self, host: str, seconds: float, detail: str) -> None:
        """Refuse every request to ``host`` for ``seconds`` (what its Retry-After asked)."""
        state = self._state(host)
        state.skipped_until = max(state.skipped_until, self.clock() + seconds)
        state.skip_detail = detail

    def skipped(self, host: str) -> str | None:
        state = self.hosts.get(host)
        if state is None or state.skipped_until <= self.clock():
            return None
        return state.skip_detail
