"""robots.txt path patterns: a prefix, ``*`` for any characters, ``$`` for the end.

Used by platform policy path rules, consent scopes and TDMRep locations.
"""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=8192)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    anchored = pattern.endswith("$")
    body = re.escape(pattern[:-1] if anchored else pattern).replace(r"\*", ".*")
    return re.compile(body + ("$" if anchored else ""))


def matches(pattern: str, target: str) -> bool:
    """True when ``target`` (a path, with ``?query`` if any) matches ``pattern`` from its start."""
    return compile_pattern(pattern).match(target) is not None
