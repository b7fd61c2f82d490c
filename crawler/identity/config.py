"""The identity settings, read and checked in one place (commands, the crawl's preflight and the middleware)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

KEY_FILE = "signing-key.json"
#: expires - created. A request is signed when it enters its host's download
#: queue and can wait there behind the pacing delay (at most
#: CONCURRENT_REQUESTS requests times the host's delay), so the lifetime
#: covers that wait; the draft recommends at most 24 hours.
DEFAULT_LIFETIME = 300


@dataclass(frozen=True)
class IdentitySettings:
    enabled: bool
    key_path: Path
    agent: str | None
    lifetime: int
    overlap: int


def identity_settings(settings: BaseSettings) -> IdentitySettings:
    """Every COMPLIANCE_SIGNING*/SIGNATURE_* setting, checked; ConfigError names the bad one."""
    from crawler.config import ConfigError, _resolved, data_dir, flag
    from crawler.identity.keyring import DEFAULT_OVERLAP
    from crawler.identity.signing import MAX_LIFETIME, SigningError, check_signature_agent

    def seconds(name: str, default: int, low: int, high: int | None) -> int:
        raw = settings.get(name, default)
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a whole number of seconds, got {raw!r}") from None
        if value < low or (high is not None and value > high):
            limit = f"{low}..{high}" if high is not None else f"at least {low}"
            raise ConfigError(f"{name}: must be {limit} seconds, got {raw!r}")
        return value

    given = settings.get("COMPLIANCE_SIGNING_KEY")
    key_path = _resolved("COMPLIANCE_SIGNING_KEY", str(given)) if given else data_dir(settings) / KEY_FILE
    agent = str(settings.get("COMPLIANCE_SIGNATURE_AGENT") or "").strip() or None
    if agent is not None:
        try:
            check_signature_agent(agent)
        except SigningError as exc:
            raise ConfigError(f"COMPLIANCE_SIGNATURE_AGENT: {exc}") from None
    return IdentitySettings(
        enabled=flag(settings, "COMPLIANCE_SIGNING", True),
        key_path=key_path,
        agent=agent,
        lifetime=seconds("COMPLIANCE_SIGNATURE_LIFETIME", DEFAULT_LIFETIME, 1, MAX_LIFETIME),
        overlap=seconds("COMPLIANCE_SIGNING_KEY_OVERLAP", DEFAULT_OVERLAP, 0, None),
    )
