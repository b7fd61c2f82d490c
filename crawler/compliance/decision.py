"""The one value type every gate returns."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Decision:
    """Allowed or refused, and why.

    ``reason`` is a dotted name (``robots.disallow``, ``robots.unreachable``,
    ``terms.consent-required``, ``notice.<id>``, ...) that is also the stats key
    suffix (``compliance/refused/<reason>``). ``rule`` is the rule that fired as
    it was written, and ``source`` says where it lives: ``FILE:LINE`` for
    policy files, the robots.txt URL and line for robots rules.
    """

    allowed: bool
    reason: str
    rule: str = ""
    source: str = ""
    detail: str = ""
    gate: str = ""
    url: str = ""

    @classmethod
    def refuse(cls, reason: str, *, rule: str = "", source: str = "", detail: str = "") -> Decision:
        return cls(False, reason, rule=rule, source=source, detail=detail)

    @classmethod
    def allow(cls, reason: str = "allowed", *, rule: str = "", source: str = "", detail: str = "") -> Decision:
        return cls(True, reason, rule=rule, source=source, detail=detail)

    def at(self, gate: str, url: str) -> Decision:
        """The same decision, stamped with the gate that took it and the URL."""
        return dataclasses.replace(self, gate=gate, url=url)

    @property
    def stats_key(self) -> str:
        verdict = "allowed" if self.allowed else "refused"
        return f"compliance/{verdict}/{self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        verdict = "allowed" if self.allowed else "refused"
        parts = [f"{verdict} ({self.reason})"]
        if self.url:
            parts.append(self.url)
        if self.gate:
            parts.append(f"at {self.gate}")
        if self.rule:
            parts.append(f"rule {self.rule!r}")
        if self.source:
            parts.append(f"from {self.source}")
        if self.detail:
            parts.append(f"- {self.detail}")
        return " ".join(parts)


#: The common "nothing objects" answer; shared so the fast path allocates nothing.
ALLOW = Decision(True, "allowed")
