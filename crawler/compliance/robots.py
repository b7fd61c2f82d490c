"""robots.txt as RFC 9309 says a crawler must use it.

Protego parses and matches. This module adds what Protego leaves to its
caller, and fixes the one place where Protego departs from the RFC:

* fetch outcomes (§2.3.1): 2xx obey, 4xx allow all, 5xx / network error
  disallow all, redirects followed up to five hops;
* caching (§2.4) keyed by scheme + host + port (§2.3), for at most a TTL,
  in a bounded LRU, with a back-off schedule for unreachable files;
* the 500 KiB parsing limit (§2.5);
* unknown records between two ``User-agent`` lines do not end a group
  (§2.2.4; Protego 0.7.0 starts a new group there, failing Google's
  ``ID_LineSyntax_Groups_OtherRules#3``): we blank such lines before parsing;
* a ``User-agent`` value is reduced to its leading product token
  (``EthicalCrawler/1.0 (compatible)`` -> ``EthicalCrawler``), as Google's
  reference parser does: a product token holds only letters, "_" and "-"
  (RFC 9309 §2.2.1). This only ever makes a group apply to us that would
  otherwise have been ignored, so it can only restrict;
* an explanation of every answer: the rule that fired and its line.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum
from urllib.parse import urlsplit

from protego import Protego
from protego import _protego  # its directive names and line reader; Protego is pinned
from protego._utils import _quote_path, _quote_pattern  # see RobotsRules._explain and usage_rules

from crawler.compliance.decision import Decision
from crawler.compliance.patterns import matches

#: RFC 9309 §2.5: crawlers must parse at least 500 kibibytes.
MAX_PARSE_BYTES = 500 * 1024
#: RFC 9309 §2.3.1.2: follow at least five redirect hops.
MAX_REDIRECTS = 5
#: RFC 9309 §2.4: do not use a cached copy for more than 24 hours.
MAX_TTL = 24 * 3600.0

_DEFAULT_PORTS = {"http": 80, "https": 443}

# Protego 0.7.0's own directive names (with its typo-tolerant spellings) and
# its line reader, so that our index of the file groups every line exactly
# as Protego does; plus the aipref / Cloudflare group rules that a later
# layer reads. Any other "name: value" line is an "other record" (RFC 9309
# section 2.2.4) that must not split a group.
_USER_AGENT_KEYS = _protego._USER_AGENT_DIRECTIVE
_ALLOW_KEYS = _protego._ALLOW_DIRECTIVE
_DISALLOW_KEYS = _protego._DISALLOW_DIRECTIVE
_SITE_WIDE_KEYS = _protego._SITE_WIDE_DIRECTIVES
_KNOWN_KEYS = _protego._ALL_DIRECTIVES | {"content-usage", "content-signal"}
_TOKEN_PREFIX = re.compile(r"[A-Za-z_-]+")
# RFC 9309 and the attach draft end a line at CR or LF only; str.splitlines()
# also breaks at these, so they are percent-encoded before Protego sees them.
_OTHER_BREAKS = {ord(c): "".join(f"%{b:02X}" for b in c.encode()) for c in "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


def origin_of(url: str) -> tuple[str, str]:
    """The cache key (``scheme://host:port``) and robots.txt URL for ``url``.

    RFC 9309 §2.3: the file applies to one scheme, host and port, so
    ``http://a.test`` and ``https://a.test`` have separate files.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    netloc = f"[{host}]" if ":" in host else host
    if parts.port and parts.port != _DEFAULT_PORTS.get(scheme):
        netloc = f"{netloc}:{parts.port}"
    return f"{scheme}://{host}:{port}", f"{scheme}://{netloc}/robots.txt"


def truncate_body(body: bytes) -> tuple[bytes, bool]:
    """Keep the first 500 KiB, without the line the cut fell inside.

    A cut line could turn ``Disallow: /private`` into ``Disallow: /p`` (more
    restrictive, harmless) or ``Allow: /private`` into ``Allow: /p`` (less
    restrictive, wrong), so a partial last line is dropped.
    """
    if len(body) <= MAX_PARSE_BYTES:
        return body, False
    head = body[:MAX_PARSE_BYTES]
    cut = max(head.rfind(b"\n"), head.rfind(b"\r"))
    return (head[: cut + 1] if cut >= 0 else b""), True


def decode_body(body: bytes) -> str:
    # RFC 9309 §2.2: the file is UTF-8. Undecodable bytes become U+FFFD rather
    # than failing the whole file, so the valid rules around them still apply.
    return body.decode("utf-8-sig", errors="replace")


@dataclass(frozen=True, slots=True)
class _RuleLine:
    lineno: int
    field: str  # "allow" or "disallow"
    value: str
    groups: frozenset[str]


#: Group rules of the IETF aipref attach draft and Cloudflare's Content Signals.
_USAGE_KEYS = {"content-usage", "content-signal"}


def _prepare(text: str) -> tuple[str, list[_RuleLine]]:
    """Rewrite ``text`` for Protego (line numbers kept) and index its rules.

    Every line is read with Protego's own reader (``_extract_directive``),
    so lenient forms such as ``User agent: x`` or ``Disallow /x`` group here
    exactly as they do in Protego, and is handed to Protego in canonical
    ``field: value`` form. Allow/Disallow lines are indexed as
    "allow"/"disallow"; Content-Usage and Content-Signal lines under their own
    key, with the groups they belong to.
    """
    out: list[str] = []
    rules: list[_RuleLine] = []
    groups: set[str] = set()
    previous_was_agent = False
    for lineno, raw in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        line = raw.split("#", 1)[0].strip(" \t")
        parsed = _protego._extract_directive(line.translate(_OTHER_BREAKS)) if line else None
        if parsed is None:
            out.append("")
            continue
        key, value = parsed
        if key not in _KNOWN_KEYS:
            out.append("")  # an "other record": ignored, and the group goes on
            continue
        if key in _USER_AGENT_KEYS:
            agent = value.split()[0] if value.split() else ""
            token = _TOKEN_PREFIX.match(agent)
            if token and agent != "*":
                agent = token.group()
            if not previous_was_agent:
                groups = set()
            if agent:
                groups.add(agent.lower())
            previous_was_agent = True
            out.append(f"user-agent: {agent}")
            continue
        if key not in _SITE_WIDE_KEYS:
            previous_was_agent = False
        if key in _USAGE_KEYS:
            # The statement is bytes up to CR, LF or "#": keep it as written.
            rules.append(_RuleLine(lineno, key, raw.split("#", 1)[0].split(":", 1)[1].strip(" \t"), frozenset(groups)))
        elif key in _ALLOW_KEYS or key in _DISALLOW_KEYS:
            rules.append(
                _RuleLine(lineno, "allow" if key in _ALLOW_KEYS else "disallow", value, frozenset(groups))
            )
        out.append(f"{key}: {value}")
    return "\n".join(out), rules


def _split_usage_rule(value: str) -> tuple[str, str]:
    """A Content-Usage rule value as (path, preferences); an absent path is ``/``.

    attach-05 section 3.2: a value that starts with ``/`` names a path, which
    ends before the first SP or HTAB; otherwise the whole value is the
    statement of preference.
    """
    if not value.startswith("/"):
        return "/", value
    end = next((i for i, ch in enumerate(value) if ch in " \t"), len(value))
    return value[:end], value[end:].strip(" \t")


class RobotsRules:
    """A parsed robots.txt (2xx) that can explain each of its answers."""

    __slots__ = ("robots_url", "truncated", "_parser", "_rules", "_explained")

    def __init__(self, body: bytes, robots_url: str = "") -> None:
        kept, self.truncated = truncate_body(body)
        prepared, self._rules = _prepare(decode_body(kept))
        self._parser = Protego.parse(prepared)
        self.robots_url = robots_url

    def decide(self, url: str, token: str) -> Decision:
        """May ``token`` fetch ``url``? Longest match wins, allow wins ties (§2.2.2)."""
        if self._parser.can_fetch(url, token):
            return Decision.allow("robots.allow", **self._explain(url, token, "allow"))
        return Decision.refuse("robots.disallow", **self._explain(url, token, "disallow"))

    def usage_rules(self, url: str, token: str) -> dict[str, list[tuple[str, str]]]:
        """The Content-Usage / Content-Signal rules of our group that apply to ``url``.

        draft-ietf-aipref-attach-05 section 3: ``Content-Usage: [path] <preferences>``
        inside a group. The path (up to the first SP or HTAB) is matched like
        Allow/Disallow paths: same percent-encoding, ``*`` and ``$``, and the
        longest matching pattern (in encoded bytes) wins; no path means every
        path. Rules with identical paths all apply, as separate statements to
        be combined (any ``n`` wins), unlike Allow/Disallow ties. Returns
        ``{key: [(preferences, source), ...]}``.
        """
        rule_set = self._parser._get_matching_rule_set(token)
        if rule_set is None:
            return {}
        target = _quote_path(url)
        best: dict[str, tuple[int, list[tuple[str, str]]]] = {}
        for line in self._rules:
            if line.field not in _USAGE_KEYS or rule_set.user_agent not in line.groups:
                continue
            path, value = _split_usage_rule(line.value)
            pattern = _quote_pattern(path)
            if not matches(pattern, target):
                continue
            statement = (value, f"{self.robots_url}:{line.lineno}")
            length, statements = best.get(line.field, (-1, []))
            if len(pattern) > length:
                best[line.field] = (len(pattern), [statement])
            elif len(pattern) == length:
                statements.append(statement)
        return {key: statements for key, (_, statements) in best.items()}

    def crawl_delay(self, token: str) -> float | None:
        """Seconds between requests: the larger of Crawl-delay and Request-rate."""
        delays = []
        delay = self._parser.crawl_delay(token)
        if delay is not None and math.isfinite(delay):
            delays.append(float(delay))
        rate = self._parser.request_rate(token)
        if rate is not None and rate.requests > 0:
            delays.append(rate.seconds / rate.requests)
        return max(delays) if delays else None

    def _explain(self, url: str, token: str, verdict: str) -> dict[str, str]:
        """The rule that produced ``verdict`` and where it is written.

        Protego's public API answers only True/False. To name the rule we
        replay its own ordered rule list (``_RuleSet._rules``, sorted by
        priority with allow first on ties) and take the first match, exactly
        as ``_RuleSet.can_fetch`` does. Protego is pinned; the conformance
        tests check that this explanation always agrees with the verdict.
        """
        if urlsplit(url).path == "/robots.txt":
            return {"rule": "/robots.txt is always allowed", "source": "RFC 9309 section 2.2.2"}
        rule_set = self._parser._get_matching_rule_set(token)
        if rule_set is None:
            return {"rule": f"no group for {token!r} or '*'", "source": self.robots_url}
        quoted = _quote_path(url)
        for rule in rule_set._rules:
            if rule.value.match(quoted):
                pattern = rule.value._pattern
                if rule.field != verdict:  # pragma: no cover - a Protego change; the tests would catch it
                    break
                for line in self._rules:
                    if line.field == rule.field and rule_set.user_agent in line.groups and (
                        _quote_pattern(line.value) in (pattern, pattern.replace("%24", "$"))
                        or _quote_pattern(line.value.replace("$", "%24")) == pattern
                    ):
                        return {
                            "rule": f"{line.field.capitalize()}: {line.value}",
                            "source": f"{self.robots_url}:{line.lineno}",
                        }
                return {"rule": f"{rule.field.capitalize()}: {pattern}", "source": self.robots_url}
        return {"rule": f"no rule matches in group {rule_set.user_agent!r}", "source": self.robots_url}


class RobotsState(Enum):
    RULES = "rules"  # 2xx: obey what parses (§2.3.1.1)
    UNAVAILABLE = "unavailable"  # 4xx: may access anything (§2.3.1.3)
    UNREACHABLE = "unreachable"  # 5xx, network error, too many redirects: disallow all (§2.3.1.4)


@dataclass(slots=True)
class RobotsFile:
    """What a crawler knows about one origin's robots.txt, and until when."""

    origin: str
    robots_url: str
    state: RobotsState
    fetched_at: float
    expires_at: float
    detail: str = ""
    rules: RobotsRules | None = None
    failures: int = 0
    #: The URL the content came from after redirects (RFC 9309 §2.3.1.2: the
    #: result still applies to ``origin``).
    final_url: str = ""

    def decide(self, url: str, token: str) -> Decision:
        if self.state is RobotsState.RULES:
            assert self.rules is not None
            return self.rules.decide(url, token)
        if self.state is RobotsState.UNAVAILABLE:
            return Decision.allow(
                "robots.unavailable", rule=f"robots.txt {self.detail}: allow all (RFC 9309 2.3.1.3)",
                source=self.robots_url,
            )
        return Decision.refuse(
            "robots.unreachable",
            rule=f"robots.txt {self.detail}: disallow all (RFC 9309 2.3.1.4)",
            source=self.robots_url,
        )

    def crawl_delay(self, token: str) -> float | None:
        return self.rules.crawl_delay(token) if self.rules is not None else None

    def fresh(self, now: float) -> bool:
        return now < self.expires_at


def classify_status(status: int) -> RobotsState | None:
    """The RFC 9309 §2.3.1 class of an HTTP status; ``None`` for a redirect.

    429 is a 4xx, but it means "slow down", not "there is no file": treating it
    as "allow all" would reward the crawler for overloading the site, so it
    counts as unreachable (fail closed), as Google's crawler also does.
    """
    if 200 <= status < 300:
        return RobotsState.RULES
    if status in (301, 302, 303, 307, 308):
        return None
    if status == 429:
        return RobotsState.UNREACHABLE
    if 400 <= status < 500:
        return RobotsState.UNAVAILABLE
    return RobotsState.UNREACHABLE


@dataclass(slots=True)
class RobotsCache:
    """A bounded LRU of :class:`RobotsFile` with RFC 9309 expiry.

    ``ttl`` bounds how long a fetched file is used (§2.4, at most 24 h).
    An unreachable file is retried on a doubling schedule starting at
    ``retry_delay`` and capped at ``ttl``, so a dead host costs one fetch per
    back-off step rather than one per request, while its URLs stay refused.
    """

    ttl: float = MAX_TTL
    max_entries: int = 10_000
    retry_delay: float = 60.0
    _entries: OrderedDict[str, RobotsFile] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        if not 0 < self.ttl <= MAX_TTL:
            raise ValueError(f"COMPLIANCE_ROBOTS_TTL must be in (0, {MAX_TTL:.0f}] seconds (RFC 9309 2.4), got {self.ttl}")
        if self.max_entries < 1:
            raise ValueError(f"COMPLIANCE_ROBOTS_CACHE_SIZE must be at least 1, got {self.max_entries}")
        if self.retry_delay <= 0:
            raise ValueError(f"COMPLIANCE_ROBOTS_RETRY_DELAY must be positive, got {self.retry_delay}")

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, origin: str, now: float) -> RobotsFile | None:
        """The entry for ``origin`` if it may still be used at ``now``."""
        entry = self._entries.get(origin)
        if entry is None:
            return None
        self._entries.move_to_end(origin)
        return entry if entry.fresh(now) else None

    def previous(self, origin: str) -> RobotsFile | None:
        """The last entry for ``origin``, fresh or not (for the back-off count)."""
        return self._entries.get(origin)

    def store(
        self,
        origin: str,
        robots_url: str,
        state: RobotsState,
        now: float,
        *,
        detail: str = "",
        body: bytes = b"",
        final_url: str = "",
    ) -> RobotsFile:
        previous = self._entries.get(origin)
        if state is RobotsState.UNREACHABLE:
            failures = (previous.failures if previous else 0) + 1
            expires = now + min(self.ttl, self.retry_delay * 2 ** (failures - 1))
        else:
            failures = 0
            expires = now + self.ttl
        rules = RobotsRules(body, final_url or robots_url) if state is RobotsState.RULES else None
        if rules is not None and rules.truncated:
            detail = (detail + f"; parsed the first {MAX_PARSE_BYTES} bytes only (RFC 9309 2.5)").lstrip("; ")
        entry = RobotsFile(origin, robots_url, state, now, expires, detail, rules, failures, final_url or robots_url)
        self._entries[origin] = entry
        self._entries.move_to_end(origin)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return entry
