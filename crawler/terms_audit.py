"""Terms drift: has a platform changed its terms since a person reviewed them?

``scrapy policy audit`` fetches each platform policy's ``terms.url`` (and the
platform's robots.txt) with ``requests``, hashes the terms document and
compares it with the ``terms.sha256`` recorded in the policy file. Anything
but "unchanged" means a person must re-read the terms: changed, never
recorded, or not reachable (fail closed: unknown is not "fine"). With a vcrpy
cassette the audit replays recorded responses instead of the network.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from crawler.compliance.policy import LoadedPolicy


@dataclass(frozen=True)
class Finding:
    platform: str
    status: str  # unchanged, changed, not-recorded, unreachable
    terms_url: str
    recorded_sha256: str | None
    current_sha256: str | None
    robots_url: str
    robots_sha256: str | None
    robots_allows_us: bool | None
    source: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        what = {
            "unchanged": "unchanged since review",
            "changed": f"CHANGED: reviewed {str(self.recorded_sha256)[:12]}..., now {str(self.current_sha256)[:12]}...; re-read the terms, then update terms.sha256 and terms.reviewed in {self.source}",
            "not-recorded": f"NOT RECORDED: read the terms, then set terms.sha256: {self.current_sha256} in {self.source}",
            "unreachable": f"UNREACHABLE: {self.detail}",
        }[self.status]
        robots = "robots.txt allows us" if self.robots_allows_us else ("robots.txt disallows us" if self.robots_allows_us is False else "robots.txt unknown")
        return f"{self.platform:<10} {what} ({robots})"


@contextlib.contextmanager
def _replaying(cassette: str | None) -> Iterator[None]:
    if cassette is None:
        yield
        return
    import vcr

    from crawler.cassettes import check_cassette

    check_cassette(cassette)  # CassetteError: one line, before vcrpy reads it
    with vcr.VCR(record_mode="none", match_on=["method", "scheme", "host", "port", "path", "query"]).use_cassette(
        cassette, allow_playback_repeats=True
    ):
        yield


def audit_platforms(platforms: Iterable[LoadedPolicy], user_agent: str, token: str, cassette: str | None = None) -> list[Finding]:
    import requests

    from crawler.compliance.robots import RobotsRules, RobotsState, classify_status

    findings = []
    with _replaying(cassette), requests.Session() as session:
        session.headers["User-Agent"] = user_agent
        for loaded in platforms:
            policy = loaded.policy
            terms_url = policy.terms.url
            parts = urlsplit(terms_url)
            robots_url = f"{parts.scheme}://{parts.netloc}/robots.txt"
            source = loaded.source("terms", "sha256") if policy.terms.sha256 else loaded.source("terms")
            robots_sha = allows = None
            try:
                robots = session.get(robots_url, timeout=30)
                robots_sha = hashlib.sha256(robots.content).hexdigest()
                state = classify_status(robots.status_code)
                if state is RobotsState.RULES:
                    allows = RobotsRules(robots.content, robots_url).decide(terms_url, token).allowed
                else:
                    allows = state is RobotsState.UNAVAILABLE if state is not None else None
                response = session.get(terms_url, timeout=30)
            except Exception as exc:  # noqa: BLE001 - requests and vcrpy errors alike: unreachable, reported
                findings.append(Finding(policy.id, "unreachable", terms_url, policy.terms.sha256, None, robots_url, robots_sha,
                                        allows, source, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"))  # fmt: skip
                continue
            if response.status_code != 200:
                findings.append(Finding(policy.id, "unreachable", terms_url, policy.terms.sha256, None, robots_url, robots_sha,
                                        allows, source, f"HTTP {response.status_code} for {terms_url}"))  # fmt: skip
                continue
            current = hashlib.sha256(response.content).hexdigest()
            if policy.terms.sha256 is None:
                status = "not-recorded"
            else:
                status = "unchanged" if current == policy.terms.sha256 else "changed"
            findings.append(Finding(policy.id, status, terms_url, policy.terms.sha256, current, robots_url, robots_sha, allows, source))
    return findings
