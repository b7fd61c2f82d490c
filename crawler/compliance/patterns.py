"""robots.txt path patterns: a prefix, ``*`` for any characters, ``$`` for the end.

Used by platform policy path rules, consent scopes, notice URL patterns,
TDMRep locations and Content-Usage rules. Patterns come from web sites
(tdmrep.json, robots.txt) as well as from our own files, so matching must
not backtrack: a regular expression with one ``.*`` per ``*`` takes
exponential time on a pattern such as ``/*a*a*a*a*b``. The matcher here
takes each literal piece in turn at its leftmost place, which is correct for
``*`` wildcards (taking a piece further right can only leave less room for
the rest) and linear in the length of the path per piece.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=8192)
def _compile(pattern: str) -> tuple[tuple[str, ...], bool]:
    """The literal pieces between ``*``s, and whether the pattern is anchored at the end."""
    anchored = pattern.endswith("$")
    return tuple((pattern[:-1] if anchored else pattern).split("*")), anchored


def matches(pattern: str, target: str) -> bool:
    """True when ``target`` (a path, with ``?query`` if any) matches ``pattern`` from its start."""
    pieces, anchored = _compile(pattern)
    first = pieces[0]
    if not target.startswith(first):
        return False
    if len(pieces) == 1:
        return len(target) == len(first) if anchored else True
    position = len(first)
    for piece in pieces[1:-1]:
        found = target.find(piece, position)
        if found < 0:
            return False
        position = found + len(piece)
    last = pieces[-1]
    if anchored:
        return len(target) - len(last) >= position and target.endswith(last)
    return target.find(last, position) >= 0
